"""The sessions under a folder, read-only: prompt, model, rounds, labels and last activity of each."""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from hero_engine.errors import HeroError
from hero_engine.storage.lock import holder
from hero_engine.storage.store import (
    DB_FILE,
    LABEL_COUNT_SQL,
    SESSION_FILE,
    SessionStore,
    is_session,
)


@dataclass(frozen=True)
class SessionSummary:
    folder: Path
    prompt: str
    model: str
    rounds: int
    labels: int
    last_activity: float
    problem: str | None = None  # why the session cannot be read (then prompt, model and counts are unknown)
    open_in: int | None = None  # the process that has the session open now (the app's engine, or `hero-tui run`)


def list_sessions(root: Path, include_unreadable: bool = False) -> list[SessionSummary]:
    """Every session directly under ``root`` (or ``root`` itself), most recent first; read-only.

    A session that cannot be read is left out, or with ``include_unreadable`` listed with its ``problem``.
    """
    root = Path(root)
    candidates = [root] if is_session(root) else sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return summarize_sessions(candidates, include_unreadable)


def summarize_sessions(folders: list[Path], include_unreadable: bool = False) -> list[SessionSummary]:
    """The sessions among ``folders`` (others are skipped), most recent first; read-only."""
    found = []
    for folder in folders:
        if not is_session(folder):
            continue
        try:
            _, config = SessionStore.read_header(folder)
            db = sqlite3.connect(f"file:{folder / DB_FILE}?mode=ro", uri=True)
            try:
                rounds = db.execute("SELECT COUNT(*) FROM rounds WHERE submitted_at IS NOT NULL").fetchone()[0]
                labels = db.execute(LABEL_COUNT_SQL).fetchone()[0]
                last = db.execute(
                    "SELECT MAX(x) FROM (SELECT MAX(at) AS x FROM label_events UNION ALL SELECT MAX(started_at) FROM rounds)").fetchone()[0]
            finally:
                db.close()
        except (HeroError, sqlite3.Error, OSError) as exc:
            if include_unreadable:
                found.append(SessionSummary(folder, "", "", 0, 0, _mtime(folder), problem=_reason(exc)))
            continue
        found.append(SessionSummary(folder, config.prompt, config.model, rounds, labels,
                                    last or (folder / SESSION_FILE).stat().st_mtime, open_in=holder(folder)))
    return sorted(found, key=lambda s: s.last_activity, reverse=True)


def _mtime(folder: Path) -> float:
    with contextlib.suppress(OSError):
        return (folder / SESSION_FILE).stat().st_mtime
    return 0.0


def _reason(exc: BaseException) -> str:
    if isinstance(exc, sqlite3.Error):
        return f"{DB_FILE} cannot be read ({exc})"
    if isinstance(exc, OSError):
        return f"cannot be read ({exc.strerror or exc})"
    return str(exc)
