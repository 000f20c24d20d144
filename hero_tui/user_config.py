"""The [graphics] table of the user's config file (the same file as [keys]):

    [graphics]
    method = "sixel"      # auto, kitty, sixel, halfblock or unicode; --graphics overrides it
    truecolor = true      # 24-bit colour even where COLORTERM is not set (plain SSH)

`hero-tui doctor --keep` writes the method it found; the rest of the file is kept.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from hero_engine.errors import HeroError
from hero_engine.storage.integrity import atomic_write_text
from hero_tui.graphics import GRAPHICS_METHODS, check_method
from hero_tui.keys import config_path


@dataclass(frozen=True)
class GraphicsSettings:
    method: str = "auto"
    truecolor: bool | None = None  # None: hero decides from the terminal's answers


def read_document(path: Path | None = None) -> dict:
    path = config_path() if path is None else path
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise HeroError(f"{path} is not valid TOML: {exc}") from None


def graphics_settings(path: Path | None = None) -> GraphicsSettings:
    path = config_path() if path is None else path
    table = read_document(path).get("graphics", {})
    if not isinstance(table, dict):
        raise HeroError(f"{path}: [graphics] must be a table")
    method = table.get("method", "auto")
    if method not in GRAPHICS_METHODS:
        raise HeroError(f"{path}: graphics.method must be one of {', '.join(GRAPHICS_METHODS)}, not {method!r}")
    truecolor = table.get("truecolor")
    if truecolor is not None and not isinstance(truecolor, bool):
        raise HeroError(f"{path}: graphics.truecolor must be true or false")
    return GraphicsSettings(method, truecolor)


def keep_graphics_method(method: str, path: Path | None = None) -> Path:
    """Write graphics.method into the config file, atomically (a crash leaves the old file whole), keeping the rest."""
    check_method(method)
    path = config_path() if path is None else path
    document = read_document(path)
    table = document.get("graphics")
    document["graphics"] = {**(table if isinstance(table, dict) else {}), "method": method}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, tomli_w.dumps(document))
    return path
