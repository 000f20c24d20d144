"""Remappable keys: a [keys] table in the user's config file maps binding ids to keys.

    # ~/.config/hero/config.toml (see `hero-tui doctor` for the path on this machine)
    [keys]
    good = "g"
    undo = ["u", "ctrl+z"]

Ids are those of the app's bindings (the help screen, `?`, lists them).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from platformdirs import user_config_dir
from textual.binding import Binding
from textual.keys import format_key

from hero_engine.errors import HeroError

# Modal screens do not pass keys on to the app's bindings, so each one that may be on top lists this
# (same id: a remapped quit key applies everywhere). Not the export screen: q is typed into its path.
QUIT_BINDING = Binding("q", "app.quit_session", "Quit", id="quit")


def config_path() -> Path:
    return Path(user_config_dir("hero")) / "config.toml"


def binding_ids(bindings: Iterable[object]) -> set[str]:
    return {b.id for b in bindings if isinstance(b, Binding) and b.id}


def load_keymap(scopes: Mapping[str, Sequence[Binding]], path: Path | None = None) -> dict[str, str]:
    """The [keys] table of the config file as a Textual keymap; {} when there is no file.

    ``scopes``: each screen's name and every binding that answers keys there. A key the table gives a
    binding that another binding of the same screen already answers is refused: Textual would let one of
    them go silently (`best` unreachable after `good = "b"`).
    """
    known_ids = set().union(*(binding_ids(bindings) for bindings in scopes.values()))
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
        names = [keys] if isinstance(keys, str) else keys if isinstance(keys, list) and keys else [None]
        if not all(isinstance(name, str) and all(part.strip() for part in name.split(",")) for name in names):
            raise HeroError(f"{path}: keys.{binding_id} must be a key name or a list of key names")
        keymap[binding_id] = ",".join(names)
    for screen, bindings in scopes.items():
        _refuse_clashes(keymap, screen, bindings, path)
    return keymap


def _refuse_clashes(keymap: dict[str, str], screen: str, bindings: Sequence[Binding], path: Path) -> None:
    """Only keys the table adds are checked: by default some screens answer an app key themselves (? closes the help)."""
    default: dict[str, set[str]] = {}
    for binding in bindings:
        if binding.id:
            default.setdefault(binding.id, set()).update(_key_names(binding.key))
    answering = {binding_id: _key_names(keymap[binding_id]) if binding_id in keymap else keys
                 for binding_id, keys in default.items()}
    for binding_id in sorted(set(keymap) & set(answering)):
        for key in sorted(answering[binding_id] - default[binding_id]):
            other = next((other for other, keys in sorted(answering.items()) if other != binding_id and key in keys), None)
            if other is not None:
                raise HeroError(f"{path}: keys.{binding_id} takes {key}, which {other} answers on {screen}: "
                                f"give one of them another key")


def key_names(scopes: Mapping[str, Sequence[Binding]], keymap: Mapping[str, str]) -> dict[str, str]:
    """Each binding id's first key as the footer writes it ("?", "⏎", "esc"), after the [keys] table: the keys
    that the app's hints name in prose, so a remapped key is the one they name."""
    names: dict[str, str] = {}
    for bindings in scopes.values():
        for binding in bindings:
            if binding.id and binding.id not in names:
                first = keymap.get(binding.id, binding.key).split(",")[0]
                names[binding.id] = format_key(next(iter(_key_names(first))))
    return names


def _key_names(keys: str) -> set[str]:
    """Textual's names for the comma-separated ``keys`` ("?" is question_mark)."""
    return {binding.key for binding in Binding.make_bindings([Binding(keys, "")])}
