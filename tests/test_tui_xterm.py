"""The app in real terminals that draw Sixel: xterm -ti vt340, mlterm and Konsole on a virtual X display, read
back as pixels.

Where each image is drawn comes from the app itself (HERO_LAYOUT_FILE), so the test
follows any layout; what is drawn there comes from a screenshot.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tui_support import fake_engine, make_session
from xterm_support import SIXEL_TERMINALS, XtermScreen, missing

pytestmark = pytest.mark.skipif(missing(None) is not None, reason=f"no virtual display: {missing(None)}")
TERMINALS = [pytest.param(name, id=name, marks=pytest.mark.skipif(missing(name) is not None, reason=f"{missing(name)}"))
             for name in SIXEL_TERMINALS]

BATCH = 8
MATCH = 0.9  # correlation of a thumbnail's downscaled pixels with its PNG's

_CHILD = ("import sys; from pathlib import Path; from hero_tui.launch import run_app; "
          "run_app(Path(sys.argv[1]), None, engine_command=sys.argv[2:])")


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(float).ravel(), b.astype(float).ravel()
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / (np.sqrt((a @ a) * (b @ b)) + 1e-9))


def downscaled(picture: Image.Image) -> np.ndarray:
    return np.asarray(picture.convert("RGB").resize((24, 24), Image.Resampling.BOX))


def drawn_image(shot: np.ndarray, region: list[int], cell: tuple[int, int]) -> Image.Image:
    """The pixels of an image widget's cells, cut to where they differ from the background around them."""
    x, y, w, h = region
    left, top, right, bottom = x * cell[0], y * cell[1], (x + w) * cell[0], (y + h) * cell[1]
    ring = np.concatenate([shot[top:bottom, max(left - 1, 0)], shot[top:bottom, min(right, shot.shape[1] - 1)]])
    colours, counts = np.unique(ring, axis=0, return_counts=True)
    background = colours[counts.argmax()].astype(int)  # the app's background beside the image's cells
    area = shot[top:bottom, left:right]
    inked = np.argwhere(np.abs(area.astype(int) - background).max(axis=2) > 24)
    if len(inked) == 0:
        return Image.fromarray(area)
    (top, left), (bottom, right) = inked.min(axis=0), inked.max(axis=0)
    return Image.fromarray(area[top:bottom + 1, left:right + 1])


def chrome(shot: np.ndarray, image: dict, cell: tuple[int, int]) -> np.ndarray:
    """A tile's pixels outside its image: the frame, number and badge; the image's own area blanked."""
    x, y, w, h = image["tile"]
    ix, iy, iw, ih = image["region"]
    part = shot[y * cell[1]:(y + h) * cell[1], x * cell[0]:(x + w) * cell[0]].copy()
    part[(iy - y) * cell[1]:(iy - y + ih) * cell[1], (ix - x) * cell[0]:(ix - x + iw) * cell[0]] = 0
    return part


def new_colour(before: np.ndarray, after: np.ndarray) -> np.ndarray | None:
    """The most common colour (not a grey) among the pixels that changed, or None when none did."""
    changed = np.abs(after.astype(int) - before).max(axis=2) > 24
    if not changed.any():
        return None
    pixels = after[changed].reshape(-1, 3).astype(int)
    coloured = pixels[pixels.max(axis=1) - pixels.min(axis=1) > 40]
    if len(coloured) == 0:
        return pixels[0]
    colours, counts = np.unique(coloured, axis=0, return_counts=True)
    return colours[counts.argmax()].astype(int)


def differing_cells(a: np.ndarray, b: np.ndarray, cell: tuple[int, int]) -> int:
    rows, columns = a.shape[0] // cell[1], a.shape[1] // cell[0]
    diff = np.abs(a.astype(int) - b).max(axis=2) > 24
    diff = diff[:rows * cell[1], :columns * cell[0]].reshape(rows, cell[1], columns, cell[0])
    return int(diff.any(axis=(1, 3)).sum())


def grid_shown(layout: dict) -> bool:
    """The session screen with every thumbnail in place (each is laid out off screen first, then moved in)."""
    tiles = [image for image in layout["images"] if "number" in image and image["visible"]]
    return layout.get("screen") == "SessionScreen" and len(tiles) == BATCH


def _in_place(layout: dict) -> int:
    """How many of the screen's images are on it: a new image is laid out off screen first, then moved in."""
    return sum(1 for image in layout["images"] if 0 <= image["region"][1] < layout["size"][1])


def _labeled_as_pressed(layout: dict) -> bool:
    """1 good, 2 best, 3 bad, the rest unlabeled, and the cursor on one of the rest."""
    marks = _marks(layout)
    rest = [marks.get(number) for number in range(4, BATCH + 1)]
    return (layout.get("screen") == "SessionScreen" and [marks.get(n) for n in (1, 2, 3)] == ["good", "best", "bad"]
            and rest.count("cursor") == 1 and rest.count(None) == BATCH - 4)


def _marks(layout: dict) -> dict[int, str | None]:
    """What the app says each tile shows: its label, or that the cursor is on it."""
    marks = {}
    for image in layout["images"]:
        if "number" not in image:
            continue
        badge, title = image["badge"].lower(), image["title"]
        cursor = "-cursor" in image["classes"] or "▶" in title
        label = "best" if "best" in badge else "bad" if ("bad" in badge or "not good" in badge) else "good" if "good" in badge else None
        marks[image["number"]] = "cursor" if cursor and label is None else label
    return marks


def start_app(screen: XtermScreen, tmp_path: Path, folder: Path, terminal: str) -> None:
    """The app on ``folder`` with the fake engine, in ``terminal``, its user folders under ``tmp_path``."""
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_STATE_HOME": str(tmp_path / "state"),
           "XDG_DATA_HOME": str(tmp_path / "data")}
    screen.start([sys.executable, "-c", _CHILD, str(folder), *fake_engine(folder)], env, terminal)


@pytest.mark.parametrize("terminal", TERMINALS)
def test_sixel_thumbnails_labels_zoom_and_help(tmp_path: Path, terminal: str):
    folder = make_session(tmp_path / "session", batch_size=BATCH)
    with XtermScreen(tmp_path) as screen:
        start_app(screen, tmp_path, folder, terminal)
        layout = screen.wait_layout(grid_shown)
        grid = screen.settled_shot()
        cell = screen.cell_size()
        thumbnails = [image for image in layout["images"] if "number" in image and image["visible"]]
        assert thumbnails and {image["widget"] for image in thumbnails} == {"hero_tui.widgets.sixel_image.SixelImage"}, f"auto picks Sixel in {terminal}"
        assert stripes(grid, thumbnails, cell) == [], "a column beside a thumbnail differs from the gutter around it"

        # each visible thumbnail shows its own PNG, and matches it better than any other of the round
        pngs = {image["path"]: downscaled(Image.open(image["path"])) for image in thumbnails}
        for image in thumbnails:
            drawn = drawn_image(grid, image["region"], cell)
            width, height = image["region"][2] * cell[0], image["region"][3] * cell[1]
            assert drawn.width >= 0.9 * width or drawn.height >= 0.9 * height, (  # scaled to fit its cells
                f"thumbnail {image['number']} is drawn {drawn.size} in {width}x{height} px of cells")
            shown = downscaled(drawn)
            scores = {path: correlation(shown, png) for path, png in pngs.items()}
            assert scores[image["path"]] > MATCH, f"thumbnail {image['number']}: correlation {scores[image['path']]:.3f}"
            best = max(scores, key=scores.get)
            assert np.array_equal(pngs[best], pngs[image["path"]]), f"thumbnail {image['number']} looks like {best}"

        # labels: 1 good, 2 best, 3 bad; the cursor ends a row down, away from them
        screen.keys("space", "Right", "b", "Right", "space", "space", "Down")
        labeled = screen.wait_layout(_labeled_as_pressed)
        marked = screen.settled_shot()
        tiles = {image["number"]: image for image in labeled["images"] if "number" in image}
        cursor = next(number for number, mark in _marks(labeled).items() if mark == "cursor")
        hues = {number: new_colour(chrome(grid, tiles[number], cell), chrome(marked, tiles[number], cell)) for number in (1, 2, 3)}
        red, green, blue = (hues[1][i] for i in range(3))
        assert green > red and green > blue, f"good tile's new marks are not green: {hues[1]}"
        red, green, blue = (hues[2][i] for i in range(3))
        assert red > blue + 40 and green > blue + 40, f"best tile's new marks are not yellow or orange: {hues[2]}"
        red, green, blue = (hues[3][i] for i in range(3))
        assert red > green and red > blue, f"bad tile's new marks are not red: {hues[3]}"
        for number in set(range(4, BATCH + 1)) - {cursor}:  # neither labeled nor under the cursor: unchanged
            assert new_colour(chrome(grid, tiles[number], cell), chrome(marked, tiles[number], cell)) is None, f"tile {number} changed"
        for number, image in tiles.items():  # the images themselves are untouched by the marks
            if image["visible"]:
                assert correlation(downscaled(drawn_image(marked, image["region"], cell)), pngs[image["path"]]) > MATCH

        # zoom shows the cursor's image large; closing it, the help screen or metrics leaves the grid exactly as it was
        # (a full repaint rewrites every cell beside an image: see hero_tui.widgets.sixel_lines)
        screen.keys("Return")
        zoomed = screen.wait_layout(lambda lay: lay.get("screen") == "ZoomScreen" and _in_place(lay) >= 1)
        zoom_shot = screen.settled_shot()
        zoom = zoomed["images"][0]
        assert zoom["path"] == tiles[cursor]["path"]
        assert zoom["shown"] == zoom["region"], "the zoom image is cut: the screen has no room for all of it"
        drawn = drawn_image(zoom_shot, zoom["region"], cell)
        assert correlation(downscaled(drawn), pngs[zoom["path"]]) > MATCH
        expected = fitted(Image.open(zoom["path"]).size, zoom["region"], cell)  # within a cell: textual-image rounds to cells
        assert all(abs(d - e) < c for d, e, c in zip(drawn.size, expected, cell)), f"zoom image drawn {drawn.size}, not {expected}: cut?"
        left = {"zoom": close_and_compare(screen, marked, cell)}
        for name, key in (("help", "question"), ("metrics", "m")):
            screen.keys(key)
            screen.wait_layout(lambda lay, name=name: lay.get("screen") == f"{name.capitalize()}Screen")
            screen.settled_shot()
            left[name] = close_and_compare(screen, marked, cell)
    assert left == {"zoom": 0, "help": 0, "metrics": 0}, f"cells that differ from the grid after closing each screen: {left}"


def fitted(size: tuple[int, int], region: list[int], cell: tuple[int, int]) -> tuple[int, int]:
    """The pixel size of an image of ``size`` scaled to fit a region of cells whole: one side fills it."""
    width, height = region[2] * cell[0], region[3] * cell[1]
    scale = min(width / size[0], height / size[1])
    return round(size[0] * scale), round(size[1] * scale)


def stripes(shot: np.ndarray, thumbnails: list[dict], cell: tuple[int, int]) -> list[tuple[int, int]]:
    """(number, rows) of each thumbnail whose column of cells right of its image (the gutter between tiles) differs,
    on some of the image's rows, from the same column a row below the image (Konsole blanked that column to its own
    background: a grey stripe)."""
    found = []
    for image in thumbnails:
        x, y, w, h = image["region"]
        if (x + w + 1) * cell[0] > shot.shape[1]:
            continue
        column = shot[y * cell[1]:(y + h) * cell[1], (x + w) * cell[0]:(x + w + 1) * cell[0]].astype(int)
        gutter = shot[(y + h) * cell[1] - 1 + cell[1], (x + w) * cell[0]].astype(int)  # the same column, a row below
        differs = np.abs(column - gutter).max(axis=2) > 8  # Konsole's grey is 21 levels off the app's background
        rows = int(differs.reshape(h, cell[1], cell[0]).any(axis=(1, 2)).sum())
        if rows:
            found.append((image["number"], rows))
    return found


def close_and_compare(screen: XtermScreen, before: np.ndarray, cell: tuple[int, int], wait=None) -> int:
    """Escape, then the number of cells that differ from ``before`` once the session screen is back and settled."""
    screen.keys("Escape")
    screen.wait_layout(wait or (lambda lay: lay.get("screen") == "SessionScreen"))
    return differing_cells(before, screen.settled_shot(), cell)


@pytest.mark.parametrize("terminal", TERMINALS)
def test_sixel_best_picker_closes_cleanly(tmp_path: Path, terminal: str):
    """Round 1: the status line shows the previous best as a small image, and the picker's own images cover the grid."""
    folder = make_session(tmp_path / "session", batch_size=BATCH)
    with XtermScreen(tmp_path) as screen:
        start_app(screen, tmp_path, folder, terminal)
        screen.wait_layout(grid_shown)
        screen.keys("space", "Right", "b", "s")  # round 0: 1 good, 2 best; the submit summary
        screen.wait_layout(lambda lay: lay.get("screen") == "SubmitScreen")
        screen.keys("Return")

        def round_one(lay: dict) -> bool:  # its images in place: the app takes labels from then on
            return grid_shown(lay) and all("/rounds/0001/" in image["path"] for image in lay["images"] if "number" in image)

        def round_one_labeled(lay: dict) -> bool:
            return round_one(lay) and _marks(lay).get(1) == "good"

        screen.wait_layout(round_one)
        screen.keys("space")
        screen.wait_layout(round_one_labeled)
        before = screen.settled_shot()
        cell = screen.cell_size()
        screen.keys("s")
        picker = screen.wait_layout(lambda lay: lay.get("screen") == "BestPickerScreen" and _in_place(lay) >= 2)
        assert len(picker["images"]) == 2  # the previous best and the one good image
        screen.settled_shot()
        left = close_and_compare(screen, before, cell, round_one_labeled)
    assert left == 0, f"{left} cells differ from the grid after closing the best-picker"


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_inside_tmux_with_passthrough_the_outer_xterm_answers(tmp_path: Path):
    """tmux answers device attributes itself; with allow-passthrough on, hero still learns the terminal around it."""
    config = tmp_path / "tmux.conf"
    config.write_text("set -g allow-passthrough on\n")
    result = tmp_path / "report.json"
    code = ("import json, sys, dataclasses; from hero_tui.graphics import choose; from hero_tui.terminal_probe import probe; "
            "report = probe(); choice = choose(report); "
            "open(sys.argv[1], 'w').write(json.dumps({**dataclasses.asdict(report), 'method': choice.method, 'reason': choice.reason}))")
    with XtermScreen(tmp_path) as screen:
        screen.start(["tmux", "-L", f"hero-xterm-{os.getpid()}", "-f", str(config), "new-session",
                      shlex.join([sys.executable, "-c", code, str(result)]) + "; sleep 5"], {})
        deadline = time.monotonic() + 30
        while not result.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        subprocess.run(["tmux", "-L", f"hero-xterm-{os.getpid()}", "kill-server"], capture_output=True)
    found = json.loads(result.read_text())
    assert found["in_tmux"] and found["passthrough"] and found["tmux_version"].startswith("tmux")
    assert found["version"].startswith("XTerm("), "the outer terminal's reply came through tmux"
    if not found["sixel"]:  # tmux 3.3 (Debian 12) draws no Sixel; the reason names tmux
        assert found["method"] == "halfblock" and "passes neither Sixel nor kitty" in found["reason"]
