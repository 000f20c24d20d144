"""Pilot tests: real key presses against a fake engine process, checked against what the session store holds."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from rich.table import Table
from textual.widgets._footer import FooterKey
from tui_support import (
    SIZE,
    best_idx,
    labeling,
    labels,
    make_session,
    notices,
    on_screen,
    quit_app,
    round_row,
    run,
    running_app,
    status_text,
    wait_for,
)

from hero_engine.storage.lock import SessionLock
from hero_tui.batch import RoundReport
from hero_tui.graphics import choose
from hero_tui.screens.best_picker_screen import BestPickerScreen
from hero_tui.screens.engine_failed_screen import EngineFailedScreen
from hero_tui.screens.export_screen import ExportScreen
from hero_tui.screens.help_screen import HelpScreen
from hero_tui.screens.metrics_screen import MetricsScreen
from hero_tui.screens.quit_confirm_screen import QuitConfirmScreen
from hero_tui.screens.submit_screen import SubmitScreen
from hero_tui.screens.zoom_screen import ZoomScreen
from hero_tui.session_controller import Phase
from hero_tui.terminal_probe import TerminalReport
from hero_tui.widgets.image_grid import ImageGrid, plan_grid
from hero_tui.widgets.metrics_chart import MetricsChart
from hero_tui.widgets.thumbnail import Thumbnail
from hero_tui.widgets.training_panel import TrainingPanel

# textual-image 0.12 calls a Pillow method that Pillow 12 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Image.Image.getdata:DeprecationWarning")


async def settle(pilot, app) -> None:
    """Wait until the engine has answered every short command sent so far (labels need no wait: the app writes them)."""
    await wait_for(pilot, lambda: not app.session_screen.controller.client._unanswered - _long_commands(app))


def _long_commands(app) -> set[int]:
    client = app.session_screen.controller.client
    return {i for i, cmd in client._pending.items() if cmd in ("propose", "update", "metrics")}


async def label_round_zero(pilot) -> None:
    """Image 1 good, image 2 best, the rest unlabeled: a valid round."""
    await pilot.press("space", "right", "b")


def test_labels_and_best_reach_the_store(tmp_path: Path):
    folder = make_session(tmp_path / "s")

    async def scenario():
        async with running_app(folder) as (app, pilot):
            await pilot.press("space", "right", "b", "right", "right", "space", "space")
            await settle(pilot, app)
            grid = app.session_screen.query_one(ImageGrid)
            assert grid.thumbnail(grid.batch.images[0].id).badge == "✓ good"
            assert grid.thumbnail(grid.batch.images[1].id).badge == "★ best"
            assert grid.thumbnail(grid.batch.images[3].id).badge == "✗ not good"

    run(scenario())
    assert labels(folder) == {0: "good", 1: "good", 2: None, 3: "bad", 4: None, 5: None}
    assert best_idx(folder) == (0, 1)


def test_submit_refuses_what_hero_cannot_learn_from(tmp_path: Path):
    folder = make_session(tmp_path / "s")

    async def scenario():
        async with running_app(folder) as (app, pilot):
            await pilot.press("s")
            assert any("best" in text for text in notices(app))
            await pilot.press("b", "s")
            assert any("besides the best" in text for text in notices(app))
            await settle(pilot, app)
            assert round_row(folder, 0)[0] is None
            await pilot.press("right", "space", "s", "enter")
            await wait_for(pilot, labeling(app, 1))

    run(scenario())
    submitted, updated = round_row(folder, 0)
    assert submitted is not None and updated is not None
    assert labels(folder) == {0: "good", 1: "good", 2: "bad", 3: "bad", 4: "bad", 5: "bad"}
    assert round_row(folder, 1) is not None


def test_submitting_round_zero_shows_a_summary_first_and_escape_goes_back(tmp_path: Path):
    folder = make_session(tmp_path / "s")

    async def scenario():
        async with running_app(folder) as (app, pilot):
            await pilot.press("space", "right", "b", "right", "right", "space", "space", "s")
            assert isinstance(app.screen, SubmitScreen)
            text = " ".join(str(w.render()) for w in app.screen.query("Static"))
            assert "2 good · 1 marked not good · 3 unlabeled count as not good" in text
            assert "best: image 2" in text
            await pilot.press("escape")
            assert app.screen is app.session_screen and app.session_screen.controller.phase is Phase.LABELING
            await settle(pilot, app)
            assert round_row(folder, 0)[0] is None  # nothing was submitted
            await pilot.press("right", "space", "s", "y")
            await wait_for(pilot, labeling(app, 1))

    run(scenario())
    assert labels(folder) == {0: "good", 1: "good", 2: "bad", 3: "bad", 4: "good", 5: "bad"}  # unlabeled: not good
    assert round_row(folder, 0)[0] is not None


def test_engine_refusal_is_shown_and_labeling_goes_on(tmp_path: Path):
    folder = make_session(tmp_path / "s")

    async def scenario():
        async with running_app(folder, "--reject", "submit") as (app, pilot):
            await label_round_zero(pilot)
            await pilot.press("s", "enter")
            await wait_for(pilot, lambda: any("fake refusal" in text for text in notices(app)))
            await wait_for(pilot, labeling(app))
            await pilot.press("right", "space")
            await settle(pilot, app)

    run(scenario())
    assert round_row(folder, 0)[0] is None
    assert labels(folder)[2] == "good"


def test_undo_goes_back_several_levels_in_the_store(tmp_path: Path):
    folder = make_session(tmp_path / "s")

    async def scenario():
        async with running_app(folder) as (app, pilot):
            await pilot.press("space", "right", "space", "right", "b", "right", "b")
            await settle(pilot, app)
            assert best_idx(folder) == (0, 3)
            await pilot.press("u")  # best back to image 3, image 4 unlabeled again
            await settle(pilot, app)
            assert best_idx(folder) == (0, 2) and labels(folder)[3] is None
            await pilot.press("u")  # the first best is cleared, and image 3 (index 2) is unlabeled again
            await settle(pilot, app)
            assert best_idx(folder) is None and labels(folder)[2] is None
            await pilot.press("backspace")  # then the second good label (index 1) goes
            await settle(pilot, app)

    run(scenario())
    assert labels(folder) == {0: "good", 1: None, 2: None, 3: None, 4: None, 5: None}
    assert best_idx(folder) is None


def test_the_best_badge_under_the_cursor_title_reads_apart_from_it(tmp_path: Path):
    """Guards the best's badge style: bold in the warning colour on the tile's own background, not a block of colour
    that, under the cursor's title bar, read as one block with it."""
    folder = make_session(tmp_path / "s")

    async def scenario():
        async with running_app(folder) as (app, pilot):
            await pilot.press("b")
            await settle(pilot, app)
            badge = app.session_screen.query_one(".thumbnail-badge.-best")
            title = app.session_screen.query_one(".thumbnail-title.-cursor")
            assert badge.styles.background.a == 0 and title.styles.background.a > 0  # text under the bar, not a block

    run(scenario())


def test_resume_mid_round_shows_the_labels_given_and_keeps_them(tmp_path: Path):
    folder = make_session(tmp_path / "s")

    async def first_visit():
        async with running_app(folder) as (_, pilot):
            await pilot.press("space", "right", "b", "right", "right", "right")  # then looked on to image 5

    async def second_visit():
        async with running_app(folder) as (app, pilot):
            grid = app.session_screen.query_one(ImageGrid)
            assert grid.thumbnail(grid.batch.images[0].id).badge == "✓ good"
            assert grid.thumbnail(grid.batch.images[1].id).badge == "★ best"
            assert grid.cursor == 4  # where the person left it
            await pilot.press("left", "left", "space", "s", "enter")
            await wait_for(pilot, labeling(app, 1))

    async def third_visit():
        async with running_app(folder, labeling_within=None) as (app, pilot):
            await wait_for(pilot, labeling(app, 1))
            assert app.session_screen.query_one(ImageGrid).cursor == 0  # left in round 0: round 1 at its first unlabeled

    run(first_visit())
    assert labels(folder)[0] == "good" and best_idx(folder) == (0, 1)
    run(second_visit())
    run(third_visit())
    assert labels(folder) == {0: "good", 1: "good", 2: "good", 3: "bad", 4: "bad", 5: "bad"}
    assert round_row(folder, 0)[1] is not None


@pytest.mark.parametrize("confirm", ["q", "y"])
def test_quit_during_a_stage_asks_stops_the_engine_and_leaves_the_session_resumable(tmp_path: Path, confirm: str):
    folder = make_session(tmp_path / "s")

    async def scenario():
        async with running_app(folder, "--stage-seconds", "30", labeling_within=None) as (app, pilot):
            screen = app.session_screen
            await wait_for(pilot, lambda: screen.controller.phase in (Phase.SAMPLING, Phase.LABELING), timeout=40)
            await wait_for(pilot, labeling(app), timeout=60)
            await label_round_zero(pilot)
            await pilot.press("right", "space", "s", "enter")
            await wait_for(pilot, lambda: screen.controller.phase is Phase.LEARNING)
            await pilot.pause(0.5)
            await pilot.press("left")  # the previous round's images can still be browsed
            await pilot.press("enter")
            assert isinstance(app.screen, ZoomScreen)
            await pilot.press("escape")
            await wait_for(pilot, lambda: screen.controller.learning_stage == "representation")
            await pilot.press("q")  # the stage would be thrown away: asked first
            assert isinstance(app.screen, QuitConfirmScreen)
            text = " ".join(str(w.render()) for w in app.screen.query("Static"))
            assert "representation stage" in text and "throws the running stage away" in text
            assert f"hero-tui resume {folder}" in text
            choices = {key.description for key in app.screen.query(FooterKey)}
            assert {"Finish the learning, then quit", "Quit now (the learning restarts on resume)", "Cancel"} <= choices
            await pilot.press("escape")  # stays, still learning
            assert app.screen is screen and screen.controller.phase is Phase.LEARNING and app.is_running
            await pilot.press("q", confirm)  # a second q, or y, quits
            await wait_for(pilot, lambda: not app.is_running, timeout=10)

    async def resumed():
        async with running_app(folder, "--stage-seconds", "30", labeling_within=None) as (app, pilot):
            await wait_for(pilot, lambda: app.session_screen.controller.phase is Phase.LEARNING)
            title = str(app.session_screen.query_one("#training-title").render())
            assert "round 0 again" in title and "stopped before it finished" in title
            assert "first stage (representation)" in title
            await pilot.press("q", "y")
            await wait_for(pilot, lambda: not app.is_running, timeout=10)

    run(scenario())
    submitted, updated = round_row(folder, 0)
    assert submitted is not None and updated is None
    assert round_row(folder, 1) is None
    lock = SessionLock(folder)
    lock.acquire()  # the engine is gone
    lock.release()
    run(resumed())
    assert round_row(folder, 0)[1] is None


def test_quit_after_learning_lets_the_round_finish_then_quits(tmp_path: Path):
    folder = make_session(tmp_path / "s")

    async def scenario():
        async with running_app(folder, "--stage-seconds", "2") as (app, pilot):
            screen = app.session_screen
            await label_round_zero(pilot)
            await pilot.press("right", "space", "s", "enter")
            await wait_for(pilot, lambda: screen.controller.phase is Phase.LEARNING)
            await pilot.press("q")
            assert isinstance(app.screen, QuitConfirmScreen)
            await pilot.press("f")
            assert app.is_running and screen.controller.phase is Phase.LEARNING
            await wait_for(pilot, lambda: not app.is_running, timeout=30)

    run(scenario())
    assert round_row(folder, 0)[1] is not None  # the learning finished and was saved
    assert round_row(folder, 1) is not None  # with the next round's images


def test_best_picker_can_keep_the_previous_best(tmp_path: Path):
    folder = make_session(tmp_path / "s")

    async def scenario():
        async with running_app(folder) as (app, pilot):
            await label_round_zero(pilot)
            await pilot.press("right", "space", "s", "enter")
            await wait_for(pilot, labeling(app, 1))
            await pilot.press("s")
            assert any("good" in text for text in notices(app))  # nothing good yet: no picker
            await pilot.press("space", "s")
            await wait_for(pilot, lambda: isinstance(app.screen, BestPickerScreen))
            counts = str(app.screen.query_one("#picker-counts").render())
            assert "1 good · 0 marked not good · 5 unlabeled count as not good" in counts  # as round 0's summary
            await pilot.press("right", "enter")  # the only good image cannot be the best as well
            assert isinstance(app.screen, BestPickerScreen)
            await pilot.press("left", "enter")  # keep the previous best
            await wait_for(pilot, labeling(app, 2))

    run(scenario())
    assert best_idx(folder, 1) == (0, 1)
    assert labels(folder, 1)[0] == "good"


async def submit_round_zero_until_the_engine_fails(pilot, app) -> None:
    """Label round 0, submit it to an engine started with --crash-on submit, and wait for the failure screen."""
    await label_round_zero(pilot)
    await pilot.press("right", "space", "s", "enter")
    await wait_for(pilot, lambda: isinstance(app.screen, EngineFailedScreen))


def test_engine_crash_shows_the_log_and_restarts(tmp_path: Path):
    folder = make_session(tmp_path / "s")

    async def scenario():
        async with running_app(folder, "--crash-on", "submit") as (app, pilot):
            await submit_round_zero_until_the_engine_fails(pilot, app)
            text = " ".join(str(w.render()) for w in app.screen.query("Static"))
            assert "engine.log" in text and "fake engine crash" in text
            assert "Traceback" not in text  # the log's last lines, without a traceback's frames
            # what is saved, as read back from hero.db: image 1 good, image 2 best, image 3 good
            assert "3 labels of round 0 are saved in hero.db (3 good, best #2)" in text
            assert "They are the labels on screen" in text
            await pilot.press("r")
            await wait_for(pilot, labeling(app))
            await pilot.press("right", "space")
            await settle(pilot, app)

    run(scenario())
    assert labels(folder) == {0: "good", 1: "good", 2: "good", 3: "good", 4: None, 5: None}
    assert round_row(folder, 0)[0] is None


def test_resize_reflows_the_grid_and_keeps_the_labels(tmp_path: Path):
    folder = make_session(tmp_path / "s")

    async def scenario():
        async with running_app(folder) as (app, pilot):
            grid = app.session_screen.query_one(ImageGrid)
            wide = grid.columns
            await pilot.press("space", "right", "b")
            await pilot.resize_terminal(50, 40)
            await wait_for(pilot, lambda: grid.columns < wide)  # the grid is re-planned when its own resize comes
            assert grid.thumbnail(grid.batch.images[0].id).badge == "✓ good"
            assert grid.thumbnail(grid.batch.images[1].id).badge == "★ best"
            await pilot.resize_terminal(20, 10)
            await pilot.pause(0.2)
            assert app.session_screen.has_class("-too-small")
            assert app.session_screen.query_one("#too-small").display
            await pilot.resize_terminal(*SIZE)
            await pilot.pause(0.2)
            assert not app.session_screen.has_class("-too-small")

    run(scenario())
    assert labels(folder)[0] == "good" and best_idx(folder) == (0, 1)


def test_q_quits_from_the_engine_failed_screen(tmp_path: Path):
    folder = make_session(tmp_path / "s")

    async def scenario():
        async with running_app(folder, "--crash-on", "submit") as (app, pilot):
            await submit_round_zero_until_the_engine_fails(pilot, app)
            await quit_app(pilot, app)
        return app.return_value

    assert run(scenario()) is None


@pytest.mark.parametrize("keys, screen", [(("enter",), ZoomScreen), (("question_mark",), HelpScreen), (("m",), MetricsScreen)])
def test_q_quits_from_the_screens_on_top(tmp_path: Path, keys, screen):
    folder = make_session(tmp_path / "s")

    async def scenario():
        async with running_app(folder) as (app, pilot):
            await pilot.press(*keys)
            assert isinstance(app.screen, screen)
            await quit_app(pilot, app)

    run(scenario())


def test_label_keys_do_nothing_while_the_grid_is_hidden(tmp_path: Path):
    folder = make_session(tmp_path / "s")

    async def scenario():
        async with running_app(folder) as (app, pilot):
            await pilot.press("space")
            await pilot.resize_terminal(20, 10)
            await pilot.pause(0.2)
            assert app.session_screen.has_class("-too-small")
            await pilot.press("right", "space", "b", "u", "s", "enter")
            assert app.screen is app.session_screen and app.session_screen.query_one(ImageGrid).cursor == 0
            assert labels(folder) == {0: "good", 1: None, 2: None, 3: None, 4: None, 5: None}
            await pilot.resize_terminal(*SIZE)
            await pilot.pause(0.2)
            await pilot.press("right", "space")

    run(scenario())
    assert labels(folder) == {0: "good", 1: "good", 2: None, 3: None, 4: None, 5: None}


def test_keys_are_remappable_and_help_lists_every_binding(tmp_path: Path):
    folder = make_session(tmp_path / "s")

    async def scenario():
        async with running_app(folder, keymap={"good": "g"}) as (app, pilot):
            await pilot.press("g")
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            table = app.screen._table()
            ids = set(table.columns[2]._cells)
            assert {"good", "best", "undo", "submit", "zoom", "quit", "help", "left", "metrics", "export"} <= ids
            assert "g" in table.columns[0]._cells
            keys = " ".join(table.columns[0]._cells)
            assert "" not in ids and "tab" not in keys and "super" not in keys  # hero's keys only, not Textual's own
            await pilot.press("escape")
            await settle(pilot, app)

    run(scenario())
    assert labels(folder)[0] == "good"


def test_hints_name_the_remapped_keys(tmp_path: Path):
    """Guards keys.key_names in the app's prose: with good, best, submit and the summary's keys remapped, the status
    line, a refusal and the submit summary name the new keys, not the defaults."""
    folder = make_session(tmp_path / "s")
    keymap = {"good": "g", "best": "x", "submit": "S", "submit_confirm": "c", "submit_back": "escape,n"}

    async def scenario():
        async with running_app(folder, keymap=keymap) as (app, pilot):
            status = lambda: status_text(app.session_screen)
            assert "labeling: g good · x best · S submit · ? keys" in status(), status()
            assert "best not chosen (x)" in status(), status()
            await pilot.press("x", "g")  # the best must stay good
            await wait_for(pilot, lambda: "press x on another image" in status())
            await pilot.press("right", "g", "S")
            await wait_for(pilot, lambda: isinstance(app.screen, SubmitScreen))
            hint = str(app.screen.query_one("#submit-hint").render())
            assert "c submits, esc goes back to labeling" in hint, hint
            await pilot.press("escape")
            await settle(pilot, app)

    run(scenario())


def test_zoom_metrics_and_export_from_the_app(tmp_path: Path):
    folder = make_session(tmp_path / "s")
    target = tmp_path / "out" / "lora.safetensors"

    async def scenario():
        async with running_app(folder) as (app, pilot):
            await pilot.press("enter")
            assert isinstance(app.screen, ZoomScreen)
            await pilot.press("enter")
            assert not isinstance(app.screen, ZoomScreen)
            await label_round_zero(pilot)
            await pilot.press("right", "space", "s", "enter")
            await wait_for(pilot, labeling(app, 1))
            await pilot.press("m")
            await wait_for(pilot, lambda: isinstance(app.screen, MetricsScreen))
            chart = app.screen.query_one(MetricsChart)
            await wait_for(pilot, lambda: isinstance(chart.content, Table))
            headers = [c.header for c in chart.content.columns]
            assert chart.content.row_count == 1 and "good-rate" in headers and "reward agrees with labels" in headers
            assert "75%" in list(chart.content.columns[headers.index("reward agrees with labels") + 1].cells)
            await pilot.pause(0.1)
            row = next(line for line in screen_text(app).splitlines() if "75%" in line)  # 100 columns: a frame of 80
            inside = row[row.index("┃") + 1:row.rindex("┃")]
            assert "…" not in inside and re.fullmatch(r"\s+0 +█+\S* +\d+% +█+\S* +0\.500 +█+\S* +75%\s*", inside), row  # bars narrowed, not cut
            await pilot.press("escape", "e")
            await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen))
            field = app.screen.query_one("Input")
            field.value = str(target)
            await pilot.press("enter")
            await wait_for(pilot, target.exists)

    run(scenario())
    assert target.read_bytes() == b"fake lora"


def test_the_metrics_screen_shows_every_learned_round_at_once_while_the_engine_learns(tmp_path: Path):
    """Guards the metrics screen's source: hero.db, read when it opens and again when a round's learning is saved. The
    engine answers commands one at a time, so asked while it learns it would answer only once the next round is drawn
    (on a GPU box, a minute)."""
    folder = make_session(tmp_path / "s")

    async def scenario():
        async with running_app(folder, "--stage-seconds", "3", "--chunk-seconds", "0.5", labeling_within=60) as (app, pilot):
            await label_round_zero(pilot)
            await pilot.press("s", "enter")
            await wait_for(pilot, labeling(app, 1), timeout=60)
            await pilot.press("space", "right", "space", "s", "enter")  # the best-picker keeps round 0's best
            await wait_for(pilot, lambda: app.session_screen.controller.phase is Phase.LEARNING)
            await pilot.press("m")
            await wait_for(pilot, lambda: isinstance(app.screen, MetricsScreen))
            chart = app.screen.query_one(MetricsChart)
            await wait_for(pilot, lambda: isinstance(chart.content, Table), timeout=2)  # the engine learns for 6 s more
            assert chart.content.row_count == 1
            await wait_for(pilot, lambda: chart.content.row_count == 2, timeout=30)  # round 1 learned: its row joins ...
            batch = app.session_screen.controller.batch
            assert batch.round == 1 or batch.coming  # ... while round 2 is still being drawn
            await wait_for(pilot, labeling(app, 2), timeout=30)

    run(scenario())


def test_zoom_labels_and_moves_through_the_round_like_the_grid(tmp_path: Path):
    folder = make_session(tmp_path / "s")

    async def scenario():
        async with running_app(folder) as (app, pilot):
            await pilot.press("enter")
            zoom = app.screen
            assert isinstance(zoom, ZoomScreen)
            footer = {key.description for key in zoom.query(FooterKey)}
            assert {"Good", "Best", "Undo", "Previous", "Next", "Close"} <= footer
            title = lambda: str(zoom.query_one("#zoom-title").render())
            assert "image 1 of 6" in title() and "· unlabeled" in title()
            await pilot.press("space")
            assert labels(folder)[0] == "good" and "✓ good" in title()
            await pilot.press("right", "b")  # still zoomed, on image 2
            assert app.screen is zoom and "image 2 of 6" in title()
            assert best_idx(folder) == (0, 1) and "★ best" in title()
            await pilot.press("right", "space", "u")
            assert labels(folder)[2] is None and "· unlabeled" in title()
            await pilot.press("right", "space", "left")
            assert "image 3 of 6" in title()
            await wait_for(pilot, lambda: zoom.query_one("#zoom-image").image == grid_path(app, 2))
            await pilot.press("escape")
            grid = app.session_screen.query_one(ImageGrid)
            assert app.screen is app.session_screen and grid.cursor == 2  # the grid is where the zoom left it
            assert grid.thumbnail(grid.batch.images[1].id).badge == "★ best"
            assert grid.thumbnail(grid.batch.images[3].id).badge == "✓ good"

    run(scenario())
    assert labels(folder) == {0: "good", 1: "good", 2: None, 3: "good", 4: None, 5: None}
    assert best_idx(folder) == (0, 1)


def grid_path(app, index: int):
    return app.session_screen.query_one(ImageGrid).batch.images[index].path


def test_a_session_held_by_another_app_is_a_one_line_error(tmp_path: Path):
    folder = make_session(tmp_path / "s")
    lock = SessionLock(folder)
    lock.acquire()

    async def scenario():
        async with running_app(folder, labeling_within=None) as (app, pilot):
            await wait_for(pilot, lambda: not app.is_running)
        return app.return_value

    try:
        message = run(scenario())
    finally:
        lock.release()
    assert "in use" in message and "\n" not in message


def test_status_line_says_when_the_built_in_demo_model_is_in_use(tmp_path: Path):
    folder = make_session(tmp_path / "s", model="demo")

    async def scenario():
        async with running_app(folder) as (app, _):
            text = status_text(app.screen)
            assert "built-in demo model" in text and "--model" in text

    run(scenario())


def test_the_status_keeps_each_line_to_a_row_so_its_notes_show_at_80_columns(tmp_path: Path, monkeypatch):
    """Guards the status lines at the usual terminal size, 80x24, in tmux with 256 colours: the round's line and the
    prompt's (a long one: the demo model's note) are cut with an ellipsis rather than wrapped, so the notes under them
    (how images are drawn, and the colours) stay on screen: wrapped, they pushed both notes out of the status's four
    rows. The round's line puts the labels' count over all rounds last, where it is cut, after the best. A notice,
    in place of the notes, is still shown whole over their two rows (a path, an error)."""
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("COLORTERM", raising=False)
    monkeypatch.setenv("TMUX", "/tmp/tmux-0/default,1,0")
    folder = make_session(tmp_path / "s", batch_size=16, model="demo")
    note = "inside tmux without allow-passthrough: half-blocks (`hero-tui doctor` says what to add)"

    async def scenario():
        async with running_app(folder, size=(80, 24), graphics_note=note) as (app, pilot):
            await wait_for(pilot, lambda: screen_text(app).lstrip().startswith("round 0 │ page"))
            rows = screen_text(app).splitlines()[:5]
            assert rows[0].strip().startswith("round 0 │") and rows[0].rstrip().endswith("…"), rows
            assert "│ best not chosen (b)" in rows[0], rows  # what is cut is the count of every round's labels
            assert rows[1].strip().startswith("labeling:") and rows[1].rstrip().endswith("…"), rows
            assert rows[2].strip().startswith("images: inside tmux"), rows
            assert rows[3].strip().startswith("colours: 256 only"), rows
            problem = ("the disk holding the session is full: free some space, then press r to restart the engine; "
                       "every label given so far is saved")
            app.session_screen.notify(problem, title="engine", severity="error")
            await wait_for(pilot, lambda: "engine: the disk" in screen_text(app))
            told = " ".join(row.strip() for row in screen_text(app).splitlines()[2:4])  # in place of the notes
            assert told == f"engine: {problem}", told

    run(scenario())


def test_tiles_fill_the_terminal_and_a_round_larger_than_a_screen_pages(tmp_path: Path):
    """Half-blocks show 1x2 pixels a cell: a 64 px image needs at least 32x16 cells to be shown at half size."""
    folder = make_session(tmp_path / "s", batch_size=16)

    async def scenario():
        async with running_app(folder, "--image-size", "64", size=(160, 48)) as (app, pilot):
            grid = app.session_screen.query_one(ImageGrid)
            # the round is whole in the controller before the grid has moved its last images in: wait for this page's
            await wait_for(pilot, lambda: page_images_on_screen(grid))
            shown = [t for t in grid.query(Thumbnail) if t.display]
            assert grid.pages == 2 and len(shown) == grid.layout_plan.page_size
            for thumbnail in shown:
                image = thumbnail.query_one(".thumbnail-image").size
                assert image.width >= 32 and image.height >= 16
            tiles_right = max(t.region.right for t in shown)
            assert grid.region.right - tiles_right <= grid.layout_plan.image_width  # no column's worth left empty
            status = lambda: status_text(app.session_screen)
            assert "page 1/2" in status()
            await pilot.press("right", "up")  # the top row: up stays on the second tile
            assert grid.cursor == 1
            await pilot.press("left", "pagedown")
            assert grid.cursor == grid.layout_plan.page_size and "page 2/2" in status()
            assert not grid.thumbnail(grid.batch.images[0].id).display
            await pilot.press("left")  # back across the page boundary
            assert grid.cursor == grid.layout_plan.page_size - 1 and "page 1/2" in status()

    run(scenario())


def page_images_on_screen(grid: ImageGrid) -> bool:
    """Every tile shown holds its image (not the "drawing…" placeholder), on screen. A tile just mounted may not
    have composed its parts yet: it is not ready."""
    images = [t.query(".thumbnail-image").first() if t.query(".thumbnail-image") else None
              for t in grid.query(Thumbnail) if t.display]
    return bool(images) and all(i is not None and not i.has_class("thumbnail-pending") and on_screen(i) for i in images)


def test_plan_fills_one_page_when_the_images_fit_at_half_size():
    sixel = plan_grid(156, 42, 16, (64, 64), (10, 20))  # 10x20 px cells: 4x2 cells is half size
    assert sixel.page_size >= 16 and sixel.image_width * 10 >= 64
    halfblock = plan_grid(156, 42, 16, (64, 64), (1, 2))
    assert halfblock.page_size < 16 and halfblock.image_width >= 32 and halfblock.image_height >= 16
    small = plan_grid(30, 12, 16, (64, 64), (1, 2))  # smaller than one tile at half size: one, as large as fits
    assert small.page_size == 1 and small.image_width <= 30


def test_a_page_limit_shrinks_the_tiles_instead_of_adding_pages():
    """Guards plan_grid's max_pages: with less room (the training panel open) the round stays on as many pages."""
    labeling = plan_grid(156, 42, 16, (64, 64), (1, 2))
    pages = -(-16 // labeling.page_size)
    squeezed = plan_grid(156, 30, 16, (64, 64), (1, 2))
    assert -(-16 // squeezed.page_size) > pages  # what the panel's room did before
    kept = plan_grid(156, 30, 16, (64, 64), (1, 2), max_pages=pages)
    assert -(-16 // kept.page_size) <= pages and kept.image_height < labeling.image_height
    assert kept.tile_height * kept.rows <= 30 and kept.columns * kept.image_width <= 156


def test_notices_show_in_the_status_line_not_over_the_images(tmp_path: Path):
    """Guards where notices go: the status line, under the status, for a while; no notification over the grid."""
    folder = make_session(tmp_path / "s")

    async def scenario():
        async with running_app(folder) as (app, pilot):
            screen = app.session_screen
            # 3 s: long enough that a loaded machine reads it before it goes, shorter than the 7 s waited below
            screen.notify("no CUDA device: using the built-in demo model", title="engine", severity="warning", timeout=3)
            await pilot.pause(0.1)
            status = lambda: status_text(screen)
            assert "engine: no CUDA device: using the built-in demo model" in status() and not app._notifications
            await pilot.press("s")  # nothing labeled: refused, said in the status line
            assert "cannot submit yet" in status() and not app._notifications
            await pilot.pause(7)
            assert "cannot submit" not in status() and "no CUDA" not in status()

    run(scenario())


def test_a_notice_given_in_the_zoom_is_said_on_its_title_line_and_then_in_the_status_line(tmp_path: Path):
    """Guards notices given while the zoom is open: on the zoom's title line, never a notification over the
    image; closing the zoom moves one still due to the status line, and leaves no notification over the grid
    (before, one covered a thumbnail there for its 6 seconds, and a Sixel terminal got that thumbnail again)."""
    folder = make_session(tmp_path / "s")

    async def scenario():
        async with running_app(folder) as (app, pilot):
            screen = app.session_screen
            status = lambda: status_text(screen)
            await pilot.press("space", "b", "enter")
            await wait_for(pilot, lambda: isinstance(app.screen, ZoomScreen))
            title = lambda: str(app.screen.query_one("#zoom-title").render())
            await pilot.press("space")  # the best must stay good: refused
            await wait_for(pilot, lambda: "must stay good" in title())
            assert not app._notifications and "must stay good" not in status()
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is screen)
            await pilot.pause(0.2)
            assert "must stay good" in status() and not app._notifications and not app.screen.query("Toast")
            # over another screen (help), a notification there; back on the grid, the status line carries it
            await pilot.press("question_mark")
            await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
            screen.notify("a notice from the engine", title="engine", timeout=5)
            await wait_for(pilot, lambda: bool(app._notifications))
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is screen)
            await pilot.pause(0.2)
            assert "engine: a notice from the engine" in status() and not app._notifications

    run(scenario())


def test_the_learning_panel_keeps_the_round_on_the_pages_it_had(tmp_path: Path):
    """Guards the grid's page limit while the panel is open: at 160x48 in half-blocks the 16 images take 2 pages
    while labeling, and as many while learning (before: 4); the limit goes with the panel."""
    folder = make_session(tmp_path / "s", batch_size=16)

    async def scenario():
        async with running_app(folder, "--image-size", "64", "--stage-seconds", "3", size=(160, 48)) as (app, pilot):
            await pilot.pause(0.3)
            screen, grid = app.session_screen, app.session_screen.query_one(ImageGrid)
            assert grid.pages == 2
            # the round's last images still being drawn as it opens: no sampling panel over the grid it shows
            screen.show_progress("sampling", 3, 6, sampling=True)
            await pilot.pause(0.2)
            assert not screen.query_one(TrainingPanel).display and grid.pages == 2
            await label_round_zero(pilot)
            await pilot.press("s", "enter")
            await wait_for(pilot, lambda: screen.controller.phase is Phase.LEARNING)
            panel = screen.query_one(TrainingPanel)
            await wait_for(pilot, lambda: panel.has_report, timeout=30)  # the report's lines too: 8 of the grid's rows
            await pilot.pause(0.5)
            assert panel.display and grid.pages == 2 and grid.layout_plan.rows == 2, grid.layout_plan
            await wait_for(pilot, labeling(app, round_=1), timeout=30)
            await pilot.pause(0.5)
            assert grid._page_limit is None and grid.pages == 2

    run(scenario())


def screen_text(app) -> str:
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def test_zoom_fits_the_screen_with_its_keys_and_overlays_leave_nothing_behind(tmp_path: Path):
    folder = make_session(tmp_path / "s")

    async def scenario():
        async with running_app(folder) as (app, pilot):
            await pilot.press("space", "right", "b", "left")  # a round that can be submitted: its summary opens
            await pilot.pause(0.3)
            before = screen_text(app)
            await pilot.press("enter")
            zoom = app.screen
            await wait_for(pilot, lambda: bool(zoom.query("#zoom-image")) and on_screen(zoom.query_one("#zoom-image")))
            image, frame = zoom.query_one("#zoom-image").region, zoom.query_one("#zoom-frame").region
            inside = zoom.query_one("#zoom-frame").content_region  # within its border
            footer = zoom.query_one("Footer").region
            assert frame.bottom <= footer.y and footer.bottom == SIZE[1]  # the key hint is on screen
            assert inside.contains_region(image) and image.height >= frame.height - 3  # as large as the frame allows, whole
            assert "Close" in screen_text(app) and "Good" in screen_text(app)
            for keys in (("escape",), ("question_mark", "escape"), ("m", "escape"), ("s", "escape")):
                if keys != ("escape",):
                    await pilot.press(keys[0])
                    await pilot.pause(0.2)
                await pilot.press(keys[-1])
                await pilot.pause(0.3)
                assert screen_text(app) == before, f"{keys} left something behind"

    run(scenario())


def test_progress_panel_lists_stages_in_run_order_and_gives_a_total_eta(tmp_path: Path):
    folder = make_session(tmp_path / "s")

    async def scenario():
        async with running_app(folder) as (app, pilot):
            panel = app.session_screen.query_one(TrainingPanel)
            rows = [str(label.render()) for label in panel.query(".stage-name")]
            # a resumed round's replay first, sampling the next round last
            assert rows == ["replaying round", "representation", "policy update", "saving", "sampling"]
            panel.show_report(RoundReport(0, 2, 4, 6, 0.5, seconds={"policy": 60.0, "saving": 5.0, "sampling": 30.0}))
            panel.start("learning from round 1", ("representation", "policy", "saving", "sampling"))
            panel.progress("representation", 0, 10)
            panel.progress("representation", 1, 10)  # the first step, which is not timed
            await pilot.pause(0.5)
            panel.progress("representation", 5, 10)  # half done: 5 more steps, then the other stages' 95 s
            title = str(panel.query_one("#training-title").render())
            assert re.search(r"about 1 min 3[5-9] s left in all", title), title

    run(scenario())


def test_the_second_learning_says_the_time_left_in_all_though_the_report_comes_before_the_sampling(tmp_path: Path):
    """Guards the total time left in the app as the engine runs: its round report comes before the next round is
    drawn, so the report has no sampling time, and the panel times the stages itself as they end. Also guards a
    stage run twice (the encoder trained again) being timed as one, and the replay of a round another engine
    process drew showing its row and counting in the total."""
    folder = make_session(tmp_path / "s")

    async def scenario():
        async with running_app(folder, "--stage-seconds", "0.5") as (app, pilot):
            screen = app.session_screen
            panel = screen.query_one(TrainingPanel)
            title = lambda: str(panel.query_one("#training-title").render())
            await label_round_zero(pilot)
            await pilot.press("s", "enter")
            await wait_for(pilot, lambda: screen.controller.phase is Phase.LEARNING)
            assert "known once a round has been learned" in title(), title()
            await wait_for(pilot, labeling(app, 1))
            await pilot.press("space", "s", "enter")
            await wait_for(pilot, lambda: screen.controller.phase is Phase.LEARNING)
            assert re.search(r"(about .+|under a second) left in all", title()), title()
            await wait_for(pilot, labeling(app, 2))

            now = time.monotonic()
            panel.start("learning from round 2", ("representation",))
            for _ in range(2):  # trained, then trained again straight after
                panel.progress("representation", 0, 4)
                await pilot.pause(0.2)
                panel.progress("representation", 4, 4)
            done_in = lambda stage: float(re.fullmatch(r"done in (\d+\.\d) s", str(panel.query_one(f"#state-{stage}").render()))[1])
            assert 0.4 <= done_in("representation") <= time.monotonic() - now + 0.05

            panel.start("learning from round 2", ("representation", "policy", "saving", "sampling"))
            without_replay = panel.seconds_left(time.monotonic())
            panel.progress("replay", 0, 4)  # not announced: a round another engine process drew, its steps drawn again
            assert panel.query_one("#stage-replay").parent.display
            assert re.search(r"(about .+|under a second) left in all", title()), title()
            assert panel.seconds_left(time.monotonic()) > without_replay + 0.25  # about the last sampling's 0.5 s more
            assert str(panel.query_one("#state-sampling").render()) == "waiting"

    run(scenario())


def test_progress_shows_stages_waiting_running_and_done_and_the_total_from_the_start(tmp_path: Path):
    """Guards the three states of a stage (waiting: no bar; running: a bar and its time left; done: the seconds it
    took), the total time left shown from the learning's start once a round has been timed (for more than one stage),
    and the model's loading said in the title."""
    folder = make_session(tmp_path / "s")

    def state(panel, stage: str) -> tuple[bool, str]:
        return panel.query_one(f"#stage-{stage}").display, str(panel.query_one(f"#state-{stage}").render())

    async def scenario():
        async with running_app(folder) as (app, pilot):
            panel = app.session_screen.query_one(TrainingPanel)
            stages = ("representation", "policy", "saving", "sampling")
            panel.start("learning from round 0", stages)
            title = str(panel.query_one("#training-title").render())
            assert "known once a round has been learned" in title, title  # the first round: nothing to go by yet
            assert all(state(panel, stage) == (False, "waiting") for stage in stages)
            panel.progress("loading", 0, 1)
            assert "loading the model" in str(panel.query_one("#training-title").render())
            panel.progress("loading", 1, 1)
            panel.progress("representation", 0, 10)
            panel.progress("representation", 1, 10)  # the first step, which is not timed
            await pilot.pause(0.3)
            panel.progress("representation", 5, 10)
            shown, text = state(panel, "representation")
            assert shown and re.fullmatch(r"about \d+ s left|under a second left", text), text
            assert state(panel, "policy") == (False, "waiting")
            panel.progress("representation", 10, 10)
            shown, text = state(panel, "representation")
            assert not shown and re.fullmatch(r"done in \d+\.\d s", text), text
            panel.show_report(RoundReport(0, 2, 4, 6, 0.5, seconds={"representation": 20.0, "policy": 60.0, "saving": 5.0,
                                                                    "sampling": 30.0}))
            panel.start("learning from round 1", stages)  # timed last round: the total from the start
            assert "about 1 min 55 s left in all" in str(panel.query_one("#training-title").render())
            panel.start("sampling the images of this round", ("sampling",))  # one stage: its row says its time left
            assert str(panel.query_one("#training-title").render()) == "sampling the images of this round"

    run(scenario())


def test_forcing_a_method_the_terminal_did_not_offer_warns_in_one_line():
    tmux = TerminalReport(answered=True, in_tmux=True, tmux_version="tmux 3.3a")
    kitty = choose(tmux, "kitty")
    assert kitty.method == "kitty" and "inside tmux without allow-passthrough" in kitty.reason and "\n" not in kitty.reason
    xterm = TerminalReport(answered=True, version="XTerm(379)")
    assert "Sixel forced" in choose(xterm, "sixel").reason
    assert choose(TerminalReport(answered=True, sixel=True), "sixel", "0.14.2").reason == ""  # offered: nothing to warn
    damaged = choose(TerminalReport(answered=True, sixel=True), "sixel", "0.12.0").reason  # textual-image 0.12 (Python 3.11)
    assert "colour bands" in damaged and "Python 3.12" in damaged and "\n" not in damaged


SUBMITTED_BADGES = ["✓ good", "✗ not good", "★ best", "✗ not good", "✗ not good", "✗ not good"]


def test_labeled_counts_images_with_a_label_before_and_after_submit(tmp_path: Path):
    """Guards what a submitted round shows while the engine learns from it: every image labeled, and the tiles of
    the unlabeled ones saying "not good", as hero.db now holds them and as a resumed app shows them."""
    folder = make_session(tmp_path / "s")

    def badges(app) -> list[str]:
        grid = app.session_screen.query_one(ImageGrid)
        return [grid.thumbnail(item.id).badge for item in grid.batch.images]

    async def scenario():
        async with running_app(folder, "--stage-seconds", "5") as (app, pilot):
            status = lambda: status_text(app.session_screen)
            await pilot.press("space", "right", "space", "space")  # one good, one not good
            assert "labeled 2/6" in status() and "good 1" in status()
            await pilot.press("right", "b", "s", "enter")  # image 3 the best; images 4 to 6 unlabeled
            await wait_for(pilot, lambda: app.session_screen.controller.phase is Phase.LEARNING)
            assert "labeled 6/6" in status()  # submitted: the unlabeled ones now count as not good
            assert badges(app) == SUBMITTED_BADGES
            await pilot.press("q", "y")
            await wait_for(pilot, lambda: not app.is_running, timeout=10)

    async def resumed():
        async with running_app(folder, "--stage-seconds", "5", labeling_within=None) as (app, pilot):
            await wait_for(pilot, lambda: app.session_screen.controller.phase is Phase.LEARNING)
            assert "labeled 6/6" in status_text(app.session_screen)
            assert badges(app) == SUBMITTED_BADGES
            await pilot.press("q", "y")
            await wait_for(pilot, lambda: not app.is_running, timeout=10)

    run(scenario())
    run(resumed())


def test_status_line_names_the_model_family(tmp_path: Path):
    """Guards the family on the status line (the engine's ready event says it): an SDXL session's line says SDXL."""
    folder = make_session(tmp_path / "s", model="tiny-sdxl")

    async def scenario():
        async with running_app(folder) as (app, _):
            text = status_text(app.screen)
            assert "tiny-sdxl (SDXL)" in text

    run(scenario())


def test_a_grid_built_again_while_it_is_being_built_waits_for_it(tmp_path: Path):
    """Guards ImageGrid against two builds at once (a round shown again while its tiles are still being mounted, as
    a busy machine can order the round's last events): the second waits for the first, so the grid ends with one
    round's tiles, labeled (without the wait: 24 tiles for 12 images, or the first build drawing the badge of a tile
    the second had half removed, NoMatches, and the app stopped)."""
    import asyncio

    from PIL import Image
    from textual.app import App, ComposeResult

    from hero_tui.batch import ImageItem, RoundBatch
    from hero_tui.graphics import widget_class

    paths = []
    for i in range(12):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (64, 64), (20 * i, 0, 0)).save(paths[-1])
    images = tuple(ImageItem(100 + i, 0, i, path, "good" if i == 1 else None, False) for i, path in enumerate(paths))
    batch = RoundBatch(0, "p", False, None, None, images)

    class GridApp(App):
        def compose(self) -> ComposeResult:
            yield ImageGrid(widget_class("halfblock"))

    async def scenario():
        app = GridApp()
        async with app.run_test(size=(160, 48)) as pilot:
            grid = app.query_one(ImageGrid)
            lookup = lambda image_id: ("good" if image_id == 101 else None, False)
            await asyncio.gather(*(grid.show_batch(batch, lookup) for _ in range(3)))
            await pilot.pause()
            assert len(grid.query(Thumbnail)) == len(images)
            assert grid.thumbnail(101).badge == "✓ good"

    run(scenario())


def estimates(reports, total: int, last_seconds: float | None = None) -> list[float | None]:
    """A StageEstimate fed ``reports`` (time, done of ``total``) from the first, as the panel and the commands do."""
    from hero_tui.stages import StageEstimate

    estimate = StageEstimate(reports[0][0], last_seconds)
    return [estimate.update(done, total, when) for when, done in reports]


def test_a_stages_time_left_is_timed_from_the_end_of_its_first_step():
    """Guards the pace behind "about N s left". A stage reports 0 as it starts, and its first step warms up: one of 20
    steps taking 1 s, the others 0.1 s, is not timed (timed, it said 3.4 s left with 1.6 s to go). A stage first seen
    part-way is timed from there, its work so far not taken as done in no time: a policy update of 160 samples first
    seen at 32, then 8 more each 0.3 s, has 120 left at 40: 4.5 s, not 0.9 s; and at its first report nothing is said
    rather than "0 s"."""
    reports = [(0.3 * k, 32 + 8 * k) for k in range(8)]
    shown = estimates(reports, 160)
    assert shown[0] is None  # nothing timed yet: nothing said
    assert shown[1] == pytest.approx(4.5), shown
    assert shown[4] == pytest.approx(3.6), shown  # a steady pace: the time left is the truth all along
    # with the last round's time to go by, the first report says it, scaled to what is left
    assert estimates(reports, 160, last_seconds=10.0)[0] == pytest.approx(8.0)

    warming = [(0.0, 0), (1.0, 1)] + [(1.0 + 0.1 * k, 1 + k) for k in range(1, 20)]  # done at 2.9 s
    for (when, done), left in zip(warming, estimates(warming, 20)):
        assert left is None if done < 2 else left == pytest.approx(2.9 - when), (done, left)


def test_a_stage_slower_than_last_round_is_told_from_its_own_pace_once_a_tenth_is_timed():
    """Guards how far the last round's time is trusted, and the smoothing's reach on a stage of seconds: the last
    round's stage took 2 s, this one takes 4 s (40 steps of 0.1 s: another program took a core meanwhile). Leaning on the last time in proportion to what is left, and smoothed over a
    fixed 5 s, the estimate was 1.9 s short a quarter in and said 0 s from halfway on; now it is within 0.9 s of the
    truth from a quarter in and within 0.3 s from halfway."""
    reports = [(0.1 * k, k) for k in range(1, 40)]  # done at 4.0 s
    for (when, done), left in zip(reports, estimates(reports, 40, last_seconds=2.0)):
        if done >= 10:
            assert left == pytest.approx(4.0 - when, abs=0.9 if done < 20 else 0.3), (done, left)


def test_a_time_left_under_half_a_second_is_not_said_as_0_s():
    from hero_tui.stages import time_left

    assert estimates([(0.0, 0), (1.0, 0)], 0) == [None, None]  # a stage with nothing to count says nothing

    assert time_left(8.2) == "about 8 s left"
    assert time_left(65.0) == "about 1 min 05 s left"
    assert time_left(0.3) == "under a second left"


def test_a_downloads_line_gives_the_total_pace_and_time_left_where_they_are_known():
    """Guards how the panel words a model's download: of the total the hub told, the pace over the download so far
    and the time left; "so far" where no total is told or the bytes passed it; no pace in the first second or while
    it is under a kB/s (no "about 547 min left" from a first tick)."""
    from hero_tui.stages import download_state

    assert download_state(1_300_000_000, 2_100_000_000, 900_000_000, 20.0) == "1.3 GB of 2.1 GB, 45 MB/s, about 18 s left"
    assert download_state(2_100_000_000, 2_100_000_000, 2_000_000_000, 40.0) == "2.1 GB of 2.1 GB, 50 MB/s"
    assert download_state(148_000, 4_000_000, 147_000, 0.5) == "148 kB of 4 MB"
    assert download_state(1_000, 4_000_000, 500, 2.0) == "1 kB of 4 MB"
    assert download_state(1_300_000_000, 0, 900_000_000, 20.0) == "1.3 GB so far, 45 MB/s"
    assert download_state(2_200_000_000, 2_100_000_000, 900_000_000, 20.0) == "2.2 GB so far, 45 MB/s"
