"""Between rounds: one progress bar per engine stage in the order they run, each with its ETA, a total ETA,
and the last round's metrics."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, ProgressBar, Static

from hero_tui.batch import RoundReport

# In the order a round's learning runs them: the next round's images are sampled last.
STAGES = {"representation": "representation", "policy": "policy update", "saving": "saving", "sampling": "sampling"}


class TrainingPanel(Vertical):
    has_report = False

    def __init__(self, **kw):
        super().__init__(**kw)
        self._title = ""
        self._stages: tuple[str, ...] = ()
        self._started: dict[str, float] = {}
        self._last_seconds: dict[str, float] = {}  # each stage's time in the last round, for the total ETA

    def compose(self) -> ComposeResult:
        yield Static("", id="training-title")
        for stage, title in STAGES.items():
            with Horizontal(classes="stage-row"):
                yield Label(title, classes="stage-name")
                yield ProgressBar(total=None, show_eta=True, id=f"stage-{stage}")
        yield Static("", id="last-metrics")

    def start(self, title: str, stages: tuple[str, ...]) -> None:
        """Reset the bars of the stages about to run; the others are hidden."""
        self._title, self._stages, self._started = title, stages, {}
        self.query_one("#training-title", Static).update(title)
        for stage in STAGES:
            bar = self.query_one(f"#stage-{stage}", ProgressBar)
            bar.parent.display = stage in stages
            bar.update(total=None, progress=0)

    def progress(self, stage: str, done: int, total: int) -> bool:
        """True when the panel grows: its stage's row was hidden."""
        if stage not in STAGES:
            return False
        bar = self.query_one(f"#stage-{stage}", ProgressBar)
        grows = not bar.parent.display and self.display
        bar.parent.display = True
        bar.update(total=max(total, 1), progress=done)
        self._started.setdefault(stage, time.monotonic())
        left = self.seconds_left(stage, done, total)
        if left is not None:
            self.query_one("#training-title", Static).update(f"{self._title} · about {_duration(left)} left in all")
        return grows

    def seconds_left(self, stage: str, done: int, total: int) -> float | None:
        """The running stage's remaining time at its pace so far, plus the later stages' times in the last round;
        None until both are known."""
        if done <= 0 or stage not in self._stages:
            return None
        elapsed = time.monotonic() - self._started[stage]
        left = elapsed / done * max(total - done, 0)
        for later in self._stages[self._stages.index(stage) + 1:]:
            if later not in self._last_seconds:
                return None
            left += self._last_seconds[later]
        return left

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


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"
