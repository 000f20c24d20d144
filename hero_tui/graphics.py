"""Which textual-image widget draws the images, and why: the terminal's answers, the config file, or --graphics.

hero asks the terminal itself (``terminal_probe``), once, before Textual owns it,
and hands textual-image the answer, so textual-image never queries on its own:
its 0.12 release (the only one for Python 3.11) waits 0.1 s, which a slow SSH
link misses (its late reply is then typed into the app as keys), and inside tmux
sends the kitty query as text that tmux shows in its status line. Works with
textual-image 0.12 and 0.13+.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from enum import Enum
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from hero_engine.errors import HeroError
from hero_tui.terminal_facts import remember_terminal_version
from hero_tui.terminal_probe import TerminalReport

if TYPE_CHECKING:  # the CLI imports this module for --help, which must stay fast
    from textual.widget import Widget


class GraphicsMethod(str, Enum):
    """The --graphics choices."""

    auto = "auto"
    kitty = "kitty"
    sixel = "sixel"
    halfblock = "halfblock"
    unicode = "unicode"


GRAPHICS_METHODS = tuple(method.value for method in GraphicsMethod)
METHOD_NAMES = {"kitty": "kitty graphics", "sixel": "Sixel", "halfblock": "half-blocks", "unicode": "unicode blocks"}
KITTY_PLACEHOLDERS_SINCE = (0, 28)  # textual-image places kitty images with unicode placeholders, which kitty 0.28 added
TMUX_SIXEL_SINCE = (3, 4)

# Widget class names in textual_image.widget, newest first: later releases may add a dedicated kitty class.
_WIDGET_NAMES = {
    "kitty": ("KittyImage", "TGPImage"),
    "sixel": ("SixelImage",),
    "halfblock": ("HalfcellImage",),
    "unicode": ("UnicodeImage",),
}


@dataclass(frozen=True)
class GraphicsChoice:
    method: str  # kitty, sixel, halfblock or unicode
    reason: str  # one line: why this method and not a sharper one ("" when the terminal's best was taken)
    report: TerminalReport = field(default_factory=TerminalReport)


def check_method(method: str) -> None:
    if method not in GRAPHICS_METHODS:
        raise HeroError(f"unknown graphics method '{method}': choose one of {', '.join(GRAPHICS_METHODS)}")


def choose(report: TerminalReport, requested: str = "auto", textual_image: str | None = None,
           environ: dict[str, str] | None = None) -> GraphicsChoice:
    """The best method the terminal (and tmux, and this textual-image) can show, with the reason when it is not sharp."""
    check_method(requested)
    textual_image = textual_image or textual_image_version()
    if requested != "auto":
        warning = _forced_warning(report, requested) or (_sixel_quality(textual_image) if requested == "sixel" else "")
        return GraphicsChoice(requested, warning, report)
    if not report.answered and not report.version:
        if not (sys.__stdout__ and sys.__stdout__.isatty()):
            return GraphicsChoice("unicode", "not a terminal", report)
        return GraphicsChoice("halfblock", "the terminal did not answer hero's query: half-blocks", report)
    old_kitty = _kitty_without_placeholders(report, os.environ if environ is None else environ)
    if report.in_tmux:
        return _choose_in_tmux(report, old_kitty, textual_image)
    if report.sixel:
        return GraphicsChoice("sixel", _sixel_quality(textual_image), report)
    if report.kitty_graphics:
        if old_kitty:
            return GraphicsChoice("halfblock", f"{old_kitty} lacks unicode placeholders (kitty 0.28+), "
                                               "so kitty images cannot show: half-blocks", report)
        return GraphicsChoice("kitty", "", report)
    return GraphicsChoice("halfblock", "the terminal reports neither Sixel nor kitty graphics: half-blocks", report)


def _sixel_quality(textual_image: str) -> str:
    """One line where this textual-image draws Sixel damaged (0.12, the only release for Python 3.11), with the fix."""
    if version_tuple(textual_image) >= (0, 13):
        return ""
    return (f"Sixel from textual-image {textual_image} (Python 3.11) shows colour bands and specks; "
            "Python 3.12 draws it clean: install hero in a Python 3.12 environment")


def _forced_warning(report: TerminalReport, method: str) -> str:
    """One line when --graphics forces a method this terminal did not say it shows (it may never have been asked)."""
    if not report.answered:
        return ""
    if method == "kitty" and not report.kitty_graphics:
        where = "inside tmux without allow-passthrough " if report.in_tmux and not report.passthrough else ""
        return f"kitty graphics forced, but the terminal {where}did not answer the kitty query: images may show as text or not at all"
    if method == "sixel" and not report.sixel:
        return "Sixel forced, but the terminal does not list Sixel: tiles may stay blank"
    return ""


def _choose_in_tmux(report: TerminalReport, old_kitty: str, textual_image: str) -> GraphicsChoice:
    if report.sixel:  # tmux's own attributes: a tmux 3.4+ built with Sixel draws it itself
        return GraphicsChoice("sixel", _sixel_quality(textual_image), report)
    if report.kitty_graphics and report.passthrough:
        if old_kitty:
            return GraphicsChoice("halfblock", f"{old_kitty} lacks unicode placeholders (kitty 0.28+): half-blocks", report)
        if version_tuple(textual_image) < (0, 13):
            return GraphicsChoice("halfblock", f"kitty images through tmux need textual-image 0.13+ (Python 3.12; "
                                               f"this is {textual_image}): half-blocks", report)
        return GraphicsChoice("kitty", "", report)
    if not report.passthrough:
        return GraphicsChoice("halfblock", "inside tmux without allow-passthrough: half-blocks (`hero-tui doctor` says what to add)", report)
    return GraphicsChoice("halfblock", f"{report.tmux_version or 'this tmux'} passes neither Sixel nor kitty images "
                                       "from this terminal: half-blocks (`hero-tui doctor`)", report)


def _kitty_without_placeholders(report: TerminalReport, environ) -> str:
    """The kitty that draws no unicode placeholders, by name ("kitty 0.26.5"); "" for any other terminal."""
    version = kitty_version(report.version)
    if version is not None:
        return f"kitty {_dotted(version)}" if version < KITTY_PLACEHOLDERS_SINCE else ""
    by_environment = environ.get("TERM") == "xterm-kitty" or "KITTY_WINDOW_ID" in environ or environ.get("TERM_PROGRAM") == "kitty"
    if not report.version and not report.in_tmux and by_environment:  # kitty answers XTVERSION from long before 0.28
        return "this kitty (too old to report its version)"
    return ""


def kitty_version(terminal_version: str) -> tuple[int, ...] | None:
    """kitty's version from its XTVERSION reply ("kitty(0.26.5)"); None for another terminal."""
    if not terminal_version.lower().startswith("kitty"):
        return None
    return version_tuple(terminal_version[len("kitty"):].strip("() ")) or None


def version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.strip().split("."):
        digits = "".join(ch for ch in part if ch.isdigit()) if part[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _dotted(parts: tuple[int, ...]) -> str:
    return ".".join(str(p) for p in parts)


def assume_truecolor(report: TerminalReport, environ: dict[str, str] | None = None) -> bool:
    """Whether to tell Textual the terminal has 24-bit colour: SSH does not pass COLORTERM, yet a terminal that
    answers XTVERSION (kitty, xterm, WezTerm, foot, Konsole, iTerm2, tmux) draws it, and so does mlterm, which
    answers no XTVERSION but names itself in MLTERM (and sets TERM=mlterm, which Textual reads as 16 colours)."""
    environ = os.environ if environ is None else environ
    return not environ.get("COLORTERM") and bool(report.version or report.tmux_version or environ.get("MLTERM"))


def select_graphics(requested: str = "auto") -> GraphicsChoice:
    """Ask the terminal (once), choose a method, and hand textual-image the answers so it asks nothing itself."""
    from hero_tui import terminal_probe

    check_method(requested)  # before the terminal is asked
    report = terminal_probe.probe()
    choice = choose(report, requested)
    prime_textual_image(report)
    remember_terminal_version(report.version)
    return choice


def prime_textual_image(report: TerminalReport) -> None:
    """Fill textual-image's caches with hero's answers before its modules load, so they send no query."""
    terminal = import_module("textual_image._terminal")
    width, height = report.cell_size or (10, 20)
    cell = terminal.CellSize(width, height)
    if hasattr(terminal, "probe_terminal"):  # 0.13+
        terminal.probe_terminal._result = terminal.TerminalCapabilities(cell, sixel=report.sixel, tgp=report.kitty_graphics)
        return
    terminal.get_cell_size._result = cell  # 0.12: its auto class probes on import unless stdout looks like no terminal
    if "textual_image.renderable" in sys.modules:
        return
    stdout = sys.__stdout__
    sys.__stdout__ = None
    try:
        import_module("textual_image.renderable")
    finally:
        sys.__stdout__ = stdout


def widget_class(method: str) -> type[Widget]:
    """The textual-image widget class that draws with ``method`` (kitty, sixel, halfblock or unicode)."""
    if method == "sixel":
        try:  # textual-image's own, with the last line of each image fixed (see hero_tui.widgets.sixel_lines)
            from hero_tui.widgets.sixel_image import SixelImage
            return SixelImage
        except ImportError:  # a release that moved the private class it builds on: its own widget, as is
            pass
    widgets = import_module("textual_image.widget")
    for name in _WIDGET_NAMES[method]:
        cls = getattr(widgets, name, None)
        if cls is not None:
            return cls
    raise HeroError(f"textual-image {textual_image_version()} has no {method} widget; try --graphics halfblock")


def textual_image_version() -> str:
    try:
        return version("textual-image")
    except PackageNotFoundError:
        return "not installed"

