"""Errors a user can act on. Each carries a one-line message for the CLI and the TUI."""


class HeroError(Exception):
    """A problem the user can fix; its message is shown as one line, without a traceback."""


class SessionLocked(HeroError):
    """Another process owns the session."""


class StageCancelled(HeroError):
    """A long stage was asked to stop; the session is left as it was before the stage."""


class OutOfMemory(HeroError):
    """The device ran out of memory during a stage; the session is intact."""
