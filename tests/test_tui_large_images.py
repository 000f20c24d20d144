"""1024 px images (SDXL's) in a real (pseudo-)terminal: thumbnails are scaled to their tiles before they are encoded,
and such a round pages as 512 px images do; the zoom sends the image at the size the terminal shows it."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from pty_terminal import CELL, AppTerminal, image_sequences
from tui_support import fake_engine, make_session

from hero_tui.widgets.image_grid import plan_grid

COLUMNS, ROWS = 160, 48  # AppTerminal's


def pixel_size(method: str, image: bytes) -> tuple[int, int]:
    """The pixel size an image sequence carries: Sixel's raster attributes, or the size in the header of the PNG a
    Kitty transmission carries (f=100)."""
    if method == "sixel":
        match = re.search(rb'"1;1;(\d+);(\d+)', image)
        assert match, image[:80]
        return int(match[1]), int(match[2])
    header = base64.b64decode(image.split(b";", 1)[1][:32])  # the PNG signature and its IHDR chunk
    assert header[12:16] == b"IHDR", image[:80]
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


@pytest.mark.parametrize("method", ["sixel", "kitty"])
def test_1024_px_thumbnails_are_scaled_to_their_tiles_before_they_are_sent(tmp_path: Path, method: str):
    """Guards the thumbnails of SDXL-sized images: each is sent at its tile's size, a quarter of the image's side or
    less (sent whole, each is 1024x1024: megabytes in Kitty's PNG); the first page holds as many as 512 px images
    would; the zoom sends the image larger than a thumbnail, at the size it is shown."""
    folder = make_session(tmp_path / "s", batch_size=16)
    app = AppTerminal(folder, method, fake_engine(folder, "--image-size", "1024"), tmp_path)
    try:
        app.wait_for(b"labeling")
        app.settle(1.5)
        grid = image_sequences(app.output)
        zoom = image_sequences(app.after(b"\r", quiet=1.0))
    finally:
        app.close()
    page = plan_grid(COLUMNS, ROWS - 4, 16, (512, 512), CELL).page_size
    assert len(grid) >= min(page, 16) - 2  # the page of tiles (the status line's rows aside)
    sizes = [pixel_size(method, image) for image in grid]
    assert all(w <= 1024 // 3 and h <= 1024 // 3 for w, h in sizes), sizes
    assert len(zoom) == 1
    zoom_w, zoom_h = pixel_size(method, zoom[0])
    assert zoom_w > 2 * max(w for w, _ in sizes) and zoom_h <= ROWS * CELL[1]


def test_1024_px_images_page_as_512_px_images_do():
    """Guards the grid's plan for SDXL-sized images: as many a page as 512 px images get (at half of 1024 px, three)."""
    sdxl = plan_grid(156, 42, 64, (1024, 1024), (10, 20))
    assert sdxl.page_size == plan_grid(156, 42, 64, (512, 512), (10, 20)).page_size >= 9
    assert sdxl.image_width * 10 >= 256
