"""The engine crashed or ran out of memory: say so, say where its log is, offer a restart."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static


class EngineFailedScreen(ModalScreen[bool]):
    """Dismisses with True to restart the engine; q (the app's binding) quits."""

    BINDINGS = [
        Binding("r", "dismiss(True)", "Restart engine", id="restart_engine"),
        Binding("escape", "dismiss(False)", "Look at the images", id="failed_close"),
    ]

    def __init__(self, message: str, log_path: str, detail: str = ""):
        super().__init__()
        self._message = message
        self._engine_log = log_path
        self._detail = detail

    def compose(self) -> ComposeResult:
        with Vertical(id="failed-frame") as frame:
            frame.border_title = " the engine failed "
            yield Static(self._message, id="failed-message")
            if self._detail:
                yield Static(self._detail, id="failed-detail", markup=False)
            yield Static(f"Its log: {self._engine_log}", id="failed-log", markup=False)
            yield Static("Your labels are saved and the session is intact.\n"
                         "r restarts the engine · escape looks at the images · q quits", id="failed-hint")
