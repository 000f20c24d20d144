"""Before a round without a previous best (round 0) is submitted: what will be sent, and one key to send it.

Submitting cannot be undone (the round's labels become read-only and the engine
starts learning), and every unlabeled image then counts as not good, so the person
sees the counts and the best first, as the best-picker shows later rounds' choice.
"""

from __future__ import annotations

from collections.abc import Mapping

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Footer, Static

from hero_tui.batch import ImageItem
from hero_tui.keys import QUIT_BINDING, key_names
from hero_tui.screens.image_modal_screen import ImageModalScreen
from hero_tui.widgets.image_grid import OFF_SCREEN, show_once_laid_out
from hero_tui.widgets.thumbnail import Thumbnail


class SubmitScreen(ImageModalScreen[bool]):
    """Dismisses with True to submit, False to go back to labeling."""

    BINDINGS = [
        Binding("enter,y", "dismiss(True)", "Submit", id="submit_confirm"),
        Binding("escape", "dismiss(False)", "Back to labeling", id="submit_back"),
        QUIT_BINDING,
    ]

    def __init__(self, round_: int, counts: str, best_line: str, best: ImageItem | None, image_class: type[Widget],
                 keys: Mapping[str, str] | None = None):
        """``keys``: each binding id's key as the hint names it (keys.key_names; default: this screen's own keys)."""
        super().__init__()
        self._keys = keys or key_names({"": self.BINDINGS}, {})
        self._round = round_
        self._counts = counts
        self._best_line = best_line
        self._best = best
        self._image_class = image_class

    def compose(self) -> ComposeResult:
        with Vertical(id="submit-frame") as frame:
            frame.border_title = f" submit round {self._round}? "
            yield Static(self._counts, id="submit-counts", markup=False)
            yield Static(self._best_line, id="submit-best", markup=False)
            if self._best is not None:
                best = Thumbnail(self._best, self._image_class, caption=" ★ best ")
                best.styles.offset = (0, OFF_SCREEN)  # moved in once sized (on_mount): a Sixel terminal gets it once
                yield best
            keys = self._keys
            yield Static("The labels of this round cannot be changed after submitting. "
                         f"{keys['submit_confirm']} submits, {keys['submit_back']} goes back to labeling.",
                         id="submit-hint", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        for thumbnail in self.query(Thumbnail):
            show_once_laid_out(thumbnail)
