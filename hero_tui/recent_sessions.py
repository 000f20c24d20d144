"""Session folders the app has opened, wherever they are, so `hero-tui resume` finds the last one used.

Sessions made with `--session DIR` live outside the user sessions folder, where a scan
of that folder cannot see them. The registry is a small JSON file in the user data
folder: folder path -> when it was last opened. It is rewritten whole into a temporary
file and renamed into place, so a crash or a second app never leaves it half written;
when two apps write at the same moment the later one wins (an entry may be lost, never
the file). A registry that cannot be read or written costs only this convenience: the
app goes on and the reason is logged.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from platformdirs import user_data_dir

from hero_engine.storage.integrity import atomic_write_text
from hero_engine.storage.paths import APP_NAME

log = logging.getLogger(__name__)

MAX_ENTRIES = 200  # old entries beyond this are dropped: resume needs the recent ones only


def registry_path() -> Path:
    return Path(user_data_dir(APP_NAME, appauthor=False)) / "recent_sessions.json"


def read_uses(registry: Path | None = None) -> dict[Path, float]:
    """Folder -> when the app last opened it (seconds since the epoch); {} when there is no readable registry."""
    registry = registry_path() if registry is None else Path(registry)
    try:
        entries = json.loads(registry.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("the list of recent sessions %s cannot be read (%s); it is left out", registry, exc)
        return {}
    if not isinstance(entries, dict):
        return {}
    return {Path(folder): float(at) for folder, at in entries.items() if isinstance(at, (int, float))}


def record_use(folder: Path, registry: Path | None = None, now: float | None = None) -> None:
    """Remember that ``folder`` was opened now (atomically; a failure is logged, never raised)."""
    registry = registry_path() if registry is None else Path(registry)
    uses = read_uses(registry)
    uses[Path(folder).resolve()] = time.time() if now is None else now
    newest = sorted(uses.items(), key=lambda entry: entry[1], reverse=True)[:MAX_ENTRIES]
    try:
        registry.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(registry, json.dumps({str(path): at for path, at in newest}, indent=1))
    except OSError as exc:
        log.warning("could not record %s in the list of recent sessions %s: %s", folder, registry, exc)
