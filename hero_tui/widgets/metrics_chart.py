"""A small terminal chart per round: good-rate, mean reward, and how far the rewards agree with the labels.

Bars in a table, one row per round, not a terminal plotting widget (textual-plotext, which is torch-free
and light enough): the three values have different scales and a session has tens of rounds, so a row
with each value as a bar beside its number reads at a glance in the modal's 80 columns, where plotext's
line plots in text cells would need three panels or a shared axis that squashes two of them, and give
no exact number. The lines over the rounds, with every metric, are in the HTML report (`w` on this
screen, or `hero-tui report`), drawn by matplotlib.
"""

from __future__ import annotations

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

BAR_WIDTH = 24  # where the screen has the room
MIN_BAR_WIDTH = 6  # the bars give way first in a narrow terminal, so the numbers beside them stay whole
_BLOCKS = " ▏▎▍▌▋▊▉█"


def bar(value: float | None, style: str = "", width: int = BAR_WIDTH) -> Text:
    """A horizontal bar for a value in [0, 1], in eighths of a cell."""
    if value is None:
        return Text("–".ljust(width), style="dim")
    eighths = round(min(max(value, 0.0), 1.0) * width * 8)
    full, rest = divmod(eighths, 8)
    text = "█" * full + (_BLOCKS[rest] if rest else "")
    return Text(text.ljust(width), style=style)


class Bar:
    """``bar`` drawn as wide as the table's column ends up (a table too wide for the screen narrows its columns, and
    cut a fixed-width bar with an ellipsis: a bar at 95% and one at 100% then looked alike)."""

    def __init__(self, value: float | None, style: str = ""):
        self.value, self.style = value, style

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(MIN_BAR_WIDTH, BAR_WIDTH)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield bar(self.value, self.style, max(1, min(BAR_WIDTH, options.max_width)))


def good_rate(values: dict[str, float | None]) -> float | None:
    good, bad = values.get("good"), values.get("bad")
    if good is None or bad is None or good + bad == 0:
        return None
    return good / (good + bad)


def _finite(value: float | None) -> float | None:
    return None if value is None or value != value else value  # NaN: a round with no pairs to compare


class MetricsChart(Static):
    def show(self, rounds: dict[int, dict[str, float | None]]) -> None:
        if not rounds:
            self.update("No finished rounds yet: label, submit and let the engine learn once.")
            return
        table = Table(box=None, padding=(0, 1), expand=False)
        table.add_column("round", justify="right")
        table.add_column("good-rate", justify="left")
        table.add_column("", justify="right")
        table.add_column("mean reward", justify="left")
        table.add_column("", justify="right")
        table.add_column("reward agrees with labels", justify="left")
        table.add_column("", justify="right")
        for round_, values in sorted(rounds.items()):
            rate = good_rate(values)
            reward = values.get("reward_mean")
            agreement = _finite(values.get("reward_label_agreement"))
            table.add_row(
                str(round_),
                Bar(rate, "green"),
                "–" if rate is None else f"{rate:.0%}",
                Bar(reward, "cyan"),
                "–" if reward is None else f"{reward:.3f}",
                Bar(agreement, "magenta"),
                "–" if agreement is None else f"{agreement:.0%}",
            )
        self.update(table)
