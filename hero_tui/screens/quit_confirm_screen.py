"""Quitting while the engine learns: say what is thrown away and how to resume, before it is."""

from __future__ import annotations

from collections.abc import Mapping

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from hero_tui.keys import QUIT_BINDING, key_names


class QuitConfirmScreen(ModalScreen[str | None]):
    """Dismisses with QUIT_NOW, QUIT_AFTER_LEARNING, or None to stay.

    The quit key itself (keys.QUIT_BINDING, remappable) confirms too: the session screen's
    quit_session dismisses this screen with QUIT_NOW when it is on top, so "q q" quits.
    """

    QUIT_NOW = "now"
    QUIT_AFTER_LEARNING = "after learning"

    BINDINGS = [
        Binding("y", "dismiss('now')", "Quit now (the learning restarts on resume)", id="quit_confirm"),
        Binding("f", "dismiss('after learning')", "Finish the learning, then quit", id="quit_after_learning"),
        Binding("escape,n", "dismiss(None)", "Cancel", id="quit_cancel"),
        QUIT_BINDING,
    ]

    def __init__(self, stage: str, round_: int | None, resume_command: str, keys: Mapping[str, str] | None = None):
        """``keys``: each binding id's key as the hint names it (keys.key_names; default: this screen's own keys)."""
        super().__init__()
        self._keys = keys or key_names({"": self.BINDINGS}, {})
        self._stage = stage
        self._round = round_
        self._resume_command = resume_command

    def compose(self) -> ComposeResult:
        learning = f"learning from round {self._round}" if self._round is not None else "learning"
        with Vertical(id="quit-frame") as frame:
            frame.border_title = " quit while learning? "
            yield Static(f"The engine is {learning} ({self._stage} stage). Quitting now throws the running stage "
                         "away: the learning starts again from its first stage when you resume.",
                         id="quit-message", markup=False)
            yield Static(f"Your labels are saved. Resume with:  {self._resume_command}", id="quit-resume", markup=False)
            keys = self._keys
            yield Static(f"{keys['quit_after_learning']}: finish the learning (and make the next images), then quit · "
                         f"{keys['quit']} or {keys['quit_confirm']}: quit now (the learning restarts on resume) · "
                         f"{keys['quit_cancel']}: cancel", id="quit-hint", markup=False)
        yield Footer()
