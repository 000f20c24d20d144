"""`hero-tui doctor`: what a person needs to know before a session, checked on this machine.

It probes the terminal (so it runs only for this command) and asks a separate
Python process about CUDA, so hero_tui itself never imports torch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hero_engine import cpu_threads
from hero_engine.config import AUTO_MODEL, DEFAULT_HUB_MODEL
from hero_engine.errors import HeroError
from hero_engine.models import download_watch, weights_variant
from hero_engine.models.model_configs import known_family, model_family
from hero_engine.storage.paths import sessions_root
from hero_tui.graphics import (
    KITTY_PLACEHOLDERS_SINCE,
    METHOD_NAMES,
    TMUX_SIXEL_SINCE,
    GraphicsChoice,
    assume_truecolor,
    kitty_version,
    select_graphics,
    textual_image_version,
    version_tuple,
)
from hero_tui.keys import config_path
from hero_tui.terminal_probe import REPLY_TIMEOUT, TerminalReport, tmux_option

# What textual-image 0.12 (the only release for Python 3.11) gets wrong that hero cannot work around.
ONLY_NEWER_TEXTUAL_IMAGE = ("textual-image 0.12 (Python 3.11) draws Sixel with colour bands and dark speckles and cannot "
                            "send kitty images through tmux; Python 3.12 with textual-image 0.13+ fixes both")

DOCTOR_POINTER = re.compile(r"\s*\(`hero-tui doctor`[^)]*\)")

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
    problem: bool = False  # `start` would refuse or fail on it (the rest are facts and advice): doctor then exits 1


def check_all(model: str = DEFAULT_HUB_MODEL, choice: GraphicsChoice | None = None) -> list[Finding]:
    choice = choice or select_graphics()
    return [
        *check_terminal(choice),
        *check_multiplexer(choice.report),
        check_cuda(family=known_family(model)),
        check_cpu_threads(os.environ),
        check_model(model),
        Finding("sessions", str(sessions_root())),
        check_config(),
    ]


def check_config() -> Finding:
    """The user's config file, read as `start` and `resume` read it: what it may hold, or why they would refuse it."""
    from hero_tui.launch import read_app_settings

    try:
        read_app_settings()
    except HeroError as exc:
        return Finding("config", f"{config_path()}: refused by `start` and `resume`", str(exc), problem=True)
    return Finding("config", str(config_path()), "remap keys under [keys], e.g. good = \"g\"; `?` in the app lists the ids; "
                   "keep a graphics method under [graphics], method = \"sixel\" (`hero-tui doctor --keep` writes the one found)")


def check_terminal(choice: GraphicsChoice) -> list[Finding]:
    if not sys.stdout.isatty():
        return [Finding("graphics", "no terminal on stdout: the app needs one", "for headless use run `hero-tui run`")]
    report = choice.report
    method = METHOD_NAMES.get(choice.method, choice.method)
    text = f"{method} (textual-image {textual_image_version()}; override with --graphics)"
    old_textual_image = version_tuple(textual_image_version()) < (0, 13)
    # The status line's reason points at this command; here that pointer is dropped, and the damaged-Sixel line
    # is said once, below, with what else textual-image 0.12 lacks.
    reason = DOCTOR_POINTER.sub("", choice.reason)
    hints = [reason] if reason and not (old_textual_image and choice.method == "sixel") else []
    if choice.method in ("halfblock", "unicode") and not report.in_tmux and not report.kitty_graphics:
        hints.append("for sharp images use a terminal with Sixel or kitty graphics (kitty 0.28+, WezTerm, foot, "
                     "iTerm2, xterm -ti vt340)")
    if kitty_version(report.version) and choice.method == "halfblock" and not report.in_tmux:
        hints.append("kitty 0.28 or later shows sharp images here; kitty's own installer has the newest release")
    if old_textual_image:
        hints.append(ONLY_NEWER_TEXTUAL_IMAGE)
    size = report.cell_size
    size_hint = "the terminal did not report it; 10×20 is assumed" if size is None else ""
    answered = report.version or report.tmux_version or ("answers queries" if report.answered else "did not answer hero's query")
    return [
        Finding("graphics", text, "\n".join(hints)),
        Finding("cell size", f"{size[0]}×{size[1]} px" if size else "unknown", size_hint),
        Finding("terminal", f"TERM={os.environ.get('TERM', '?')} {os.environ.get('TERM_PROGRAM', '')}".strip() + f"; {answered}"),
        check_colour(report, os.environ),
    ]


def check_colour(report: TerminalReport, environ: Mapping[str, str]) -> Finding:
    """Whether the app draws in 24-bit colour, and how to get it where it does not (inside tmux, tmux must know too)."""
    colour = environ.get("COLORTERM", "")
    if colour:
        text, hints = f"COLORTERM={colour}", []
    elif assume_truecolor(report, dict(environ)):
        text = "COLORTERM is not set (SSH does not pass it); the terminal answers queries or names itself, so 24-bit colour is used"
        hints = ["if colours look wrong, set truecolor = false under [graphics] in the config file"]
    else:
        text = "COLORTERM is not set and the terminal did not answer: the app uses the colours TERM names"
        hints = ["for 24-bit colour set truecolor = true under [graphics] in the config file, or export COLORTERM=truecolor"]
    if report.in_tmux:  # tmux turns 24-bit colour into its 256 unless told the outer terminal takes RGB
        hints.append("inside tmux, 24-bit colour reaches the terminal only when tmux knows it can: add "
                     "set -as terminal-features ',*:RGB' to ~/.tmux.conf, then run tmux source-file ~/.tmux.conf")
    return Finding("colour", text, "\n".join(hints))


def check_multiplexer(report: TerminalReport) -> list[Finding]:
    findings = []
    if os.environ.get("TMUX"):
        findings.append(check_tmux(report, _tmux_version(), tmux_option("allow-passthrough"), textual_image_version()))
    if os.environ.get("SSH_CONNECTION") or os.environ.get("SSH_TTY"):
        findings.append(Finding(
            "ssh", "over SSH: the images travel as terminal escape codes, so the graphics method is your local terminal's; "
                   f"hero waits up to {REPLY_TIMEOUT:.0f} s for its answers",
            "if images are slow, lower the batch (--batch) or use --graphics halfblock",
        ))
    return findings


def check_tmux(report: TerminalReport, tmux_version: str, passthrough: str | None, textual_image: str) -> Finding:
    """What this tmux can pass to the terminal around it, and the exact lines that make it pass more."""
    tmux_version = tmux_version.removeprefix("tmux").strip()
    tmux = version_tuple(tmux_version or "0")
    can = []
    hints = []
    if report.sixel:
        can.append("Sixel (tmux draws it itself)")
    elif tmux >= TMUX_SIXEL_SINCE:
        can.append(f"no Sixel: tmux {tmux_version} was built without it")
    else:
        can.append(f"no Sixel: tmux {tmux_version or '(this version)'} cannot pass it")
    kitty_ok = version_tuple(textual_image) >= (0, 13)
    passes_kitty = passthrough in ("on", "all")
    if passes_kitty:
        can.append("kitty graphics (allow-passthrough is on)" if kitty_ok else
                   f"no kitty graphics with textual-image {textual_image}: it needs 0.13+, on Python 3.12")
    else:
        can.append("no kitty graphics: allow-passthrough is off")
    outer_kitty_version = kitty_version(report.version)
    outer_kitty = report.kitty_graphics and not (outer_kitty_version and outer_kitty_version < KITTY_PLACEHOLDERS_SINCE)
    sharp = report.sixel or (passes_kitty and kitty_ok and outer_kitty)
    if not passes_kitty:
        hints.append("for kitty images (kitty 0.28+, or a terminal that places them with unicode placeholders) add to "
                     "~/.tmux.conf:  set -g allow-passthrough on   then run:  tmux source-file ~/.tmux.conf")
    if passes_kitty and not kitty_ok:
        hints.append("kitty images through tmux need Python 3.12 and textual-image 0.13+: pip install -U textual-image")
    if not sharp and not report.sixel:
        hints.append("for Sixel (xterm -ti vt340, WezTerm, foot, mlterm, Konsole): tmux 3.4 or later configured with "
                     "--enable-sixel, or run hero outside tmux")
    return Finding("tmux", f"inside tmux {tmux_version or '(version unknown)'}; it can pass: " + "; ".join(can),
                   "\n".join(hints))


# SDXL's defaults (config.SDXL_SCALE, gradient checkpointing in the policy update, text encoders on the CPU once
# the prompt is encoded) are sized to stay under this peak at 1024 px, so that a 24 GB card holds a session.
SDXL_PEAK_GIB = 22


def check_cuda(timeout: float = 120.0, family: str | None = None) -> Finding:
    try:
        result = subprocess.run([sys.executable, "-c", _CUDA_PROBE], capture_output=True, text=True, timeout=timeout)
        info = json.loads(result.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, OSError, ValueError, IndexError):
        return Finding("cuda", "could not ask torch (is it installed?)", "run: python -c 'import torch; print(torch.cuda.is_available())'",
                       problem=True)
    if not info.get("cuda"):
        hint = "the engine will run on the CPU, with the built-in demo model unless --model says otherwise"
        if family == "SDXL":
            hint = f"an SDXL model needs a CUDA GPU: its defaults are sized for a 24 GB card (to stay under {SDXL_PEAK_GIB} GiB at 1024 px)"
        return Finding("cuda", f"no CUDA device visible (torch {info.get('torch')})", hint)
    return vram_finding(info["device"], info["count"], info["free"], info["total"], family)


def vram_finding(device: str, count: int, free: int, total: int, family: str | None) -> Finding:
    """The CUDA line: the card and its free memory, and for SDXL whether its memory defaults fit the card."""
    gib = 1024**3
    text = f"{device} ({count} device(s)): {free / gib:.1f} of {total / gib:.1f} GiB free"
    if family != "SDXL":
        return Finding("cuda", text)
    text += (f"; SDXL's defaults are sized for a 24 GB card (to stay under {SDXL_PEAK_GIB} GiB at 1024 px: gradient "
             "checkpointing in the policy update, 4 images a UNet call and a VAE decode, text encoders on the CPU after encoding)")
    hint = ""
    if free < SDXL_PEAK_GIB * gib:
        hint = (f"only {free / gib:.1f} GiB free, under SDXL's {SDXL_PEAK_GIB} GiB at 1024 px: pass --resolution 768 and "
                "--sample-batch 2, or free the GPU")
    return Finding("cuda", text, hint)


def check_cpu_threads(environ: Mapping[str, str]) -> Finding:
    """The thread count the engine would choose now, and why (hero_engine.cpu_threads)."""
    asked = environ.get(cpu_threads.THREADS_VARIABLE)
    try:
        choice = cpu_threads.choose_threads(cpu_threads.usable_cores(), cpu_threads.running_elsewhere(), asked,
                                            environ.get("OMP_NUM_THREADS"))
    except ValueError as exc:
        return Finding("cpu threads", str(exc), problem=True)
    hint = "" if asked else f"the engine counts again as each round starts; {cpu_threads.THREADS_VARIABLE}=N sets it yourself"
    return Finding("cpu threads", f"{choice.threads} ({choice.reason})", hint)


def check_model(model: str) -> Finding:
    """Whether ``model`` is available offline, and what it is (SD1.x, SD2.x, SDXL), or why hero refuses it."""
    where = model_availability(model)
    try:
        family = model_family(model, online=False)
    except HeroError as exc:
        return Finding("model", where.text, str(exc), problem=True)
    return Finding("model", f"{where.text} ({family})" if family else where.text, where.hint, where.problem)


def model_availability(model: str) -> Finding:
    if model in ("tiny", "tiny-sdxl", "demo"):
        return Finding("model", f"{model}: built in, available offline")
    if model == AUTO_MODEL:
        return Finding("model", f"auto: {DEFAULT_HUB_MODEL} where CUDA is, else the built-in demo model")
    path = Path(model).expanduser()
    if path.exists():
        kind = "diffusers folder" if (path / "model_index.json").exists() else "file" if path.is_file() else "folder without model_index.json"
        return Finding("model", f"{model}: local {kind}, available offline")
    try:
        cached = weights_variant.in_cache(model)
    except ImportError:
        return Finding("model", f"{model}: cannot tell (huggingface_hub is not installed)")
    if cached:
        return Finding("model", f"{model}: in the Hugging Face cache, available offline")
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        return Finding("model", f"{model}: not in the local cache, and HF_HUB_OFFLINE forbids the download",
                       "unset HF_HUB_OFFLINE for the first start, or pass --model with a local folder or .safetensors file", problem=True)
    return Finding("model", f"{model}: not in the local cache",
                   f"the first start downloads it (needs the internet) into {download_watch.cache_and_free_space()}; "
                   "or pass --model with a local folder or .safetensors file")



def _tmux_version() -> str:
    if shutil.which("tmux") is None:
        return ""
    try:
        return subprocess.run(["tmux", "-V"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (subprocess.TimeoutExpired, OSError):
        return ""


def print_report(findings: list[Finding]) -> int:
    """Print the findings, problems in red and counted last; returns how many problems there are."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, show_header=False, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    problems = [finding for finding in findings if finding.problem]
    for finding in findings:
        text = escape(finding.text) + (f"\n[yellow]→ {escape(finding.hint)}[/]" if finding.hint else "")
        table.add_row(f"[red]✗ {escape(finding.topic)}[/]" if finding.problem else escape(finding.topic), text)
    console = Console(highlight=False)
    console.print(table)
    if problems:
        topics = ", ".join(finding.topic for finding in problems)
        console.print(f"[red]{len(problems)} problem{'s' if len(problems) > 1 else ''} ({escape(topics)}): "
                      f"`hero-tui start` would stop on {'them' if len(problems) > 1 else 'it'}[/]")
    return len(problems)
