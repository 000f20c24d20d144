"""Where the app draws each image, by cell, written as JSON to the file that HERO_LAYOUT_FILE names.

The real-terminal tests read it to find each thumbnail in a screenshot whatever the
layout is (tile sizes and paging follow the terminal's size). Off unless the
variable is set; written atomically, a few times a second.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from textual.app import App
from textual.errors import NoWidget
from textual.widget import Widget

LAYOUT_FILE_VARIABLE = "HERO_LAYOUT_FILE"
INTERVAL = 0.25  # seconds


def layout_file() -> Path | None:
    value = os.environ.get(LAYOUT_FILE_VARIABLE)
    return Path(value) if value else None


def describe(app: App) -> dict:
    """The top screen's name, why the images are not sharper (the status line's note), and for each image widget
    on the top screen its cell region (and the part of it on screen), its file and its tile's marks."""
    from hero_tui.widgets.thumbnail import Thumbnail

    screen = app.screen
    images = []
    for widget in screen.query("*"):
        path = getattr(widget, "image", None)
        if not _is_image_widget(widget) or any(_is_image_widget(a) for a in widget.ancestors):  # Sixel's has an inner one
            continue
        if not path or not widget.display or not widget.region.area:
            continue
        region = widget.content_region
        tile = next((ancestor for ancestor in widget.ancestors if isinstance(ancestor, Thumbnail)), None)
        entry = {"id": widget.id, "widget": f"{type(widget).__module__}.{type(widget).__qualname__}", "path": str(path), "region": [region.x, region.y, region.width, region.height],
                 "visible": _visible(widget), "shown": _shown(screen, widget)}
        if tile is not None:
            entry.update(number=tile.item.number, image_id=tile.item.id, classes=sorted(tile.classes),
                         title=str(getattr(tile, "title", None) or tile.border_title or ""),
                         badge=str(getattr(tile, "badge", None) or tile.border_subtitle or ""),
                         tile=[tile.region.x, tile.region.y, tile.region.width, tile.region.height])
        images.append(entry)
    note = next((s.graphics_note for s in app.screen_stack if hasattr(s, "graphics_note")), "")
    return {"screen": type(screen).__name__, "size": [app.size.width, app.size.height],
            "stack": [type(s).__name__ for s in app.screen_stack], "graphics_note": note, "images": images}


def write(app: App, path: Path) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(describe(app)))
    os.replace(temporary, path)


def _is_image_widget(widget: Widget) -> bool:
    """A textual-image widget, or hero's own subclass of one (hero_tui.widgets.sixel_image)."""
    return any(cls.__module__.startswith("textual_image") for cls in type(widget).__mro__)


def _shown(screen, widget: Widget) -> list[int] | None:
    """The part of the widget on screen, by cell: less than its region where a container cuts it; None off screen."""
    try:
        shown = screen.find_widget(widget).visible_region
    except NoWidget:
        return None
    return [shown.x, shown.y, shown.width, shown.height]


def _visible(widget: Widget) -> bool:
    """Whole inside every scrolling ancestor's window (a thumbnail scrolled out of view is not drawn)."""
    region = widget.region
    for ancestor in widget.ancestors:
        if isinstance(ancestor, Widget) and ancestor.is_scrollable and not ancestor.region.contains_region(region):
            return False
    return True
