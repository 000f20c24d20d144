"""Round history: good-rate and mean reward per round; `w` writes the session's HTML report and shows its path."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from hero_engine.errors import HeroError
from hero_engine.reporting import html_report, session_record
from hero_tui.keys import QUIT_BINDING
from hero_tui.widgets.metrics_chart import MetricsChart

# The app draws no images for the report: that needs the model, which the engine child holds for labeling.
APP_REPORT_NOTE = ("Not drawn: this report was written from the app. `hero-tui report SESSION` draws them once "
                   "the app is closed.")


class MetricsScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,m", "dismiss", "Close", id="metrics_close"),
        Binding("w", "write_report", "Write report", id="write_report"),
        QUIT_BINDING,
    ]

    def __init__(self, session: Path):
        super().__init__()
        self.session = Path(session)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="metrics-frame") as frame:
            frame.border_title = " rounds "
            yield MetricsChart("asking the engine… (while it learns, it answers after the current stage)")
            yield Static("", id="report-path")
            yield Static("[dim]w writes the HTML report (every round's images and labels, plots) · escape closes[/dim]")

    def show(self, rounds: dict[int, dict[str, float | None]]) -> None:
        self.query_one(MetricsChart).show(rounds)

    def action_write_report(self) -> None:
        self.query_one("#report-path", Static).update("writing the report…")
        self._write_report()

    @work(thread=True, exclusive=True, group="report")
    def _write_report(self) -> None:
        """Read the session and write the report off the event loop (a long session's images take seconds to embed)."""
        try:
            record = session_record.read_session(self.session)
            path = html_report.write_report(record, html_report.default_report_path(self.session), comparison_note=APP_REPORT_NOTE)
        except HeroError as exc:
            text = f"[red]report not written:[/] {escape(str(exc))}"
        else:
            text = f"report written: [b]{escape(str(path))}[/b]"
        self.app.call_from_thread(self.query_one("#report-path", Static).update, text)
