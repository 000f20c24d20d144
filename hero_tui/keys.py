"""Remappable keys: a [keys] table in the user's config file maps binding ids to keys.

    # ~/.config/hero/config.toml (see `hero-tui doctor` for the path on this machine)
    [keys]
    good = "g"
    undo = ["u", "ctrl+z"]

Ids are those of the app's bindings (the help screen, `?`, lists them).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from platformdirs import user_config_dir
from textual.binding import Binding

from hero_engine.errors import HeroError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


# Modal screens do not pass keys on to the app's bindings, so each one that may be on top lists this
# (same id: a remapped quit key applies everywhere). Not the export screen: q is typed into its path.
QUIT_BINDING = Binding("q", "app.quit_session", "Quit", id="quit")


def config_path() -> Path:
    return Path(user_config_dir("hero")) / "config.toml"


def binding_ids(bindings: Iterable[object]) -> set[str]:
    return {b.id for b in bindings if isinstance(b, Binding) and b.id}


def load_keymap(known_ids: set[str], path: Path | None = None) -> dict[str, str]:
    """The [keys] table of the config file as a Textual keymap; {} when there is no file."""
    path = config_path() if path is None else path
    if not path.is_file():
        return {}
    try:
        table = tomllib.loads(path.read_text()).get("keys", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise HeroError(f"{path} is not valid TOML: {exc}") from None
    if not isinstance(table, dict):
        raise HeroError(f"{path}: [keys] must be a table of binding = key")
    unknown = sorted(set(table) - known_ids)
    if unknown:
        raise HeroError(f"{path}: unknown key binding(s) {', '.join(unknown)}; known: {', '.join(sorted(known_ids))}")
    keymap: dict[str, str] = {}
    for binding_id, keys in table.items():
        if isinstance(keys, str) and keys.strip():
            keymap[binding_id] = keys
        elif isinstance(keys, list) and keys and all(isinstance(k, str) and k.strip() for k in keys):
            keymap[binding_id] = ",".join(keys)
        else:
            raise HeroError(f"{path}: keys.{binding_id} must be a key name or a list of key names")
    return keymap
