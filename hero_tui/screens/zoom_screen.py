"""One image, as large as the terminal allows."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Vertical
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Static

from hero_tui.batch import ImageItem
from hero_tui.keys import QUIT_BINDING


class ZoomScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("enter,escape,z", "dismiss", "Close", id="zoom_close"),
        QUIT_BINDING,
    ]

    def __init__(self, item: ImageItem, image_class: type[Widget], caption: str):
        super().__init__()
        self.item = item
        self._image_class = image_class
        self._caption = caption

    def compose(self) -> ComposeResult:
        with Vertical(id="zoom-frame") as frame:
            frame.border_title = f" image {self.item.number} "
            frame.border_subtitle = self._caption
            with Center():
                yield self._image_class(self.item.path, id="zoom-image")
            yield Static("enter or escape closes", id="zoom-hint")
