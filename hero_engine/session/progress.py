"""Progress of a long stage, and asking it to stop: what a front end passes to ``propose`` and ``update``."""

from __future__ import annotations

from collections.abc import Callable

from hero_engine.errors import StageCancelled
from hero_engine.models.download_watch import UNKNOWN_TOTAL

# loading: the model, once a process; replay: a round's steps drawn again from its stored noise, before learning from
# a round this process did not draw (a resumed session's)
STAGES = ("loading", "replay", "sampling", "representation", "policy", "saving")
# Within loading, a hub model's first download: (DOWNLOADING, bytes so far, bytes in all or UNKNOWN_TOTAL), from a
# watching thread.
DOWNLOADING = "downloading"
ProgressFn = Callable[[str, int, int], None]


class StageProgress:
    """Wraps a progress callback: reports (stage, done, total) and raises StageCancelled when asked to stop."""

    def __init__(self, on_progress: ProgressFn | None, should_stop: Callable[[], bool] | None):
        self.on_progress = on_progress
        self.should_stop = should_stop

    def stage(self, name: str) -> Callable[[int, int], None]:
        def report(done: int, total: int) -> None:
            if self.should_stop and self.should_stop():
                raise StageCancelled(f"stopped during {name}; the session is saved as it was before this stage")
            if self.on_progress:
                self.on_progress(name, done, total)

        return report

    def downloaded(self, done: int, total: int = UNKNOWN_TOTAL) -> None:
        """The bytes of the model downloaded so far, of ``total``. Called from the thread that watches the download, so
        it only reports: a stop asked meanwhile is acted on when the loading ends (the download cannot be paused)."""
        if self.on_progress:
            self.on_progress(DOWNLOADING, done, total)


NO_PROGRESS = StageProgress(None, None)  # for work nobody watches (rebuilding what was lost) and nobody can stop
