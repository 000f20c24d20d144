"""Who holds a session, in words a person can act on.

The session lock names the process that holds it. When that is the engine child of an
open hero app, its pid means nothing to someone looking for the app: name the app's
process and how to reach it instead (Linux's /proc; elsewhere the lock's own words stand).
"""

from __future__ import annotations

from pathlib import Path

from hero_engine.errors import SessionLocked
from hero_engine.storage.lock import SessionLock


def refusal_line(refusal: SessionLocked) -> str:
    """``refusal`` as one line: the hero app that holds the session where it is one, else the lock's message."""
    if refusal.folder is None:
        return str(refusal)
    try:
        engine_pid = int(SessionLock(refusal.folder).path.read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return str(refusal)
    app_pid = app_of_engine(engine_pid)
    if app_pid is None:
        return str(refusal)
    return (f"session {refusal.folder} is open in the hero app, process {app_pid} (its engine is process {engine_pid}): "
            "switch to the terminal where it runs, or quit it there with q first")


def app_of_engine(pid: int) -> int | None:
    """The hero app whose engine child is process ``pid``, or None (another kind of process, or no /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        app_pid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
        app_command = Path(f"/proc/{app_pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return app_pid if "hero_tui" in app_command or "hero-tui" in app_command else None


def open_in(pid: int) -> str:
    """Where a session held by process ``pid`` is open, in the words `hero-tui sessions` lists it."""
    app_pid = app_of_engine(pid)
    return f"process {pid}" if app_pid is None else f"the app, process {app_pid}"
