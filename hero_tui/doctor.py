"""`hero-tui doctor`: what a person needs to know before a session, checked on this machine.

It probes the terminal (so it runs only for this command) and asks a separate
Python process about CUDA, so hero_tui itself never imports torch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hero_engine.config import AUTO_MODEL, DEFAULT_HUB_MODEL
from hero_engine.paths import sessions_root
from hero_tui.graphics import cell_size, detected_method, textual_image_version
from hero_tui.keys import config_path

_CUDA_PROBE = """
import json, torch
info = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
if info["cuda"]:
    free, total = torch.cuda.mem_get_info()
    info.update(device=torch.cuda.get_device_name(0), free=free, total=total, count=torch.cuda.device_count())
print(json.dumps(info))
"""


@dataclass(frozen=True)
class Finding:
    topic: str
    text: str
    hint: str = ""


def check_all(model: str = DEFAULT_HUB_MODEL) -> list[Finding]:
    return [
        *check_terminal(),
        *check_multiplexer(),
        check_cuda(),
        check_model(model),
        Finding("sessions", str(sessions_root())),
        Finding("key config", str(config_path()), "remap keys under [keys], e.g. good = \"g\"; `?` in the app lists the ids"),
    ]


def check_terminal() -> list[Finding]:
    if not sys.stdout.isatty():
        return [Finding("graphics", "no terminal on stdout: the app needs one", "for headless use run `hero-tui run`")]
    method = detected_method()
    size = cell_size()
    hint = ""
    if method in ("halfblock", "unicode"):
        hint = "for sharp images use a terminal with Sixel or kitty graphics (kitty, WezTerm, foot, iTerm2, recent xterm -ti vt340)"
    size_hint = "the terminal did not report it; 10×20 is assumed" if size in (None, (10, 20)) else ""
    return [
        Finding("graphics", f"{method} (textual-image {textual_image_version()}; override with --graphics)", hint),
        Finding("cell size", f"{size[0]}×{size[1]} px" if size else "unknown", size_hint),
        Finding("terminal", f"TERM={os.environ.get('TERM', '?')} {os.environ.get('TERM_PROGRAM', '')}".strip()),
    ]


def check_multiplexer() -> list[Finding]:
    findings = []
    if os.environ.get("TMUX"):
        passthrough = _tmux_option("allow-passthrough")
        hint = ("images through tmux need `set -g allow-passthrough on` in ~/.tmux.conf and textual-image >= 0.13 "
                "(Python >= 3.12); otherwise half-blocks are used")
        findings.append(Finding("tmux", f"inside tmux; allow-passthrough is {passthrough or 'unknown'}", "" if passthrough == "on" and _passthrough_supported() else hint))
    if os.environ.get("SSH_CONNECTION") or os.environ.get("SSH_TTY"):
        findings.append(Finding(
            "ssh", "over SSH: the images travel as terminal escape codes, so the graphics method is your local terminal's",
            "if images are slow, lower the batch (--batch) or use --graphics halfblock",
        ))
    return findings


def check_cuda(timeout: float = 120.0) -> Finding:
    try:
        result = subprocess.run([sys.executable, "-c", _CUDA_PROBE], capture_output=True, text=True, timeout=timeout)
        info = json.loads(result.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, OSError, ValueError, IndexError):
        return Finding("cuda", "could not ask torch (is it installed?)", "run: python -c 'import torch; print(torch.cuda.is_available())'")
    if not info.get("cuda"):
        return Finding("cuda", f"no CUDA device visible (torch {info.get('torch')})", "the engine will run on the CPU, with the built-in demo model unless --model says otherwise")
    gib = 1024**3
    return Finding("cuda", f"{info['device']} ({info['count']} device(s)): {info['free'] / gib:.1f} of {info['total'] / gib:.1f} GiB free")


def check_model(model: str) -> Finding:
    if model in ("tiny", "demo"):
        return Finding("model", f"{model}: built in, available offline")
    if model == AUTO_MODEL:
        return Finding("model", f"auto: {DEFAULT_HUB_MODEL} where CUDA is, else the built-in demo model")
    path = Path(model).expanduser()
    if path.exists():
        kind = "diffusers folder" if (path / "model_index.json").exists() else "file" if path.is_file() else "folder without model_index.json"
        return Finding("model", f"{model}: local {kind}, available offline")
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return Finding("model", f"{model}: cannot tell (huggingface_hub is not installed)")
    cached = try_to_load_from_cache(model, "model_index.json")
    if isinstance(cached, str):
        return Finding("model", f"{model}: in the Hugging Face cache, available offline")
    return Finding("model", f"{model}: not in the local cache", "the first start downloads it (needs the internet); or pass --model with a local folder or .safetensors file")


def _tmux_option(name: str) -> str | None:
    if shutil.which("tmux") is None:
        return None
    try:
        result = subprocess.run(["tmux", "show-options", "-gv", name], capture_output=True, text=True, timeout=5)
    except (subprocess.TimeoutExpired, OSError):
        return None
    return result.stdout.strip() or None


def _passthrough_supported() -> bool:
    parts = textual_image_version().split(".")
    return len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit() and (int(parts[0]), int(parts[1])) >= (0, 13)


def print_report(findings: list[Finding]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, show_header=False, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for finding in findings:
        text = escape(finding.text) + (f"\n[yellow]→ {escape(finding.hint)}[/]" if finding.hint else "")
        table.add_row(finding.topic, text)
    Console(highlight=False).print(table)
