"""The grid grows as a round's images are drawn: real key presses against the fake engine, which streams a round
in the real engine's chunks (a short first one, then the rest), each chunk taking --chunk-seconds."""

from __future__ import annotations

from pathlib import Path

import pytest
from tui_support import (
    labels,
    make_session,
    notices,
    round_row,
    run,
    running_app,
    status_text,
    wait_for,
)

from hero_tui.session_controller import Phase
from hero_tui.widgets.image_grid import ImageGrid
from hero_tui.widgets.training_panel import TrainingPanel

pytestmark = [pytest.mark.tui_only, pytest.mark.filterwarnings("ignore:Image.Image.getdata:DeprecationWarning")]

CHUNK_SECONDS = 4.0  # long enough that a test's keys land between two chunks on a loaded 2-core machine


def first_chunk_shown(app, round_: int = 0):
    screen = app.session_screen
    return lambda: (screen.controller.phase is Phase.LABELING and screen.controller.batch is not None and screen.controller.batch.round == round_
                    and screen.controller.batch.coming > 0 and len(screen.query_one(ImageGrid).batch.images) > 0)


def all_shown(app, round_: int = 0):
    """Every image of the round is in its tile (the last ones go in a moment after the grid knows of them)."""
    screen = app.session_screen
    grid = screen.query_one(ImageGrid)
    return lambda: (screen.controller.phase is Phase.LABELING and screen.controller.batch is not None and screen.controller.batch.round == round_
                    and not screen.controller.batch.coming and len(grid.batch.images) == screen.controller.batch.total
                    and not grid.query(".thumbnail-pending"))


def test_the_grid_grows_as_images_arrive_and_keeps_its_tiles_cursor_and_labels(tmp_path: Path):
    """Guards streaming in the app: the first chunk is labelable at once; `s` says how many images are still coming;
    later chunks join the grid without rebuilding it (the first tiles are the same widgets, the cursor and the labels
    given meanwhile stay, on screen and in hero.db) (faults planted: grid rebuilt on each chunk; labels rebuilt from
    the completed batch, losing their undo; submit allowed while images are coming)."""
    folder = make_session(tmp_path / "s")  # 6 images, sample_batch 16: a chunk of 4, then 2

    async def scenario():
        async with running_app(folder, "--chunk-seconds", str(CHUNK_SECONDS), labeling_within=None) as (app, pilot):
            screen = app.session_screen
            await wait_for(pilot, first_chunk_shown(app), timeout=60)
            grid = screen.query_one(ImageGrid)
            assert [item.idx for item in grid.batch.images] == [0, 1, 2, 3] and screen.controller.batch.total == 6
            assert grid.layout_plan.page_size >= 6  # planned for the whole round: tiles keep their size as more come
            assert len(grid.query(".thumbnail-pending")) == 2  # the tiles of the two images still being drawn
            first_tiles = [grid.thumbnail(item.id) for item in grid.batch.images]
            await pilot.press("space", "right", "b", "right")
            # first in its line, which is cut at the width: the key hints after it repeat the footer's
            assert status_text(screen).splitlines()[1].startswith("2 of 6 images still coming · labeling")
            await pilot.press("s")
            assert any("2 of 6 images still coming" in text for text in notices(app))
            assert "2 of 6 images still coming" in status_text(screen)
            assert round_row(folder, 0)[0] is None
            await wait_for(pilot, all_shown(app), timeout=60)
            assert [grid.thumbnail(item.id) for item in grid.batch.images[:4]] == first_tiles
            assert len(grid.children) == 6 and grid.cursor == 2 and not grid.query(".thumbnail-pending")
            assert grid.thumbnail(grid.batch.images[0].id).badge == "✓ good"
            assert grid.thumbnail(grid.batch.images[1].id).badge == "★ best"
            await pilot.press("u")  # undo reaches back past the chunk: the best goes back to unchosen
            assert grid.thumbnail(grid.batch.images[1].id).badge != "★ best"
            await pilot.press("b", "right", "right", "right", "space", "s", "enter")  # image 6 arrived last
            await wait_for(pilot, first_chunk_shown(app, 1), timeout=60)
            await pilot.press("q")  # while round 1 is still being drawn: quits at once
            await wait_for(pilot, lambda: not app.is_running, timeout=30)

    run(scenario())
    assert labels(folder) == {0: "good", 1: "bad", 2: "good", 3: "bad", 4: "bad", 5: "good"}


def test_the_next_round_is_shown_from_its_first_chunk_after_the_learning(tmp_path: Path):
    """Guards the GPU-box wait: after a submit the training panel gives way to the next round's grid as soon as its
    first chunk is stored, while the rest is still drawn (fault planted: the grid waits for batch_ready)."""
    folder = make_session(tmp_path / "s")

    async def scenario():
        async with running_app(folder, "--chunk-seconds", str(CHUNK_SECONDS), labeling_within=None,
                               quit_within=30) as (app, pilot):
            screen = app.session_screen
            await wait_for(pilot, all_shown(app), timeout=60)
            await pilot.press("space", "right", "b", "s", "enter")
            await wait_for(pilot, first_chunk_shown(app, 1), timeout=60)
            assert not screen.query_one(TrainingPanel).display
            assert screen.controller.batch.previous_best is not None and screen.controller.batch.previous_best.idx == 1
            await pilot.press("space")  # labels go on while the rest is drawn
            await wait_for(pilot, all_shown(app, 1), timeout=60)

    run(scenario())
    assert labels(folder, 1)[0] == "good"


def test_a_round_quit_part_way_comes_back_with_its_stored_images_and_labels(tmp_path: Path):
    """Guards resume from stored chunks in the app: quitting while a round is drawn keeps the chunk that was shown
    and its labels; on resume those images come back first, untouched on disk, and the rest are drawn (fault planted:
    resume redraws stored chunks)."""
    folder = make_session(tmp_path / "s")

    async def quit_after_first_chunk():
        async with running_app(folder, "--chunk-seconds", "8", labeling_within=None) as (app, pilot):
            await wait_for(pilot, first_chunk_shown(app), timeout=60)
            await pilot.press("space")
            await pilot.press("q")
            await wait_for(pilot, lambda: not app.is_running, timeout=30)

    run(quit_after_first_chunk())
    assert labels(folder) == {0: "good", 1: None, 2: None, 3: None}  # the second chunk was never stored
    stamps = {path.name: path.stat().st_mtime_ns for path in (folder / "rounds" / "0000").glob("*.png")}

    async def resume():
        async with running_app(folder, "--chunk-seconds", str(CHUNK_SECONDS), labeling_within=None,
                               quit_within=30) as (app, pilot):
            screen = app.session_screen
            await wait_for(pilot, first_chunk_shown(app), timeout=60)
            assert [item.idx for item in screen.controller.batch.images] == [0, 1, 2, 3]
            assert screen.controller.labels.label(screen.controller.batch.images[0].id) == "good"
            await wait_for(pilot, all_shown(app), timeout=60)

    run(resume())
    after = {path.name: path.stat().st_mtime_ns for path in (folder / "rounds" / "0000").glob("*.png")}
    assert {name: after[name] for name in stamps} == stamps and len(after) == 6
