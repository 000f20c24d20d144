"""textual-image's Sixel widget, drawn by SixelLines: a full repaint then rewrites every cell beside an image.

textual-image's Sixel widget composes its drawing child again whenever its image is set, and it is set as the widget is
made: each image was composed twice, the second time at its next turn of the event loop. Under load that turn came
after the image had been moved into place on screen, and the new child's first paint sent the image again. hero never
changes a shown widget's image (a new image is a new widget), so only a mounted widget composes again.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual_image.widget.sixel import Image

from hero_tui.widgets.sixel_lines import SixelLines


class SixelImage(Image, Renderable=Image._Renderable):  # textual-image names the drawing class per subclass
    @Image.image.setter
    def image(self, value) -> None:
        super(Image, type(self)).image.fset(self, value)  # textual-image's base widget: the image and its size
        if self.is_mounted:
            self.refresh(recompose=True)

    def compose(self) -> ComposeResult:
        yield SixelLines(self.image, self._sixel_options)
