"""textual-image's inner Sixel widget, with its last line left where Textual expects it, and Konsole's blanked
column written again.

textual-image 0.12 (the only release for Python 3.11) ends an image's last line by moving the
cursor to the row below the image. When Textual repaints the whole screen (closing zoom, the help
screen, metrics or the best-picker) it writes each line in one run without moving the cursor
between widgets, so the rest of that line (the gutter beside a thumbnail, the status line beside
the best image) went one row down, and the cells it should have rewritten kept the closed
screen's Sixel pixels or text. Its last line also wrote no cells under the image, so pixels the
image does not cover (its aspect differs from its cells') kept what was there. 0.14 does both as
done here; there, this class changes nothing for that.

Konsole (22.12, measured) blanks the cells under a Sixel image to its own default background,
and one column more, right of the image; and a blank of its default background shows whatever
image was drawn there before (a cell with a colour of its own covers it). Textual wrote that
column before the image arrived, so it stayed blank: a grey stripe on each thumbnail's right edge,
through which a closed zoom image showed. In Konsole the last line also writes that column again,
from the widget that owns it, after the image.
"""

from __future__ import annotations

import re

from rich.control import Control
from rich.segment import ControlType, Segment
from rich.style import Style
from textual.errors import NoWidget
from textual.geometry import Region
from textual.strip import Strip
from textual_image.widget.sixel import _ImageSixelImpl

from hero_tui.terminal_facts import cell_size, sixel_blanks_next_column

_RASTER = re.compile(r'"\d+;\d+;(\d+);(\d+)')  # a Sixel image's raster attributes: width and height in pixels
_ZERO_WIDTH = ((ControlType.CURSOR_FORWARD, 0),)  # written as it is, and takes no cell in the strip's length


class SixelLines(_ImageSixelImpl):
    def render_lines(self, crop: Region) -> list[Strip]:
        lines = super().render_lines(crop)
        if not lines:
            return lines
        visible = self.screen.find_widget(self).visible_region
        segments = list(lines[-1])
        clear = Segment(" " * crop.width, Style(bgcolor=self.background_colors[1].rich_color))
        back = Segment(Control.move_to(visible.right, visible.bottom - 1).segment.text, Style())
        if segments and segments[-1].text == Control.move_to(visible.right, visible.bottom).segment.text:
            segments = [clear, *segments[:-1]]  # 0.12: clear the row first, end on the image's last row
        elif not sixel_blanks_next_column():
            return lines  # a release that already ends on the image's last row
        elif segments and segments[-1].text == back.text:
            segments = segments[:-1]
        if sixel_blanks_next_column():
            segments += self._blanked_column(visible, segments)
        return [*lines[:-1], Strip([*segments, back], cell_length=crop.width)]

    def _blanked_column(self, visible: Region, segments: list[Segment]) -> list[Segment]:
        """The cells of the column right of the image, as the widget that owns each draws it, each after a cursor move."""
        sixel = next((segment.text for segment in segments if segment.text.startswith("\x1bP")), "")
        raster = _RASTER.search(sixel[:64])
        cell = cell_size()
        if raster is None or cell is None:
            return []
        columns = -(-int(raster.group(1)) // cell[0])
        rows = -(-int(raster.group(2)) // cell[1])
        x = visible.x + columns
        if x >= self.screen.size.width:
            return []
        own = Style(bgcolor=self.background_colors[1].rich_color)
        repaired: list[Segment] = []
        for y in range(visible.y, min(visible.y + rows, self.screen.size.height)):
            if x < visible.right:  # inside this widget: its own background
                cells = [Segment(" ", own)]
            else:
                try:
                    widget, region = self.screen.get_widget_at(x, y)
                except NoWidget:
                    continue
                if _draws_images(widget):  # an image's own cells: a blank would cover its pixels
                    continue
                cells = list(widget.render_lines(Region(x - region.x, y - region.y, 1, 1))[0])
            repaired.append(Segment(Control.move_to(x, y).segment.text, Style()))
            repaired += [Segment(segment.text, segment.style, _ZERO_WIDTH) for segment in cells if segment.text]
        return repaired


def _draws_images(widget) -> bool:
    return any(cls.__module__.startswith("textual_image") for cls in type(widget).__mro__)
