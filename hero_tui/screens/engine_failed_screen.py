"""The engine crashed or ran out of memory: say so, say where its log is, say what hero.db holds, offer a restart."""

from __future__ import annotations

from collections.abc import Mapping

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from hero_tui.keys import QUIT_BINDING, key_names


class EngineFailedScreen(ModalScreen[bool]):
    """Dismisses with True to restart the engine; q quits (keys.QUIT_BINDING).

    ``saved`` says what hero.db holds, as the app read it back when the engine failed:
    this screen never claims on its own that labels are saved.
    """

    BINDINGS = [
        Binding("r", "dismiss(True)", "Restart engine", id="restart_engine"),
        Binding("escape", "dismiss(False)", "Look at the images", id="failed_close"),
        QUIT_BINDING,
    ]

    def __init__(self, message: str, log_path: str, detail: str = "", saved: str = "", keys: Mapping[str, str] | None = None):
        """``keys``: each binding id's key as the hint names it (keys.key_names; default: this screen's own keys)."""
        super().__init__()
        self._keys = keys or key_names({"": self.BINDINGS}, {})
        self._message = message
        self._engine_log = log_path
        self._detail = detail
        self._saved = saved

    def compose(self) -> ComposeResult:
        with Vertical(id="failed-frame") as frame:
            frame.border_title = " the engine failed "
            yield Static(self._message, id="failed-message", markup=False)
            if self._detail:
                yield Static(self._detail, id="failed-detail", markup=False)
            yield Static(f"Its log: {self._engine_log}", id="failed-log", markup=False)
            if self._saved:
                yield Static(self._saved, id="failed-saved", markup=False)
            keys = self._keys
            yield Static(f"{keys['restart_engine']} restarts the engine · {keys['failed_close']} looks at the images · "
                         f"{keys['quit']} quits", id="failed-hint", markup=False)
