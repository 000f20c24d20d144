"""Which textual-image widget draws the images: the terminal's answer, or the --graphics override.

Importing textual_image queries the terminal (Sixel, then the kitty graphics
protocol, then the cell size). That only works before Textual owns the
terminal, so ``image_widget_class`` must run before the app starts, and never
for ``--help``. Works with textual-image 0.12 (Python 3.11) and 0.13+.
"""

from __future__ import annotations

from enum import Enum
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from hero_engine.errors import HeroError

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

# Widget class names in textual_image.widget, newest first: later releases may add a dedicated kitty class.
_WIDGET_NAMES = {
    "auto": ("Image",),
    "kitty": ("KittyImage", "TGPImage"),
    "sixel": ("SixelImage",),
    "halfblock": ("HalfcellImage",),
    "unicode": ("UnicodeImage",),
}

_RENDERABLE_METHODS = {"tgp": "kitty", "kitty": "kitty", "sixel": "sixel", "halfcell": "halfblock", "unicode": "unicode"}


def image_widget_class(method: str = "auto") -> type[Widget]:
    """The textual-image widget class for ``method`` (probing the terminal on first use)."""
    if method not in GRAPHICS_METHODS:
        raise HeroError(f"unknown graphics method '{method}': choose one of {', '.join(GRAPHICS_METHODS)}")
    import_module("textual_image.renderable")  # the terminal probe; see the module docstring
    widgets = import_module("textual_image.widget")
    for name in _WIDGET_NAMES[method]:
        cls = getattr(widgets, name, None)
        if cls is not None:
            return cls
    raise HeroError(f"textual-image {textual_image_version()} has no {method} widget; try --graphics halfblock")


def detected_method() -> str:
    """The method the terminal answered with (probes the terminal on first use)."""
    renderable = import_module("textual_image.renderable").Image
    module = renderable.__module__.rsplit(".", 1)[-1]
    return _RENDERABLE_METHODS.get(module, module)


def method_of(widget_class: type[Widget]) -> str:
    for method, names in _WIDGET_NAMES.items():
        if method != "auto" and widget_class.__name__ in names:
            return method
    return detected_method()


def cell_size() -> tuple[int, int] | None:
    """Width and height of one terminal cell in pixels (textual-image's answer, cached); None if it has no answer."""
    try:
        size = import_module("textual_image._terminal").get_cell_size()
    except (ImportError, AttributeError, OSError):  # a private module of textual-image; releases may move it
        return None
    return int(size.width), int(size.height)


def textual_image_version() -> str:
    try:
        return version("textual-image")
    except PackageNotFoundError:
        return "not installed"
