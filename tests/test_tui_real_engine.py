"""The app against the real engine child process on the tiny model: a full round, checked in the store."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fake_hub import TINY_REPO, serving_the_tiny_model
from tui_support import best_idx, labels, round_row, run, running_app, wait_for

from hero_engine.storage.store import SessionStore
from hero_tui.engine_client import worker_command
from hero_tui.screens.export_screen import ExportScreen
from hero_tui.session_controller import Phase
from hero_tui.widgets.training_panel import TrainingPanel

pytestmark = pytest.mark.filterwarnings("ignore:Image.Image.getdata:DeprecationWarning")


def test_a_round_with_the_real_worker(tmp_path: Path, tiny_config):
    folder = tmp_path / "s"
    lora, kohya = tmp_path / "out" / "hand.safetensors", tmp_path / "out" / "hand.kohya.safetensors"
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    SessionStore.create(folder, tiny_config).close()

    async def scenario():
        async with running_app(folder, engine=worker_command(folder, device="cpu"), labeling_within=None,
                               quit_within=60) as (app, pilot):
            screen = app.session_screen
            await wait_for(pilot, lambda: screen.controller.phase is Phase.LABELING and not screen.controller.batch.coming, timeout=180)
            assert screen.controller.batch.round == 0 and len(screen.controller.batch.images) == tiny_config.batch_size
            await pilot.press("right", "b", "s")
            await pilot.pause(0.5)
            assert round_row(folder, 0)[0] is None  # refused: no good image besides the best yet
            await pilot.press("left", "space", "s", "enter")  # enter confirms the submit summary
            # a fast update may pass LEARNING between two polls: accept either
            await wait_for(pilot, lambda: screen.controller.phase is Phase.LEARNING or screen.controller.batch.round == 1, timeout=120)
            await wait_for(pilot, lambda: screen.controller.phase is Phase.LABELING and screen.controller.batch.round == 1
                           and not screen.controller.batch.coming, timeout=240)
            # a path that cannot be written is refused in the app's words: it has a dialog, not the command's --out
            await pilot.press("e")
            await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen))
            app.screen.query_one("Input").value = str(blocker / "hand.safetensors")
            await pilot.press("enter")
            await wait_for(pilot, lambda: any("cannot write" in notice for notice in screen.told), timeout=60)
            [refusal] = [notice for notice in screen.told if "cannot write" in notice]
            assert f"({blocker} is a file): press e and choose another path" in refusal, refusal
            # e exports both files, and the notice names both: the kohya one is what ComfyUI and AUTOMATIC1111 load
            await pilot.press("e")
            await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen))
            app.screen.query_one("Input").value = str(lora)
            await pilot.press("enter")
            await wait_for(pilot, lambda: any("LoRA written to" in notice for notice in screen.told), timeout=60)
            [notice] = [notice for notice in screen.told if "LoRA written to" in notice]
            assert f"{lora};" in notice and f"for ComfyUI and AUTOMATIC1111: {kohya}" in notice, notice

    run(scenario())
    given = labels(folder)
    assert [given[i] for i in range(3)] == ["good", "good", "bad"]
    assert best_idx(folder) == (0, 1)
    assert round_row(folder, 0)[1] is not None and round_row(folder, 1) is not None
    assert lora.is_file() and kohya.is_file()


def test_the_first_start_of_a_hub_model_shows_its_download_growing(tmp_path: Path, tiny_config, monkeypatch):
    """Guards what a person sees while a hub model downloads on its first start (a hub on localhost, the real worker):
    the panel says the model is downloading, with the bytes come so far growing of the total the hub tells, and then
    the round's images come."""
    from dataclasses import replace

    folder = tmp_path / "s"
    with serving_the_tiny_model(tmp_path, monkeypatch, delay=2.0):
        SessionStore.create(folder, replace(tiny_config, model=TINY_REPO)).close()
        seen: list[str] = []

        async def scenario():
            async with running_app(folder, engine=worker_command(folder, device="cpu"), labeling_within=None,
                                   quit_within=60) as (app, pilot):
                screen = app.session_screen
                title = lambda: str(screen.query_one(TrainingPanel).query_one("#training-title").render())

                def downloading() -> bool:
                    shown = title()
                    if "downloading it: " in shown and shown not in seen:
                        seen.append(shown)
                    amounts = {re.search(r"it: (\S+ [kMG]B)", text).group(1) for text in seen}
                    return len(amounts) >= 2 and any(" left" in text for text in seen)  # the pace needs a second

                await wait_for(pilot, downloading, timeout=120)
                await wait_for(pilot, lambda: screen.controller.phase is Phase.LABELING and not screen.controller.batch.coming,
                               timeout=180)
                assert len(screen.controller.batch.images) == tiny_config.batch_size

        run(scenario())
    assert all(re.search(r"loading the model… downloading it: \S+ [kMG]B of 4 MB", text) for text in seen), seen
    assert any(re.search(r"B/s, about (\d+ min )?\d+ s left", text) for text in seen), seen  # a second in: pace, time left
