"""What the app knows of the terminal it draws in, once hero_tui.graphics has asked it: its cell size and quirks.

The image widgets read these while they draw; graphics chooses those widgets. Both
import this module, and it imports neither.
"""

from __future__ import annotations

from importlib import import_module

_terminal_version = ""  # the XTVERSION reply of the terminal hero draws in, once asked


def remember_terminal_version(version: str) -> None:
    """Keep the terminal's XTVERSION reply (hero_tui.graphics.select_graphics asks once)."""
    global _terminal_version
    _terminal_version = version


def sixel_blanks_next_column() -> bool:
    """Whether the terminal blanks one column more than a Sixel image covers, right of it, to its own default
    background (Konsole 22.12, measured; see hero_tui.widgets.sixel_lines)."""
    return _terminal_version.lower().startswith("konsole")


def cell_size() -> tuple[int, int] | None:
    """Width and height of one terminal cell in pixels (textual-image's answer, cached); None if it has no answer."""
    try:
        size = import_module("textual_image._terminal").get_cell_size()
    except (ImportError, AttributeError, OSError):  # a private module of textual-image; releases may move it
        return None
    return int(size.width), int(size.height)
