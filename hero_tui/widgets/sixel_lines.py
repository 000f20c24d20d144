"""textual-image's inner Sixel widget, with its last line left where Textual expects it.

textual-image 0.12 (the only release for Python 3.11) ends an image's last line by moving the
cursor to the row below the image. When Textual repaints the whole screen (closing zoom, the help
screen, metrics or the best-picker) it writes each line in one run without moving the cursor
between widgets, so the rest of that line (the gutter beside a thumbnail, the status line beside
the best image) went one row down, and the cells it should have rewritten kept the closed
screen's Sixel pixels or text. Its last line also wrote no cells under the image, so pixels the
image does not cover (its aspect differs from its cells') kept what was there. 0.14 does both as
done here; there, this class changes nothing.
"""

from __future__ import annotations

from rich.control import Control
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Region
from textual.strip import Strip
from textual_image.widget.sixel import _ImageSixelImpl


class SixelLines(_ImageSixelImpl):
    def render_lines(self, crop: Region) -> list[Strip]:
        lines = super().render_lines(crop)
        if not lines:
            return lines
        visible = self.screen.find_widget(self).visible_region
        segments = list(lines[-1])
        if not segments or segments[-1].text != Control.move_to(visible.right, visible.bottom).segment.text:
            return lines  # a release that already ends on the image's last row
        clear = Segment(" " * crop.width, Style(bgcolor=self.background_colors[1].rich_color))
        back = Segment(Control.move_to(visible.right, visible.bottom - 1).segment.text, Style())
        return [*lines[:-1], Strip([clear, *segments[:-1], back], cell_length=crop.width)]
