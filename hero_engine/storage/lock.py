"""The session lock: one process owns a session folder at a time (an flock on <session>/.lock)."""

from __future__ import annotations

import os
from pathlib import Path

from hero_engine.errors import HeroError, SessionLocked
from hero_engine.storage.integrity import write_failure


class SessionLock:
    """An exclusive flock on <session>/.lock, released when the process exits."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / ".lock"
        self._fh = None

    def acquire(self) -> None:
        import fcntl

        try:
            fh = open(self.path, "a+")
        except OSError as exc:
            raise HeroError(
                f"cannot open session {self.path.parent} for writing ({self.path.name}: {write_failure(exc)}): "
                "make the folder writable and try again"
            ) from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            owner = fh.read().strip() or "another process"
            fh.close()
            raise SessionLocked(f"session {self.path.parent} is in use by {owner}; close it there first", self.path.parent) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"process {os.getpid()}")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def holder(folder: Path) -> int | None:
    """The process that holds the session's lock now, or None (none does, or it cannot be told off Linux).

    Read from Linux's /proc/locks, never by trying the lock: a listing that took it for a moment could make a
    session starting at that moment refuse as in use. The lock file names the process that took it last; it holds
    the lock still when /proc/locks shows that process with a flock on that file.
    """
    path = Path(folder) / ".lock"
    try:
        named = int(path.read_text().split()[-1])
        inode = path.stat().st_ino
        locks = Path("/proc/locks").read_text()
    except (OSError, ValueError, IndexError):
        return None
    for line in locks.splitlines():
        fields = line.split()  # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; "1: -> FLOCK ..." waits for it
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[4] == str(named) and fields[5].rsplit(":", 1)[-1] == str(inode):
            return named
    return None

