"""The round's thumbnails, as large as the terminal allows, a page at a time, with a keyboard cursor.

Tiles grow to fill the grid. A round that does not fit at half the images' pixel size (in half-blocks
a cell shows 1x2 pixels, so a 64 px image needs 32x16 cells) is split into pages rather than shrunk;
images larger than PAGING_PIXELS (SDXL's 1024 px) page as images of that size do.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from PIL import Image as PILImage
from textual.containers import Container
from textual.css.scalar import ScalarOffset
from textual.events import Resize
from textual.message import Message
from textual.widget import Widget

from hero_tui.batch import ImageItem, Label, RoundBatch
from hero_tui.terminal_facts import cell_size
from hero_tui.widgets.thumbnail import Thumbnail

GUTTER = 2  # cells between tiles in a row; rows need none, the title line parts them
TEXT_LINES = 2  # a tile's title and badge lines
MIN_SCALE = 0.5  # a tile shows its image at no less than half its pixel size, where the terminal allows
# Larger images are paged as if this size: half of SDXL's 1024 px would give a third of a terminal to each tile (a
# 64-image round in 22 pages); the zoom shows them at the terminal's full resolution.
PAGING_PIXELS = 512
TEXT_CELL_PIXELS = (1, 2)  # half-blocks and unicode: pixels one cell shows
OFF_SCREEN = 10_000  # rows: where a new image widget is laid out before it is shown
HOLD_LIMIT = 1.0  # seconds the tiles stay off screen for a resize that never reaches the grid


def show_once_laid_out(widget: Widget, repaint: bool = False) -> None:
    """Move a widget laid out at OFF_SCREEN into place once it has its size.

    On screen, Textual paints a new widget when it is laid out and again when it learns its size, and
    textual-image's Sixel widget sends its image on every paint; off screen neither paint reaches the terminal.

    ``repaint``: also mark the widget itself for repainting as it moves in. The layout pass alone repaints only
    the cells it sees change, and it can miss a move: with a key pressed as the round arrived, the status line's
    best image was rendered in an update that left its cells out, and never reached the terminal (about 3 in 100
    runs of such a test). There the two marks make one paint; where a new screen's own layout pass moves its
    images first, they would make two (see _move_into_place), so the screens' images do without it.
    """
    if not widget.is_attached or not widget.display:  # a hidden tile is not laid out: its page's turn calls again
        return
    if widget.size.area:  # sized: the repaint its sizing asked for happens off screen, then it moves in
        widget.call_after_refresh(_move_into_place, widget, repaint)
    else:
        widget.call_after_refresh(show_once_laid_out, widget, repaint)


def show_together_once_laid_out(widgets: list[Widget]) -> None:
    """show_once_laid_out for widgets that appear in one go (a screen's row of thumbnails): moved in together, in
    one update, once every one of them is sized. Moved in one at a time, as each was sized, every move's layout
    pass painted the ones already in again: under load a Sixel terminal got a row's images two or three times."""
    shown = [widget for widget in widgets if widget.is_attached and widget.display]
    if not shown:
        return
    if all(widget.size.area for widget in shown):
        shown[0].call_after_refresh(_move_all_into_place, shown)
    else:
        shown[0].call_after_refresh(show_together_once_laid_out, shown)


def _move_all_into_place(widgets: list[Widget]) -> None:
    with widgets[0].app.batch_update():
        for widget in widgets:
            _move_into_place(widget, False)


def _move_into_place(widget: Widget, repaint: bool) -> None:
    # Not styles.offset: it also asks a repaint (Textual's Styles.refresh drops repaint=False), which paints the
    # widget a second time when a layout pass already due (a new screen's footer keys) has moved it in first.
    if widget.styles.set_rule("offset", ScalarOffset.from_offset((0, 0))):
        widget.refresh(layout=True, repaint=repaint)


LabelLookup = Callable[[int], tuple[Label, bool]]


@dataclass(frozen=True)
class GridLayout:
    columns: int
    rows: int
    image_width: int  # cells
    image_height: int

    @property
    def page_size(self) -> int:
        return self.columns * self.rows

    @property
    def tile_height(self) -> int:
        return self.image_height + TEXT_LINES


def plan_grid(width: int, height: int, count: int, image_pixels: tuple[int, int],
              cell_pixels: tuple[int, int], max_pages: int | None = None) -> GridLayout:
    """Columns, rows per page and image size (cells) for ``count`` images in ``width`` x ``height`` cells.

    All on one page when they fit at MIN_SCALE or more (the layout with the largest images);
    otherwise as many per page as fit at MIN_SCALE, grown to fill the page. Images larger than
    PAGING_PIXELS need only MIN_SCALE of that size. With ``max_pages``, never more pages than that: the
    images shrink below that scale instead (while the training panel takes the grid's room).
    """
    image_w, image_h = image_pixels
    cell_w, cell_h = cell_pixels
    min_scale = MIN_SCALE * min(1.0, PAGING_PIXELS / max(image_w, image_h, 1))

    def scale(columns: int, rows: int) -> float:
        tile_w = (width - GUTTER * (columns - 1)) // columns
        tile_h = height // rows - TEXT_LINES
        return max(0.0, min(tile_w * cell_w / image_w, tile_h * cell_h / image_h))

    def layout(columns: int, rows: int) -> GridLayout:
        s = scale(columns, rows)
        return GridLayout(columns, rows, max(1, int(image_w * s / cell_w)), max(1, int(image_h * s / cell_h)))

    count = max(count, 1)
    one_page = max(range(1, count + 1), key=lambda c: scale(c, math.ceil(count / c)))
    if scale(one_page, math.ceil(count / one_page)) >= min_scale:
        return layout(one_page, math.ceil(count / one_page))
    columns = max((c for c in range(1, count + 1) if scale(c, 1) >= min_scale), default=1)
    rows = max((r for r in range(1, count + 1) if scale(1, r) >= min_scale), default=1)
    if max_pages is not None and math.ceil(count / (columns * rows)) > max_pages:
        per_page = math.ceil(count / max_pages)
        columns = max(range(1, per_page + 1), key=lambda c: scale(c, math.ceil(per_page / c)))
        rows = math.ceil(per_page / columns)
    return layout(columns, rows)


class ImageGrid(Container, can_focus=False):
    """Thumbnails of one batch; the cursor is an index into the batch, and its page is the page shown."""

    class PageChanged(Message):
        """The page shown, or the number of pages, changed."""

    def __init__(self, image_class: type[Widget], **kw):
        super().__init__(**kw)
        self.image_class = image_class
        self.batch: RoundBatch | None = None
        self.cursor = 0
        self.layout_plan: GridLayout | None = None
        self._thumbnails: dict[int, Thumbnail] = {}  # image id -> its tile
        self._tiles: list[Thumbnail] = []  # by place in the round: the tiles of images still being drawn too
        self._image_pixels = (64, 64)
        self._shown_page = -1
        self._held = False  # the shown page's tiles are off screen until the resize under way has laid them out
        self._page_limit: int | None = None  # keep_pages: at most this many pages, whatever room the grid has
        # One build of the tiles at a time: a build awaits the mounting and removing of tiles, and another one started
        # meanwhile (a round shown again as its last images arrive) would remove tiles the first is still drawing.
        self._building = asyncio.Lock()

    @property
    def columns(self) -> int:
        return self.layout_plan.columns if self.layout_plan else 1

    @property
    def page(self) -> int:
        item = self.cursor_item
        return item.idx // self.layout_plan.page_size if self.layout_plan and item is not None else 0

    @property
    def pages(self) -> int:
        """Pages with an image on them (a page whose images are all still being drawn has nothing to show yet)."""
        if self.layout_plan is None or self.batch is None or not self.batch.images:
            return 1
        return max(1, math.ceil((self.batch.images[-1].idx + 1) / self.layout_plan.page_size))

    def is_on_shown_page(self, image_id: int) -> bool:
        """Whether the image's tile is on the page being displayed."""
        if self.batch is None or self.layout_plan is None:
            return False
        item = next((item for item in self.batch.images if item.id == image_id), None)
        return item is not None and item.idx // self.layout_plan.page_size == self.page

    @property
    def cursor_item(self) -> ImageItem | None:
        if self.batch is None or not self.batch.images:
            return None
        return self.batch.images[self.cursor]

    async def show_batch(self, batch: RoundBatch, lookup: LabelLookup, start_at: int | None = None) -> None:
        """Replace the thumbnails by this batch's; the cursor stays where it was within the same round.

        ``start_at``: the image to open a round at (where the person left it when they quit)."""
        async with self._building:
            await self._build(batch, lookup, start_at)

    async def _build(self, batch: RoundBatch, lookup: LabelLookup, start_at: int | None = None) -> None:
        ids = [item.id for item in batch.images]
        if self.batch is not None and self.batch.round == batch.round:
            cursor = max(min(self.cursor, len(batch.images) - 1), 0)
        elif start_at in ids:
            cursor = ids.index(start_at)
        else:  # a resumed round continues at its first unlabeled image
            unlabeled = [i for i, item in enumerate(batch.images) if lookup(item.id) == (None, False)]
            cursor = unlabeled[0] if unlabeled else 0
        if batch.images:
            with PILImage.open(batch.images[0].path) as first:  # reads the header only
                self._image_pixels = first.size
        by_place = {item.idx: item for item in batch.images}
        tiles = [Thumbnail(by_place.get(place), self.image_class, number=place + 1) for place in range(batch.total)]
        # Laid out off screen, moved into place page by page (show_once_laid_out): mounting also repaints the grid.
        for tile in tiles:
            tile.styles.offset = (0, OFF_SCREEN)
        await self.remove_children()
        self.batch, self._tiles, self.cursor = batch, tiles, cursor  # together: a resize may come between awaits
        self._thumbnails = {tile.item.id: tile for tile in tiles if tile.item is not None}
        self._plan()
        self._shown_page = -1
        self._show_page()
        await self.mount_all(self._tiles)
        self.refresh_labels(self._thumbnails, lookup)
        if batch.images:
            self._thumbnails[batch.images[self.cursor].id].show_cursor(True)
        show_together_once_laid_out(tiles)

    async def add_images(self, batch: RoundBatch, lookup: LabelLookup) -> None:
        """More images of the round shown, as they are drawn: each goes into the tile that waited for it (the layout
        was planned for the whole round); the other tiles, the cursor and the page stay as they are, and are not
        drawn again (a Sixel terminal would get their images again)."""
        async with self._building:
            await self._add(batch, lookup)

    async def _add(self, batch: RoundBatch, lookup: LabelLookup) -> None:
        if self.batch is None or batch.round != self.batch.round or batch.total != len(self._tiles):
            await self._build(batch, lookup)
            return
        cursor_id = self.cursor_item.id if self.cursor_item is not None else None
        pages_before = self.pages
        new = [item for item in batch.images if item.id not in self._thumbnails]
        self.batch = batch
        if cursor_id is not None:
            self.cursor = next(i for i, item in enumerate(batch.images) if item.id == cursor_id)
        arriving: list[Widget] = []
        for item in new:
            tile = self._tiles[item.idx]
            self._thumbnails[item.id] = tile
            # On the page shown, the image waits off screen until laid out; on another page its tile is moved in
            # with the page (_show_page), and a widget in a hidden tile is never laid out.
            image = await tile.show_image(item, (0, OFF_SCREEN) if tile.display else (0, 0))
            tile.show_state(*lookup(item.id))
            if tile.display:
                arriving.append(image)
        show_together_once_laid_out(arriving)
        if cursor_id is None and self.cursor_item is not None:
            self._thumbnails[self.cursor_item.id].show_cursor(True)
        if self.pages != pages_before:
            self.post_message(self.PageChanged())

    def refresh_labels(self, image_ids: Iterable[int], lookup: LabelLookup) -> None:
        for image_id in image_ids:
            thumbnail = self._thumbnails.get(image_id)
            if thumbnail is not None:
                thumbnail.show_state(*lookup(image_id))

    def thumbnail(self, image_id: int) -> Thumbnail | None:
        return self._thumbnails.get(image_id)

    def move(self, dx: int, dy: int) -> None:
        """Left and right go through the round (across pages); up and down go a row, and stop at its ends."""
        if self.batch is None or not self.batch.images:
            return
        last = len(self.batch.images) - 1
        if dy:
            target = self.cursor + dy * self.columns
            if 0 <= target <= last:
                self._move_to(target)
        else:
            self._move_to(min(max(self.cursor + dx, 0), last))

    def turn_page(self, step: int) -> None:
        """The next or previous page, at the same place on the page (or the last image)."""
        if self.batch is None or not self.batch.images or self.layout_plan is None:
            return
        page = min(max(self.page + step, 0), self.pages - 1)
        slot = self.cursor % self.layout_plan.page_size
        self._move_to(min(page * self.layout_plan.page_size + slot, len(self.batch.images) - 1))

    def _move_to(self, index: int) -> None:
        if self.batch is None or not self.batch.images or index == self.cursor:
            return
        self._thumbnails[self.batch.images[self.cursor].id].show_cursor(False)
        self.cursor = index
        self._thumbnails[self.batch.images[index].id].show_cursor(True)
        self._show_page()

    def keep_pages(self, keep: bool) -> None:
        """While ``keep``, the grid plans no more pages than it has now: less room makes the tiles smaller (while the
        training panel is open) instead of spreading the round over more pages. Takes effect at the next resize."""
        if not keep:
            self._page_limit = None
        elif self.layout_plan is not None and self.batch is not None:
            self._page_limit = math.ceil(self.batch.total / self.layout_plan.page_size)

    def hold_for_resize(self) -> None:
        """Called before the screen repaints for a new terminal size: the shown page's tiles move off screen.

        A resize repaints the screen several times (at the old tile size, then as the grid is planned anew and its
        tiles are laid out), and a Sixel terminal gets every image on screen at each; off screen, none. The grid's
        own resize brings them back once laid out at the new size (show_once_laid_out): each image is sent once.
        """
        if self._held or self.batch is None or self.layout_plan is None:
            return
        self._held = True
        for thumbnail in self._shown_thumbnails():
            thumbnail.styles.offset = (0, OFF_SCREEN)
        self.set_timer(HOLD_LIMIT, self._release)  # a resize that leaves the grid's size as it was sends it none

    def _release(self) -> None:
        if self._held:
            self._held = False
            show_together_once_laid_out(self._shown_thumbnails())

    def _shown_thumbnails(self) -> list[Thumbnail]:
        return [tile for tile in self._tiles if tile.display and tile.is_mounted]

    def on_resize(self, event: Resize) -> None:
        if self._plan():
            self._shown_page = -1
            self._show_page()
        self._release()

    def _plan(self) -> bool:
        """Fit the tiles to the grid's size; True when the layout changed."""
        width, height = self.content_size
        if self.batch is None or not width or not height:
            return False
        # Planned for the whole round, also while its images still arrive: a tile keeps its size as the others come.
        plan = plan_grid(width, height, self.batch.total, self._image_pixels, self._cell_pixels(), self._page_limit)
        if plan == self.layout_plan:
            return False
        self.layout_plan = plan
        styles = self.styles
        styles.grid_size_columns = plan.columns
        styles.grid_size_rows = plan.rows
        styles.grid_columns = str(plan.image_width)
        styles.grid_rows = str(plan.tile_height)
        return True

    def _cell_pixels(self) -> tuple[int, int]:
        renderable = getattr(self.image_class, "_Renderable", None)  # textual-image's widget classes name theirs
        if renderable is not None and renderable.__module__.rsplit(".", 1)[-1] in ("halfcell", "unicode"):
            return TEXT_CELL_PIXELS
        return cell_size() or (10, 20)

    def _show_page(self) -> None:
        """Only the cursor's page is displayed; other pages' tiles are not drawn at all."""
        if self.batch is None or self.layout_plan is None or self.page == self._shown_page:
            return
        self._shown_page = self.page
        size = self.layout_plan.page_size
        for place, tile in enumerate(self._tiles):
            tile.display = place // size == self._shown_page
        # a page shown for the first time is still off screen
        show_together_once_laid_out([tile for tile in self._tiles if tile.display and tile.is_mounted])
        self.post_message(self.PageChanged())
