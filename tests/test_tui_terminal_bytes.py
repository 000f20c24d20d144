"""What the app writes to a real (pseudo-)terminal: no image bytes for a cursor move or a label, and marks
that read without colour. The app runs as in a person's terminal, Sixel or Kitty graphics forced, driven
by key presses written to the terminal; the fake engine gives it a 16-image round of 64 px images. Each test runs
in a 16-colour and a 24-bit terminal (TERM and COLORTERM set, never the caller's)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from pty_terminal import AppTerminal, image_bytes, image_sequences, placeholder_cells
from tui_support import fake_engine, make_session

RIGHT, LEFT, DOWN, UP = b"\x1b[C", b"\x1b[D", b"\x1b[B", b"\x1b[A"
STAGE_SECONDS = 2.0  # the fake engine's, for each learning stage
KEY_BUDGET = 2048  # bytes a cursor or label key may cost (issue 8's target)


TERMINALS = {  # what each test runs under: a 16-colour terminal (xterm's own default, a plain SSH session) and a 24-bit one
    "16-colour": {"TERM": "xterm", "COLORTERM": ""},
    "24-bit": {"TERM": "xterm-256color", "COLORTERM": "truecolor"},
}


@pytest.fixture(params=sorted(TERMINALS))
def colours(request) -> dict[str, str]:
    return TERMINALS[request.param]


def without_id(image: bytes) -> bytes:
    return re.sub(rb"i=\d+,?", b"", image)  # a Kitty image sent again carries a new id


def open_round(tmp_path: Path, method: str, **terminal) -> AppTerminal:
    folder = make_session(tmp_path / "s", batch_size=16)
    app = AppTerminal(folder, method, fake_engine(folder, "--image-size", "64"), tmp_path, **terminal)
    try:
        app.wait_for(b"labeling")
        if method != "halfblock":
            app.wait_for_images(16)  # the round's later chunks too: one page of them
        app.settle(1.0)
    except BaseException:
        app.close()  # a failed start leaves no app running
        raise
    return app


@pytest.mark.parametrize("method", ["sixel", "kitty"])
def test_cursor_moves_and_labels_send_no_image_bytes(tmp_path: Path, method: str, colours: dict[str, str]):
    app = open_round(tmp_path, method, env=colours)
    try:
        assert image_bytes(app.output) > 0  # the grid itself was sent as images
        for key in (RIGHT, DOWN, b" ", RIGHT, b" ", b"u", UP):
            written = app.after(key)
            assert written, f"{key!r} drew nothing"
            assert image_bytes(written) == 0, f"{key!r} re-sent {image_bytes(written)} bytes of images"
            assert placeholder_cells(written) == 0, f"{key!r} re-drew image cells"
            assert len(written) < KEY_BUDGET, f"{key!r} wrote {len(written)} bytes"
        # The best: starred on its tile, which is on screen, so the status line shows no copy of it and no image is sent.
        written = app.after(b"b")
        assert "★ best".encode() in written and image_bytes(written) == 0 and len(written) < KEY_BUDGET, len(written)
    finally:
        app.close()


def test_labels_and_cursor_read_in_16_colours(tmp_path: Path):
    """TERM=xterm without COLORTERM (Debian's xterm, a plain SSH session): the marks say what colour says."""
    app = open_round(tmp_path, "halfblock", env={"TERM": "xterm", "COLORTERM": ""})
    try:
        assert b"38;2;" not in app.output and b"38;5;" not in app.output  # 16 colours only
        assert b"colours: 16 only" in app.output and b"COLORTERM=truecolor" in app.output  # and the status line says so
        assert "▶ 1".encode() in app.output
        assert "▶ 2".encode() in app.after(RIGHT)
        assert "✓ good".encode() in app.after(b" ")
        assert "★ best".encode() in app.after(RIGHT + b"b")
        assert "✗ not good".encode() in app.after(RIGHT + b"  ")
    finally:
        app.close()
    # the app's log is the session's own, not one file every hero process on the machine writes to
    assert "graphics: halfblock" in (tmp_path / "s" / "tui.log").read_text()
    assert not list(tmp_path.rglob("log/tui.log"))


@pytest.mark.parametrize("method", ["sixel", "kitty"])
def test_the_grid_and_the_zoom_send_each_image_once(tmp_path: Path, method: str, colours: dict[str, str]):
    app = open_round(tmp_path, method, env=colours)  # 16 images fit one page at 160x48 in a graphics terminal
    try:
        first_draw = image_sequences(app.output)
        assert len(first_draw) == len(set(first_draw)) == 16
        assert len(image_sequences(app.after(b"\r"))) == 1  # zoom: its one image, once
        assert len(image_sequences(app.after(b"\x1b"))) <= 16  # closing: at most the thumbnails it covered
        assert len(image_sequences(app.after(RIGHT + b"\r"))) == 1  # reopened on another image: that one, once
        assert len(image_sequences(app.after(RIGHT))) == 1  # the next image, inside zoom
        app.after(b"\x1b")
        assert not image_sequences(app.after(b"?"))  # help: text only
        assert len(image_sequences(app.after(b"\x1b"))) <= 16  # closing it: each thumbnail at most once (before, twice)
    finally:
        app.close()


def test_labels_given_in_the_zoom_send_no_image(tmp_path: Path, colours: dict[str, str]):
    """A label, the best, a refused label and an undo given in the zoom are drawn on its title line and on the grid
    underneath: the zoomed image is not sent again (before, each key sent it once or twice in Sixel, as the
    labeling screen underneath repainted the zoom over the tile and status line it changed). Closing the zoom,
    while the refusal is still said, sends the 16 thumbnails it covered, once each (where the refusal is said:
    test_tui_app's test of notices given in the zoom)."""
    app = open_round(tmp_path, "sixel", env=colours)
    try:
        assert len(image_sequences(app.after(b"\r", quiet=1.0))) == 1
        for key, mark in [(b" ", "✓ good"), (b"b", "★ best"), (b"u", "✓ good"), (b"b", "★ best"),
                          (b" ", "must stay good")]:  # closed while the refusal is still said
            written = app.after(key, quiet=1.0)
            assert mark.encode() in written, f"{key!r} did not show {mark!r}"
            assert not image_sequences(written), f"{key!r} sent {len(image_sequences(written))} images"
        closed = image_sequences(app.after(b"\x1b", quiet=1.5))
        assert len(closed) == len(set(closed)) == 16, f"closing sent {len(closed)} images, {len(set(closed))} distinct"
    finally:
        app.close()


@pytest.mark.parametrize("method", ["sixel", "kitty"])
def test_a_resize_sends_each_thumbnail_once(tmp_path: Path, method: str, colours: dict[str, str]):
    """Each shown thumbnail once per resize, at its new size: smaller, larger, and back (before, 5 times in Sixel)."""
    app = open_round(tmp_path, method, env=colours)
    try:
        first_draw = image_sequences(app.output)
        for columns, rows in [(150, 44), (120, 40), (160, 48)]:
            sent = image_sequences(app.resize(columns, rows, quiet=1.0))
            assert len(sent) == len(set(sent)) == 16, f"{columns}x{rows}: {len(sent)} images for 16 thumbnails"
        assert sorted(map(without_id, sent)) == sorted(map(without_id, first_draw)), "back at the first size, as first drawn"
    finally:
        app.close()


def test_each_page_sends_its_images_once(tmp_path: Path, colours: dict[str, str]):
    """512 px images (SD size) at half size take 26x13 cells: 16 of them page at 160x48. The status line shows a
    small copy of the best only while its tile is on another page. The round comes in two chunks (4 images, then
    12): the second chunk's images on the first page move into place together, in one update (ImageGrid.add_images),
    as the first page's tiles do."""
    page = 10  # 5 columns of 30-cell tiles, 2 rows of 17 (cells of 10x20 px)
    folder = make_session(tmp_path / "s", batch_size=16)
    app = AppTerminal(folder, "sixel", fake_engine(folder, "--image-size", "512"), tmp_path, env=colours)
    try:
        app.wait_for(b"labeling")
        app.wait_for_images(page)  # the second chunk's too
        app.settle(1.5)
        opened = image_sequences(app.output)
        assert len(opened) == len(set(opened)) == page, \
            f"the first page sent {len(opened)} images, {len(set(opened))} distinct"
        assert image_bytes(app.after(b"b", quiet=1.5)) == 0  # the best is on screen: no copy of it in the status line
        # pgdn: the rest, once, and the best's small copy, since its tile is now off screen
        assert len(image_sequences(app.after(b"\x1b[6~", quiet=1.5, images=16 - page + 1))) == 16 - page + 1
        # pgup: back, once; the copy goes
        assert len(image_sequences(app.after(b"\x1b[5~", quiet=1.5, images=page))) == page
    finally:
        app.close()


def test_the_submit_question_sends_the_best_once(tmp_path: Path, colours: dict[str, str]):
    """The submit question shows a copy of the best: a Sixel terminal gets its image once, and only it (before, 4
    times: Textual painted the new copy as it laid it out and again as it sized it, and Sixel sends it at each paint)."""
    app = open_round(tmp_path, "sixel", env=colours)
    try:
        app.after(b" " + RIGHT + b"b", quiet=1.0)  # a good image and the best
        written = app.after(b"s", quiet=1.5, marker=b"submit round")
        sent = image_sequences(written)
        assert len(sent) == 1, f"the submit question sent {len(sent)} images for the best's one"
    finally:
        app.close()


@pytest.mark.parametrize("pace", ["as is", "slowed"])
def test_the_best_picker_sends_each_image_once(tmp_path: Path, colours: dict[str, str], pace: str):
    """Round 1's best-picker: the previous best and 9 good images, in a row that shows 7 of them at 160 columns. A
    Sixel terminal gets each shown thumbnail once when it opens, none again while the selection moves among them,
    and each once more when the row scrolls a tile. Before, opening sent each 6 times (Textual painted the new
    thumbnails 4 times as it laid them out and sized them, and the whole picker twice more as the labeling screen
    underneath was laid out again for its footer keys), and once the row was wider than the screen the arrow keys
    scrolled it a cell instead of moving the selection, each sending its 8 visible thumbnails again.

    "slowed": the app's event loop stalls now and then, as on a loaded machine (slow_event_loop). There, before,
    opening sent 23 images for the 7 in most runs (beside a full test run, 1 in 120): textual-image composed each
    image a second time after it was shown (SixelImage: undone, this fails), and the labeling screen underneath,
    laid out again for its footer keys, repainted the whole picker (ImageModalScreen, which the zoom test below
    guards)."""
    shown = 7  # tiles of 18 cells and a gutter of 2 in the picker's row, 140 cells wide at 160 columns
    app = open_round(tmp_path, "sixel", env=colours, slowed=pace == "slowed")
    try:
        app.after(b" " + RIGHT + b"b", quiet=1.0)  # round 0: a good image and the best
        app.after(b"s", quiet=1.0, marker=b"submit round")
        submitted = len(app.output)
        os.write(app.master, b"\r")
        app.wait_for(b"labeling: space good", since=submitted)  # round 1's first images
        app.wait_for_images(16, since=submitted)  # all of them: labels go only to images shown
        app.settle(1.5)
        app.after((b" " + RIGHT) * 9, quiet=1.0)  # 9 good images
        opened = len(app.output)
        app.after(b"s", quiet=1.5, marker=b"choose the best", images=shown)
        sent = image_sequences(app.output[opened:])
        assert len(sent) == len(set(sent)) == shown, f"opening sent {len(sent)} images, {len(set(sent))} distinct"
        for key in [RIGHT] * (shown - 1) + [LEFT, RIGHT]:  # to the last shown tile, and back and forth
            written = app.after(key, marker="▶".encode())
            assert not image_sequences(written), f"{key!r} sent {len(image_sequences(written))} images again"
        sent = image_sequences(app.after(RIGHT, marker="▶".encode(), images=shown))  # past the last tile: it scrolls
        assert len(sent) == len(set(sent)) == shown, f"scrolling sent {len(sent)} images, {len(set(sent))} distinct"
    finally:
        app.close()


def test_the_training_panel_sends_each_thumbnail_once_per_size(tmp_path: Path, colours: dict[str, str]):
    """The panel under the grid takes its room when the learning starts, and more when the round's report comes:
    each time the thumbnails are sent once, at their new size (before, 4 and 3 times in Sixel; Kitty graphics
    sends an image only when its widget changes size, and sent them once already)."""
    folder = make_session(tmp_path / "s", batch_size=16)
    app = AppTerminal(folder, "sixel", fake_engine(folder, "--image-size", "64", "--stage-seconds", str(STAGE_SECONDS)),
                      tmp_path, env=colours)
    try:
        app.wait_for(b"labeling")
        app.settle(1.0)
        app.after(b" " + RIGHT + b"b" + b"s", quiet=1.0)  # a good, the best, and the submit question
        started, started_at = len(app.output), time.monotonic()
        os.write(app.master, b"\r")  # the bars move all along: the app is never quiet, so it is watched for a while
        time.sleep(STAGE_SECONDS * 0.75)
        learning = app.output[started:]
        assert b"policy update" in learning and b"labels in total" not in learning
        at_start = image_sequences(learning)
        reported = len(app.output)  # the round's report, under the stages: what was written from just before it
        while b"labels in total" not in (written := app.output)[reported:]:
            assert time.monotonic() < started_at + 60, "no round report"
            reported = len(written)
            time.sleep(0.02)
        time.sleep(STAGE_SECONDS * 0.75)  # before the next round's images come
        at_report = image_sequences(app.output[reported:])
        assert b"labeling" not in app.output[reported:]
        counts = [(len(sent), len(set(sent))) for sent in (at_start, at_report)]
        assert counts == [(16, 16), (16, 16)], f"(images, distinct) at the learning's start and at its report: {counts}"
    finally:
        app.close()


def test_a_streamed_round_sends_each_image_once(tmp_path: Path, colours: dict[str, str]):
    """The round's images arrive in two chunks (4, then 12), the second while the first is on screen: each image is
    sent once, the ones already shown are not sent again as the others join the grid."""
    folder = make_session(tmp_path / "s", batch_size=16)
    app = AppTerminal(folder, "sixel", fake_engine(folder, "--image-size", "64", "--chunk-seconds", "3"), tmp_path,
                      env=colours)
    try:
        app.wait_for(b"labeling")
        app.settle(1.0)
        first = image_sequences(app.output)
        assert b"12 of 16 images still coming" in app.output and len(first) == len(set(first)) == 4
        arrived = len(app.output)
        app.wait_for(b"labeling: space good", since=arrived, timeout=30)  # the status line once the rest are in
        app.settle(1.5)
        sent = image_sequences(app.output)
        assert len(sent) == len(set(sent)) == 16, f"{len(sent)} images sent, {len(set(sent))} distinct"
    finally:
        app.close()
