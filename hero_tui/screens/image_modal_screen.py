"""A modal screen that shows images (the zoom, the submit question, the best-picker), repainted only for itself.

Textual repaints the screen on top for every change on the screen underneath (a label drawn on its tile, the status
line, its footer's keys), and once a screen has been pushed, in full at every later change underneath. Every
repaint that crosses an image makes a Sixel terminal get the image again: a label given in the zoom sent the zoom
image once or twice, and under load the best-picker got its row of thumbnails three times. These screens draw their
images in an opaque frame, so they skip those repaints: what shows of the screen underneath (dimmed, around the
frame) is brought up to date at the screen's own next repaint there, and in full when it closes.
"""

from __future__ import annotations

from typing import TypeVar

from textual.geometry import Region
from textual.screen import ModalScreen

Result = TypeVar("Result")


class ImageModalScreen(ModalScreen[Result]):
    def refresh(self, *regions: Region, repaint: bool = True, layout: bool = False, recompose: bool = False):
        # Only the screen underneath names regions (its changes, passed up); the screen's own widgets repaint through
        # their own refresh, and its own full repaints (opening, a resize, a screen closed over it) name none.
        # Passed on, the regions would also make Textual drop this screen's own pending widget repaints for a repaint
        # of those regions alone.
        if regions and not layout and not recompose:
            return self
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)
