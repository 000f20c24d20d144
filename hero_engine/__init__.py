"""hero_engine: the HERO loop (sampling, feedback-aligned rewards, LoRA policy update).

Import the parts you need from their modules; this package import stays light
(no torch) so that the CLI and the TUI start fast.
"""

__version__ = "0.1.0"
