"""One image of a round: a title line with its number above it, a badge line with its label below it.

The label and the cursor show as text marks (▶ the cursor, ✓ good, ✗ not good, ★ best) and as
colour, so they read in 16 colours too. They change only the two text lines, never the image's
own cells: a graphics terminal then gets a few bytes per key press instead of the image again.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Static

from hero_tui.batch import ImageItem, Label

CURSOR_MARK = "▶"
BADGES = {"good": "✓ good", "bad": "✗ not good", None: "· unlabeled"}
BEST_BADGE = "★ best"


PENDING_TEXT = "drawing…"


class Thumbnail(Vertical):
    """A tile; ``item`` None makes the tile of an image still being drawn (``number`` then says its place)."""

    def __init__(self, item: ImageItem | None, image_class: type[Widget], *, caption: str | None = None,
                 number: int | None = None):
        super().__init__(classes="thumbnail")
        self.item = item
        self._image_class = image_class
        self._caption = caption or f"{item.number if item is not None else number}"
        self._cursor = False
        self._state: tuple[Label, bool] | None = None

    def compose(self) -> ComposeResult:
        yield Static(self._title_text(), classes="thumbnail-title", markup=False)
        if self.item is None:
            yield Static(PENDING_TEXT, classes="thumbnail-image thumbnail-pending", markup=False)
        else:
            yield self._image_class(self.item.path, classes="thumbnail-image")
        yield Static("", classes="thumbnail-badge", markup=False)

    async def show_image(self, item: ImageItem, offset: tuple[int, int]) -> Widget:
        """Put the image into a tile that was waiting for it; returns the image widget, mounted at ``offset``
        (off screen, for the caller to move into place once it is laid out: then it is painted once)."""
        self.item = item
        pending = self.query_one(".thumbnail-pending", Static)
        image = self._image_class(item.path, classes="thumbnail-image")
        image.styles.offset = offset
        await self.mount(image, before=pending)
        await pending.remove()
        return image

    @property
    def badge(self) -> str:
        """The badge line's text: how the label reads without colour."""
        label, is_best = self._state or (None, False)
        return BEST_BADGE if is_best else BADGES[label]

    @property
    def title(self) -> str:
        """The title line's text: the number, and the cursor's mark. hero_tui.layout_record reads it (and the
        real-terminal tests through it), so it is used though nothing in the app calls it."""
        return self._title_text()

    def on_mount(self) -> None:
        self._draw_title()
        self._draw_badge()

    def show_state(self, label: Label, is_best: bool) -> None:
        if (label, is_best) != self._state:
            self._state = (label, is_best)
            self._draw_badge()

    def show_cursor(self, on: bool) -> None:
        if on != self._cursor:
            self._cursor = on
            self._draw_title()

    def _draw_title(self) -> None:
        if not self.is_mounted:  # on_mount draws it
            return
        title = self.query_one(".thumbnail-title", Static)
        title.set_class(self._cursor, "-cursor")
        title.update(self._title_text(), layout=False)

    def _draw_badge(self) -> None:
        if not self.is_mounted or self._state is None:
            return
        label, is_best = self._state
        badge = self.query_one(".thumbnail-badge", Static)
        badge.set_class(label == "good" and not is_best, "-good")
        badge.set_class(label == "bad", "-bad")
        badge.set_class(is_best, "-best")
        badge.update(self.badge, layout=False)

    def _title_text(self) -> str:
        return f"{CURSOR_MARK} {self._caption}" if self._cursor else f"  {self._caption}"
