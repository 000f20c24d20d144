"""The engine's stages as the app names them, and the seconds left in a running one, steady enough to read.

A stage's pace in its first percent says little (the first pass warms caches; on a shared
machine another program takes a core for a while), so a raw "time so far / fraction done"
jumps about. The estimate leans on the stage's time in the last round while little is done
and on its own pace once a tenth is (the last round's time is only a guess: another program
may have taken a core since), and what is shown follows a new estimate over a quarter of the
stage (a few seconds at most) instead of jumping to it.

The pace is timed from the end of the stage's first step (an epoch, a pass, a denoising step):
each stage reports 0 done as it starts, and its first step warms up (caches, kernels), which
would stretch every estimate. A stage first seen part-way is timed from that first report, its
work so far not counted as done in no time (which said "about 0 s left" for the 7 s of a policy
update first seen after its first pass, a fifth of it on the demo model).
"""

from __future__ import annotations

from hero_engine.protocol import REPORT_STAGE

REPLAY = "replay"  # a round another engine process drew, its steps drawn again before it is learned from
# The learning's stages with a bar each, in the order a round's learning runs them: the next round's images last.
STAGES = {REPLAY: "replaying round", "representation": "representation", "policy": "policy update",
          "saving": "saving", "sampling": "sampling"}
LOADING = "loading"  # the engine loading the model (once a process): said in words, it has no bar
STAGE_TITLES = {LOADING: "loading the model", **STAGES, REPORT_STAGE: "drawing the report's images"}
# Within loading, a hub model's first download (hero_engine.session.progress.DOWNLOADING): bytes so far, of a total
# where the hub told it (0 where not).
DOWNLOADING = "downloading"

SMOOTHING_SECONDS = 5.0  # a new estimate is taken in fully after this long at most
SMOOTHING_SHARE = 0.25  # or after this share of the stage's expected time, for a stage of a few seconds
FIRST_FRACTION = 0.05  # with no last round to go by, nothing is said before this much has been timed
OWN_PACE_SHARE = 0.1  # the last round's time counts less as the stage is timed, and not at all past this share


class StageEstimate:
    """One running stage: ``update`` with each progress report gives the seconds left, or None while unknown."""

    def __init__(self, started: float, last_seconds: float | None):
        self.started = started  # the stage's first report
        self.last_seconds = last_seconds  # the stage's time in the last round; None in the first
        self._left: float | None = None
        self._at = started
        self._timed_from: tuple[float, int] | None = None  # (time, done) where timing starts

    def update(self, done: int, total: int, now: float) -> float | None:
        fraction = min(1.0, done / total) if total > 0 else 0.0
        if fraction >= 1.0:
            self._left, self._at = 0.0, now
            return 0.0
        if self._timed_from is None or self._timed_from[1] == 0:
            self._timed_from = (now, done)
        since, done_then = self._timed_from
        timed = done - done_then
        timed_share = timed / total if total > 0 else 0.0
        at_pace = (now - since) * (total - done) / timed if timed > 0 else None
        if self.last_seconds is None:
            if at_pace is None or timed_share < FIRST_FRACTION:
                return None
            target = at_pace
        else:  # the last round's time while little is timed, this round's pace as more is
            as_last_round = (1.0 - fraction) * self.last_seconds
            if at_pace is None:
                target = as_last_round
            else:
                own = min(1.0, timed_share / OWN_PACE_SHARE)
                target = (1.0 - own) * as_last_round + own * at_pace
        if self._left is None:
            self._left = target
        else:
            predicted = self.left(now)
            window = min(SMOOTHING_SECONDS, SMOOTHING_SHARE * (now - self.started + target))
            weight = min(1.0, (now - self._at) / window) if window > 0 else 1.0
            self._left = predicted + weight * (target - predicted)
        self._at = now
        return self._left

    def left(self, now: float) -> float | None:
        """The last estimate, counted down to ``now``."""
        if self._left is None:
            return None
        return max(0.0, self._left - (now - self._at))


def byte_size(count: int) -> str:
    """"420 MB", "1.3 GB": bytes as a download is read (powers of 1000, as the hub lists sizes)."""
    if count >= 10**9:
        return f"{count / 10**9:.1f} GB"
    return f"{count / 10**6:.0f} MB" if count >= 10**6 else f"{count / 10**3:.0f} kB"


def duration(seconds: float) -> str:
    """"8 s", "1 min 05 s": how a person reads a wait."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def time_left(seconds: float) -> str:
    """"about 8 s left", or "under a second left" where rounding would say 0 s."""
    return f"about {duration(seconds)} left" if seconds >= 0.5 else "under a second left"


def download_total_known(done: int, total: int) -> bool:
    """Whether a download's total can be shown: told (not 0), and not passed (it is the files' sizes as the hub
    lists them, for the files diffusers is expected to pick)."""
    return 0 < total and done <= total


def download_state(done: int, total: int, lately: int, seconds: float) -> str:
    """"1.3 GB of 2.1 GB, 45 MB/s, about 18 s left", or "1.3 GB so far, 45 MB/s" without a total; the pace is
    ``lately`` bytes in ``seconds`` (since the download's first report), once that is a second or more, and
    said while it is a kB/s or more (a stalled download gets no time left)."""
    pace = lately / seconds if seconds >= 1 else 0.0
    pace = pace if pace >= 10**3 else 0.0
    if not download_total_known(done, total):
        return f"{byte_size(done)} so far" + (f", {byte_size(round(pace))}/s" if pace else "")
    shown = f"{byte_size(done)} of {byte_size(total)}"
    if pace:
        shown += f", {byte_size(round(pace))}/s"
        if done < total:
            shown += f", {time_left((total - done) / pace)}"
    return shown
