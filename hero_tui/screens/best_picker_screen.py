"""From round 1 on: choose the best among this round's good images and the previous best (which may be kept)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import HorizontalScroll, Vertical
from textual.widget import Widget
from textual.widgets import Footer, Static

from hero_tui.batch import ImageItem
from hero_tui.keys import QUIT_BINDING, key_names
from hero_tui.screens.image_modal_screen import ImageModalScreen
from hero_tui.widgets.image_grid import OFF_SCREEN, show_together_once_laid_out
from hero_tui.widgets.thumbnail import Thumbnail

Validator = Callable[[int], str | None]


class BestPickerScreen(ImageModalScreen[int | None]):
    """Dismisses with the chosen image id, or None when the person goes back to labeling."""

    BINDINGS = [
        Binding("left,h", "move(-1)", "Previous", id="picker_left"),
        Binding("right,l", "move(1)", "Next", id="picker_right"),
        Binding("enter,b", "choose", "Choose as best", id="picker_choose"),
        Binding("escape", "dismiss(None)", "Back to labeling", id="picker_back"),
        QUIT_BINDING,
    ]

    def __init__(self, previous_best: ImageItem | None, good: list[ImageItem], current_best: int | None,
                 image_class: type[Widget], validate: Validator, counts: str = "", keys: Mapping[str, str] | None = None):
        """``keys``: each binding id's key as the hint names it (keys.key_names; default: this screen's own keys)."""
        super().__init__()
        self._keys = keys or key_names({"": self.BINDINGS}, {})
        self._candidates = ([previous_best] if previous_best else []) + good
        self._previous_id = previous_best.id if previous_best else None
        self._image_class = image_class
        self._validate = validate
        self._counts = counts
        ids = [c.id for c in self._candidates]
        self._current_best = current_best if current_best in ids else (ids[0] if ids else None)
        self._cursor = ids.index(self._current_best) if self._current_best is not None else 0

    def compose(self) -> ComposeResult:
        with Vertical(id="picker-frame") as frame:
            frame.border_title = " choose the best "
            keys = self._keys
            yield Static("The best of this round's good images, or keep the previous best. "
                         f"{keys['picker_left']}/{keys['picker_right']} move, {keys['picker_choose']} chooses and submits, "
                         f"{keys['picker_back']} goes back.", id="picker-hint", markup=False)
            if self._counts:
                yield Static(self._counts, id="picker-counts", markup=False)
            # Never focused: a row wider than the screen would take ←/→ to scroll a cell, and not move the selection.
            with HorizontalScroll(id="picker-row", can_focus=False):
                for item in self._candidates:
                    caption = f" previous r{item.round}#{item.number} " if item.id == self._previous_id else None
                    thumbnail = Thumbnail(item, self._image_class, caption=caption)
                    thumbnail.styles.offset = (0, OFF_SCREEN)  # moved in once sized (on_mount): Sixel sends each once
                    yield thumbnail
        # Its own footer, as the submit question has: without it, the labeling screen underneath was laid out again
        # for its footer keys once the thumbnails were in place, and Textual repainted this whole screen (twice).
        yield Footer()

    def on_mount(self) -> None:
        show_together_once_laid_out(list(self.query(Thumbnail)))
        self._show_cursor()

    def action_move(self, step: int) -> None:
        self._cursor = min(max(self._cursor + step, 0), len(self._candidates) - 1)
        self._show_cursor()

    def action_choose(self) -> None:
        chosen = self._candidates[self._cursor].id
        problem = self._validate(chosen)
        if problem:
            self.notify(problem, title="cannot choose this one", severity="warning")
            return
        self.dismiss(chosen)

    def _show_cursor(self) -> None:
        for index, thumbnail in enumerate(self.query(Thumbnail)):
            thumbnail.show_state("good", thumbnail.item.id == self._current_best)
            thumbnail.show_cursor(index == self._cursor)
            if index == self._cursor:
                self.query_one("#picker-row", HorizontalScroll).scroll_to_widget(thumbnail, animate=False)
