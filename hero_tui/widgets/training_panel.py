"""Between rounds: the engine's stages in the order they run, each waiting, running (a bar and the seconds left)
or done (the seconds it took), a total time left from the learning's start, and the last round's metrics."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, ProgressBar, Static

from hero_tui.batch import RoundReport
from hero_tui.stages import (
    DOWNLOADING,
    LOADING,
    REPLAY,
    STAGE_TITLES,
    STAGES,
    StageEstimate,
    download_state,
    time_left,
)


class TrainingPanel(Vertical):
    has_report = False

    def __init__(self, **kw):
        super().__init__(**kw)
        self._title = ""
        self._doing = ""  # the title's note of work with no bar (loading the model)
        self._download_from: tuple[float, int] | None = None  # a download's first report (when, bytes): its pace's start
        self._stages: tuple[str, ...] = ()
        self._running: dict[str, StageEstimate] = {}
        self._done: set[str] = set()
        self._first_report: dict[str, float] = {}  # when each stage first reported since start()
        self._last_seconds: dict[str, float] = {}  # each stage's time in the last round

    def compose(self) -> ComposeResult:
        yield Static("", id="training-title")
        for stage, title in STAGES.items():
            with Horizontal(classes="stage-row"):
                yield Label(title, classes="stage-name")
                yield ProgressBar(total=1, show_eta=False, id=f"stage-{stage}")
                yield Label("", id=f"state-{stage}", classes="stage-state")
        yield Static("", id="last-metrics")

    def start(self, title: str, stages: tuple[str, ...]) -> None:
        """The stages about to run, all waiting; the others are hidden. The total time left shows from now on
        where the last round timed every stage."""
        self._title, self._doing, self._stages, self._running, self._done = title, "", stages, {}, set()
        self._first_report = {}
        for stage in STAGES:
            bar = self.query_one(f"#stage-{stage}", ProgressBar)
            bar.parent.display = stage in stages
            bar.display = False
            bar.update(total=1, progress=0)
            self.query_one(f"#state-{stage}", Label).update("waiting")
            self.query_one(f"#state-{stage}", Label).set_classes("stage-state -waiting")
        self._show_title(time.monotonic())

    def progress(self, stage: str, done: int, total: int) -> bool:
        """True when the panel grows: its stage's row was hidden."""
        now = time.monotonic()
        if stage == LOADING:
            self._doing = STAGE_TITLES[LOADING] + "…" if done < total else ""
            self._download_from = None
            self._show_title(now)
            return False
        if stage == DOWNLOADING:  # the loading's first download: bytes so far, of how many where known, and their pace
            if self._download_from is None:
                self._download_from = (now, done)
            since, done_then = self._download_from
            self._doing = f"{STAGE_TITLES[LOADING]}… downloading it: {download_state(done, total, done - done_then, now - since)}"
            self._show_title(now)
            return False
        if stage not in STAGES:
            return False
        if stage not in self._stages:  # not announced: the replay of a round another engine process drew
            self._stages = (stage, *self._stages)
        bar = self.query_one(f"#stage-{stage}", ProgressBar)
        state = self.query_one(f"#state-{stage}", Label)
        grows = not bar.parent.display and self.display
        bar.parent.display = True
        estimate = self._running.get(stage)
        if estimate is None or stage in self._done:  # a stage that runs again is estimated afresh
            self._done.discard(stage)
            last = self._last_seconds.get(stage)
            if last is None and stage == REPLAY:
                last = self._last_seconds.get("sampling")  # the same steps, drawn with the images' decoding and saving
            estimate = self._running[stage] = StageEstimate(now, last)
        # A stage that runs again (the encoder trained a second time) took the time of both runs.
        first_report = self._first_report.setdefault(stage, now)
        if done >= total > 0:
            self._done.add(stage)
            bar.display = False
            # Timed here as well as in the round's report: the next round's sampling ends after the report is sent.
            self._last_seconds[stage] = now - first_report
            state.update(f"done in {now - first_report:.1f} s")
            state.set_classes("stage-state -done")
        else:
            bar.display = True
            bar.update(total=max(total, 1), progress=done)
            left = estimate.update(done, total, now)
            state.update("" if left is None else time_left(left))
            state.set_classes("stage-state -running")
        self._show_title(now)
        return grows

    def seconds_left(self, now: float) -> float | None:
        """The running stage's seconds left plus the waiting stages' times in the last round; None until all are known."""
        left = 0.0
        for stage in self._stages:
            if stage in self._done:
                continue
            estimate = self._running.get(stage)
            if estimate is not None:
                stage_left = estimate.left(now)
            else:
                stage_left = self._last_seconds.get(stage)
            if stage_left is None:
                return None
            left += stage_left
        return left

    def _show_title(self, now: float) -> None:
        parts = [self._title] if self._title else []
        if self._doing:
            parts.append(self._doing)
        several = len(self._stages) > 1  # one stage's time left is on its own row
        left = self.seconds_left(now) if several else None
        if left is not None:
            parts.append(f"{time_left(left)} in all")
        elif several and not all(stage in self._last_seconds for stage in self._stages):
            parts.append("the time left in all is known once a round has been learned")
        self.query_one("#training-title", Static).update(" · ".join(parts))

    def show_report(self, report: RoundReport) -> bool:
        """True when the panel grows: it is shown and had no report yet (a report takes two lines)."""
        grows = self.display and not self.has_report
        self.has_report = True
        self._last_seconds.update(report.seconds)
        reward = "–" if report.mean_reward is None else f"{report.mean_reward:.3f}"
        timing = "  ".join(f"{k} {v:.1f}s" for k, v in report.seconds.items())
        self.query_one("#last-metrics", Static).update(
            f"round {report.round}: {report.good} good, {report.bad} bad, mean reward {reward}, "
            f"{report.labels_total} labels in total\n[dim]{timing}[/dim]"
        )
        return grows
