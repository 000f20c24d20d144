"""Where sessions live by default: a per-user data folder, one sub-folder per session.

Torch-free, so the CLI and the TUI can use it before the engine is imported.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from platformdirs import user_data_dir

APP_NAME = "hero"
_SLUG_LENGTH = 40


def sessions_root() -> Path:
    """The folder that holds a user's sessions (e.g. ~/.local/share/hero/sessions)."""
    return Path(user_data_dir(APP_NAME, appauthor=False)) / "sessions"


def slugify(text: str) -> str:
    """A short lowercase file-name part of ``text`` ('session' when nothing is left)."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:_SLUG_LENGTH].rstrip("-") or "session"


def new_session_folder(prompt: str, root: Path | None = None, now: datetime | None = None) -> Path:
    """A folder name that does not exist yet: <root>/<YYYYmmdd-HHMMSS>-<slug of the prompt>."""
    root = sessions_root() if root is None else Path(root)
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{slugify(prompt)}"
    folder = root / base
    suffix = 2
    while folder.exists():
        folder = root / f"{base}-{suffix}"
        suffix += 1
    return folder
