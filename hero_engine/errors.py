"""Errors a user can act on. Each carries a one-line message for the CLI and the TUI."""

from __future__ import annotations

from pathlib import Path


class HeroError(Exception):
    """A problem the user can fix; its message is shown as one line, without a traceback."""


class SessionLocked(HeroError):
    """Another process owns the session in ``folder`` (None where not known)."""

    def __init__(self, message: str, folder: Path | None = None):
        super().__init__(message)
        self.folder = folder


class StageCancelled(HeroError):
    """A long stage was asked to stop; the session is left as it was before the stage."""


class OutOfMemory(HeroError):
    """The device ran out of memory during a stage; the session is intact."""
