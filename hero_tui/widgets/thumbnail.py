"""One image of a round in its container: the number on the border, the label as border colour and badge."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Container
from textual.widget import Widget

from hero_tui.batch import ImageItem, Label

_BADGES = {"good": "✓ good", "bad": "✗ bad", None: ""}


class Thumbnail(Container):
    """An image with its number; good, bad, best and the cursor change only the border (a tint would re-send the image)."""

    def __init__(self, item: ImageItem, image_class: type[Widget], *, caption: str | None = None):
        super().__init__(classes="thumbnail")
        self.item = item
        self._image_class = image_class
        self._caption = caption
        self.border_title = caption or f" {item.number} "

    def compose(self) -> ComposeResult:
        yield self._image_class(self.item.path, classes="thumbnail-image")

    def show_state(self, label: Label, is_best: bool) -> None:
        self.set_class(label == "good" and not is_best, "-good")
        self.set_class(label == "bad", "-bad")
        self.set_class(is_best, "-best")
        self.border_subtitle = "★ best" if is_best else _BADGES[label]

    def show_cursor(self, on: bool) -> None:
        self.set_class(on, "-cursor")
