"""textual-image's Sixel widget, drawn by SixelLines: a full repaint then rewrites every cell beside an image."""

from __future__ import annotations

from textual.app import ComposeResult
from textual_image.widget.sixel import Image

from hero_tui.widgets.sixel_lines import SixelLines


class SixelImage(Image, Renderable=Image._Renderable):  # textual-image names the drawing class per subclass
    def compose(self) -> ComposeResult:
        yield SixelLines(self.image, self._sixel_options)
