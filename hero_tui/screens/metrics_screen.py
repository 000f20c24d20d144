"""Round history: good-rate and mean reward per round; `w` writes the session's HTML report and shows its path.

The engine writes the report (`report` in hero_engine.protocol), with images from the tuned LoRA
beside the base model's, since it holds the model; the app never loads torch. While the engine is
not running (it failed, or is restarting) the app writes the report itself, read-only from the
store, without those images.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
from hero_engine.storage.integrity import CHOOSE_ANOTHER_OUT
from hero_tui.keys import QUIT_BINDING, key_names
from hero_tui.widgets.metrics_chart import MetricsChart

# The app writes the report to its one place in the session folder; another place is the command's --out.
ELSEWHERE = "`hero-tui report SESSION --out PATH` writes it elsewhere"

APP_REPORT_NOTE = ("Not drawn: the engine was not running when the app wrote this report. `hero-tui report SESSION` "
                   "draws them once the app is closed.")


class MetricsScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,m", "dismiss", "Close", id="metrics_close"),
        Binding("w", "write_report", "Write report", id="write_report"),
        QUIT_BINDING,
    ]

    def __init__(self, session: Path, ask_engine_for_report: Callable[[Path], bool], keys: Mapping[str, str] | None = None,
                 rounds: dict[int, dict[str, float | None]] | None = None):
        """``ask_engine_for_report(path)`` sends the engine the report command; False when it is not running.
        ``keys``: each binding id's key as the hint names it (keys.key_names; default: this screen's own keys).
        ``rounds``: the metrics to show at once (read from hero.db); None: they come from the engine (``show``)."""
        super().__init__()
        self._keys = keys or key_names({"": self.BINDINGS}, {})
        self.session = Path(session)
        self._ask_engine_for_report = ask_engine_for_report
        self._rounds = rounds

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="metrics-frame") as frame:
            frame.border_title = " rounds "
            yield MetricsChart("asking the engine… (while it learns, it answers once the next round is drawn)")
            yield Static("", id="report-path")
            keys = self._keys
            yield Static(f"[dim]{escape(keys['write_report'])} writes the HTML report (every round's images and labels, plots) · "
                         f"{escape(keys['metrics_close'])} closes[/dim]")

    def on_mount(self) -> None:
        if self._rounds is not None:
            self.show(self._rounds)

    def show(self, rounds: dict[int, dict[str, float | None]]) -> None:
        self.query_one(MetricsChart).show(rounds)

    def show_report_progress(self, done: int, total: int) -> None:
        """How far the engine has drawn the report's images (the tuned LoRA's, then the base model's)."""
        self._say(f"the engine is drawing the report's images, tuned and base: {100 * done // max(total, 1)}%…")

    def action_write_report(self) -> None:
        path = html_report.default_report_path(self.session)
        if self._ask_engine_for_report(path):
            self._say("the engine is drawing samples and writing the report… (while it learns, once the next round is drawn)")
        else:
            self._say("writing the report (without samples: the engine is not running)…")
            self._write_report_here(path)

    def show_report_result(self, path: Path | None, problem: str | None = None) -> None:
        if path is None:
            problem = (problem or "the engine failed").replace(CHOOSE_ANOTHER_OUT, ELSEWHERE)
            self._say(f"[red]report not written:[/] {escape(problem)}")
        else:
            self._say(f"report written: [b]{escape(str(path))}[/b]")

    def _say(self, text: str) -> None:
        self.query_one("#report-path", Static).update(text)

    @work(thread=True, exclusive=True, group="report")
    def _write_report_here(self, path: Path) -> None:
        """Read the store and write the report off the event loop (a long session's images take seconds to embed)."""
        try:
            written = html_report.write_report(session_record.read_session(self.session), path, comparison_note=APP_REPORT_NOTE)
        except HeroError as exc:
            self.app.call_from_thread(self.show_report_result, None, str(exc))
        else:
            self.app.call_from_thread(self.show_report_result, written)
