"""Between rounds: one progress bar per engine stage, with ETA, and the last round's metrics."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, ProgressBar, Static

from hero_tui.batch import RoundReport

STAGES = {"sampling": "sampling", "representation": "representation", "policy": "policy update", "saving": "saving"}


class TrainingPanel(Vertical):
    has_report = False

    def compose(self) -> ComposeResult:
        yield Static("", id="training-title")
        for stage, title in STAGES.items():
            with Horizontal(classes="stage-row"):
                yield Label(title, classes="stage-name")
                yield ProgressBar(total=None, show_eta=True, id=f"stage-{stage}")
        yield Static("", id="last-metrics")

    def start(self, title: str, stages: tuple[str, ...]) -> None:
        """Reset the bars of the stages about to run; the others are hidden."""
        self.query_one("#training-title", Static).update(title)
        for stage in STAGES:
            bar = self.query_one(f"#stage-{stage}", ProgressBar)
            bar.parent.display = stage in stages
            bar.update(total=None, progress=0)

    def progress(self, stage: str, done: int, total: int) -> None:
        if stage not in STAGES:
            return
        bar = self.query_one(f"#stage-{stage}", ProgressBar)
        bar.parent.display = True
        bar.update(total=max(total, 1), progress=done)

    def show_report(self, report: RoundReport) -> None:
        self.has_report = True
        reward = "–" if report.mean_reward is None else f"{report.mean_reward:.3f}"
        timing = "  ".join(f"{k} {v:.1f}s" for k, v in report.seconds.items())
        self.query_one("#last-metrics", Static).update(
            f"round {report.round}: {report.good} good, {report.bad} bad, mean reward {reward}, "
            f"{report.labels_total} labels in total\n[dim]{timing}[/dim]"
        )
