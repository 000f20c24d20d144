"""The round's thumbnails in a grid whose column count follows the width, with a keyboard cursor."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from textual.containers import VerticalScroll
from textual.events import Resize
from textual.widget import Widget

from hero_tui.batch import ImageItem, Label, RoundBatch
from hero_tui.widgets.thumbnail import Thumbnail

THUMBNAIL_WIDTH = 22  # cells, border included; keep in step with app.tcss
THUMBNAIL_GUTTER = 1

LabelLookup = Callable[[int], tuple[Label, bool]]


class ImageGrid(VerticalScroll, can_focus=False):
    """Thumbnails of one batch; the cursor is an index into the batch."""

    def __init__(self, image_class: type[Widget], **kw):
        super().__init__(**kw)
        self.image_class = image_class
        self.batch: RoundBatch | None = None
        self.cursor = 0
        self._thumbnails: dict[int, Thumbnail] = {}

    @property
    def columns(self) -> int:
        width = self.scrollable_content_region.width or self.size.width
        return max(1, (width + THUMBNAIL_GUTTER) // (THUMBNAIL_WIDTH + THUMBNAIL_GUTTER))

    @property
    def cursor_item(self) -> ImageItem | None:
        if self.batch is None or not self.batch.images:
            return None
        return self.batch.images[self.cursor]

    async def show_batch(self, batch: RoundBatch, lookup: LabelLookup) -> None:
        """Replace the thumbnails by this batch's; the cursor stays where it was within the same round."""
        same_round = self.batch is not None and self.batch.round == batch.round
        self.batch = batch
        if same_round:
            self.cursor = max(min(self.cursor, len(batch.images) - 1), 0)
        else:  # a resumed round continues at its first unlabeled image
            unlabeled = [i for i, item in enumerate(batch.images) if lookup(item.id) == (None, False)]
            self.cursor = unlabeled[0] if unlabeled else 0
        await self.remove_children()
        self._thumbnails = {item.id: Thumbnail(item, self.image_class) for item in batch.images}
        await self.mount_all(self._thumbnails.values())
        self.refresh_labels(self._thumbnails, lookup)
        self._set_columns()
        self._move_to(self.cursor)

    def refresh_labels(self, image_ids: Iterable[int], lookup: LabelLookup) -> None:
        for image_id in image_ids:
            thumbnail = self._thumbnails.get(image_id)
            if thumbnail is not None:
                thumbnail.show_state(*lookup(image_id))

    def thumbnail(self, image_id: int) -> Thumbnail | None:
        return self._thumbnails.get(image_id)

    def move(self, dx: int, dy: int) -> None:
        if self.batch is None or not self.batch.images:
            return
        target = self.cursor + dx + dy * self.columns
        self._move_to(min(max(target, 0), len(self.batch.images) - 1))

    def _move_to(self, index: int) -> None:
        if self.batch is None or not self.batch.images:
            return
        old = self._thumbnails.get(self.batch.images[self.cursor].id)
        if old is not None:
            old.show_cursor(False)
        self.cursor = index
        new = self._thumbnails[self.batch.images[index].id]
        new.show_cursor(True)
        self.scroll_to_widget(new, animate=False)

    def on_resize(self, event: Resize) -> None:
        self._set_columns()
        if self.cursor_item is not None:
            self.call_after_refresh(self._scroll_to_cursor)

    def _set_columns(self) -> None:
        columns = self.columns
        if self.styles.grid_size_columns != columns:
            self.styles.grid_size_columns = columns

    def _scroll_to_cursor(self) -> None:
        item = self.cursor_item
        if item is not None and item.id in self._thumbnails:
            self.scroll_to_widget(self._thumbnails[item.id], animate=False)
