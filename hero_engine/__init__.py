"""hero_engine: the HERO loop (sampling, feedback-aligned rewards, LoRA policy update) and the sessions it runs in.

Grouped by role: algorithm/ (HERO over tensors), models/ (pipelines and formats), storage/ (a session on disk,
torch-free), session/ (the round loop), evaluation/ (simulated people), demo/ (the built-in model), drivers/
(headless runs, the benchmark); feedback_rules, protocol and worker at the top. docs/architecture.md has the map.

Import the parts you need from their modules; this package import stays light
(no torch) so that the CLI and the TUI start fast.
"""

__version__ = "0.1.0"
