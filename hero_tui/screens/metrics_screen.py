"""Round history: good-rate and mean reward per round."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from hero_tui.keys import QUIT_BINDING
from hero_tui.widgets.metrics_chart import MetricsChart


class MetricsScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,m", "dismiss", "Close", id="metrics_close"), QUIT_BINDING]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="metrics-frame") as frame:
            frame.border_title = " rounds "
            yield MetricsChart("asking the engine… (while it learns, it answers after the current stage)")
            yield Static("[dim]escape closes[/dim]")

    def show(self, rounds: dict[int, dict[str, float | None]]) -> None:
        self.query_one(MetricsChart).show(rounds)
