"""Labels on screen are labels on disk: kill -9 of the engine child or of the app, and failing writes.

The real app (Textual pilot pressing real keys, or the real `hero-tui` under tmux) and
the real engine worker on the tiny model. Every random choice comes from a fixed seed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tui_support import (
    TmuxServer,
    forget_notices,
    labeling,
    notices,
    run,
    running_app,
    wait_for,
)

from hero_engine import protocol
from hero_engine.config import HeroConfig
from hero_engine.errors import SessionLocked
from hero_engine.feedback_rules import FeedbackChange, FeedbackRefused
from hero_engine.storage.labels import open_for_labels, record_feedback
from hero_engine.storage.lock import SessionLock
from hero_engine.storage.store import SessionStore
from hero_tui.engine_client import worker_command
from hero_tui.screens.engine_failed_screen import EngineFailedScreen
from hero_tui.screens.export_screen import ExportScreen
from hero_tui.widgets.image_grid import ImageGrid
from hero_tui.widgets.thumbnail import BADGES, BEST_BADGE

pytestmark = pytest.mark.filterwarnings("ignore:Image.Image.getdata:DeprecationWarning")
log = logging.getLogger(__name__)

BATCH = 8
KEYS = ["space"] * 4 + ["b", "u", "left"] + ["right"] * 3  # label keys, weighted towards giving labels


def tiny_config() -> HeroConfig:
    return HeroConfig(prompt="a red hand", model="tiny", batch_size=BATCH, steps=4, train_timesteps=2,
                      encoder_epochs=4, encoder_triplets=8, sample_batch=BATCH, policy_batch=4)


@pytest.fixture(scope="module")
def sampled_session(tmp_path_factory) -> Path:
    """A session whose round 0 the real worker has sampled (once for the module: each test copies it)."""
    folder = tmp_path_factory.mktemp("sampled") / "s"
    SessionStore.create(folder, tiny_config()).close()
    proc = subprocess.Popen(worker_command(folder, device="cpu"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        proc.stdin.write(protocol.encode({"cmd": "propose", "id": 1}) + "\n")
        proc.stdin.flush()
        events = []
        for line in proc.stdout:  # a shutdown sent before the batch is ready would cancel the sampling
            events.append(protocol.decode(line)["event"])
            if events[-1] in ("batch_ready", "error"):
                break
        assert events[-1] == "batch_ready", events
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    return folder


def copy_session(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".lock"))
    return target


# what hero.db holds ---------------------------------------------------------------------------


def db_badges(folder: Path, round_: int = 0) -> dict[int, str]:
    """idx -> the badge its thumbnail must show, from hero.db."""
    with sqlite3.connect(folder / "hero.db") as db:
        best = db.execute("SELECT best_image_id FROM rounds WHERE round = ?", (round_,)).fetchone()[0]
        rows = db.execute("SELECT id, idx, label FROM images WHERE round = ? ORDER BY idx", (round_,)).fetchall()
    return {idx: BEST_BADGE if image_id == best else BADGES[label] for image_id, idx, label in rows}


def committed_states(folder: Path, round_: int = 0) -> list[dict[int, str]]:
    """Every state of the round's badges that hero.db has committed, in order, replayed from label_events.

    The app writes one key press per transaction, all its rows with one time: one state per time.
    """
    with sqlite3.connect(folder / "hero.db") as db:
        idx_of = dict(db.execute("SELECT id, idx FROM images WHERE round = ?", (round_,)).fetchall())
        events = db.execute("SELECT at, image_id, label FROM label_events ORDER BY id").fetchall()
    labels: dict[int, str | None] = dict.fromkeys(idx_of.values())
    best: int | None = None
    states = []
    for index, (at, image_id, label) in enumerate(events):
        if label == "best":
            best = idx_of.get(image_id)
        elif label == "best-cleared":
            best = None
        elif image_id in idx_of:
            labels[idx_of[image_id]] = label
        if index + 1 == len(events) or events[index + 1][0] != at:
            states.append({idx: BEST_BADGE if idx == best else BADGES[lab] for idx, lab in labels.items()})
    return [{idx: BADGES[None] for idx in idx_of.values()}] + states


def integrity(folder: Path) -> str:
    with sqlite3.connect(folder / "hero.db") as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


def label_count(folder: Path, round_: int = 0) -> int:
    with sqlite3.connect(folder / "hero.db") as db:
        return db.execute("SELECT COUNT(label) FROM images WHERE round = ?", (round_,)).fetchone()[0]


# what the app draws ---------------------------------------------------------------------------


def drawn_badges(app) -> dict[int, str]:
    """idx -> the badge each thumbnail of the grid shows."""
    grid = app.session_screen.query_one(ImageGrid)
    return {item.idx: grid.thumbnail(item.id).badge for item in grid.batch.images}


def app_on_the_worker(folder: Path):
    """The app on the real worker (`running_app`): its round waited for up to 60 s, its quit up to 30 s."""
    return running_app(folder, engine=worker_command(folder, device="cpu"), labeling_within=60, quit_within=30)


async def submit_next_round_and_export(pilot, app, target: Path) -> None:
    """From any labels: image 1 best, image 2 good, image 8 not good; submit, learn, export."""
    screen = app.session_screen
    grid = screen.query_one(ImageGrid)
    ids = [item.id for item in grid.batch.images]
    await pilot.press(*["left"] * BATCH, "b", "right")
    if screen.controller.labels.label(ids[1]) != "good":
        await pilot.press("space")
    await pilot.press(*["right"] * BATCH)
    if screen.controller.labels.label(ids[-1]) == "good":
        await pilot.press("space")
    await pilot.press("s", "enter")
    await wait_for(pilot, labeling(app, 1), timeout=120)
    await pilot.press("e")
    await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen))
    app.screen.query_one("Input").value = str(target)
    await pilot.press("enter")
    await wait_for(pilot, target.exists, timeout=60)


# the store's own rules --------------------------------------------------------------------------


def test_a_key_press_is_recorded_whole_or_not_at_all(sampled_session, tmp_path):
    """Guards the store's feedback write: one press is one transaction; a refused or failed press changes nothing."""
    folder = copy_session(sampled_session, tmp_path / "s")
    store = open_for_labels(folder)
    ids = [image.id for image in store.images(0)]
    record_feedback(store, 0, [FeedbackChange("label", ids[0], "good"), FeedbackChange("best", ids[1])])
    assert db_badges(folder)[0] == BADGES["good"] and db_badges(folder)[1] == BEST_BADGE
    before = db_badges(folder)
    with pytest.raises(FeedbackRefused, match="stay good"):  # the best cannot become bad, even in a longer press
        record_feedback(store, 0, [FeedbackChange("label", ids[2], "good"), FeedbackChange("label", ids[1], "bad")])
    with pytest.raises(FeedbackRefused, match="not one of round 0"):
        record_feedback(store, 0, [FeedbackChange("label", ids[2], "good"), FeedbackChange("label", 10_000, "good")])
    assert db_badges(folder) == before
    store.submit_round(0)
    with pytest.raises(FeedbackRefused, match="no longer open"):
        record_feedback(store, 0, [FeedbackChange("label", ids[3], "good")])
    store.close()
    assert integrity(folder) == "ok"


# kill -9 of the engine child ---------------------------------------------------------------------


def test_killing_the_worker_at_any_moment_loses_no_drawn_label(sampled_session, tmp_path):
    """Guards: a label is drawn only once hero.db holds it, whatever the engine child does.

    Bursts of label keys against the real worker, which is killed (-9) after a burst, within
    100 ms of a key, in the middle of a burst, and after being stopped (SIGSTOP: a busy engine).
    After every key the grid must show exactly what hero.db holds; the failure screen must say
    how many labels hero.db holds; the restarted engine must bring back the same labels; and
    the session must then submit, learn and export, with hero.db intact.
    """
    rng = random.Random(20250611)
    folder = copy_session(sampled_session, tmp_path / "s")
    target = tmp_path / "out" / "lora.safetensors"
    modes = ["after-burst", "stopped", "mid-burst"]
    stopped: list[int] = []

    async def scenario():
        async with app_on_the_worker(folder) as (app, pilot):
            screen = app.session_screen
            for mode in modes:
                pid = screen.controller.client._process.pid
                if mode == "stopped":
                    os.kill(pid, signal.SIGSTOP)
                    stopped.append(pid)
                burst = rng.randint(4, 10)
                kill_after = rng.randrange(burst) if mode == "mid-burst" else burst - 1
                for index in range(burst):
                    await pilot.press(rng.choice(KEYS))
                    assert drawn_badges(app) == db_badges(folder), f"{mode}: key {index} drawn but not in hero.db"
                    if index == kill_after:
                        await asyncio.sleep(rng.uniform(0, 0.1))  # the app keeps running meanwhile
                        os.kill(pid, signal.SIGKILL)
                await wait_for(pilot, lambda: isinstance(app.screen, EngineFailedScreen), timeout=20)
                assert drawn_badges(app) == db_badges(folder), mode
                saved = str(app.screen.query_one("#failed-saved").render())
                count = label_count(folder)
                assert f"{count} label{'' if count == 1 else 's'} of round 0 are saved in hero.db" in saved, saved
                assert "They are the labels on screen" in saved
                await pilot.press("escape", "space")  # no engine: keys give no label
                assert drawn_badges(app) == db_badges(folder)
                await pilot.press("r")
                await wait_for(pilot, labeling(app), timeout=60)
                assert drawn_badges(app) == db_badges(folder), f"{mode}: the restarted engine shows other labels"
            await submit_next_round_and_export(pilot, app, target)

    try:
        run(scenario())
    finally:  # a failed assertion must not leave a stopped worker behind
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert integrity(folder) == "ok"
    assert target.stat().st_size > 0


# failing writes ---------------------------------------------------------------------------------


class FullDisk:
    """Stands in for the app's sqlite3 connection: statements starting with ``fail_on`` raise
    "database or disk is full", as SQLite does when the disk fills; everything else reaches hero.db."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db
        self.fail_on: str | None = None

    def execute(self, sql: str, *args):
        if self.fail_on and sql.lstrip().upper().startswith(self.fail_on):
            raise sqlite3.OperationalError("database or disk is full")
        return self._db.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._db, name)


def test_a_label_that_cannot_be_written_is_not_drawn_and_the_person_is_told(sampled_session, tmp_path):
    """Guards: a failed write (disk full at the label's UPDATE, its event's INSERT, or the COMMIT) is
    not drawn, is told in one line, rolls back the whole key press and loses no earlier label; once
    the disk has room, labeling goes on, and a resumed session shows every label that was drawn."""
    folder = copy_session(sampled_session, tmp_path / "s")

    async def first_visit():
        async with app_on_the_worker(folder) as (app, pilot):
            screen = app.session_screen
            await pilot.press("space", "right", "b", "right", "space", "space")  # good, best, bad
            earlier = db_badges(folder)
            assert drawn_badges(app) == earlier and list(earlier.values())[:3] == [BADGES["good"], BEST_BADGE, BADGES["bad"]]
            disk = FullDisk(screen.controller.label_writer.store.db)
            screen.controller.label_writer.store.db = disk
            for fail_on, key in [("UPDATE", "space"), ("INSERT", "b"), ("COMMIT", "u"), ("COMMIT", "space")]:
                disk.fail_on = fail_on
                forget_notices(app)
                await pilot.press(key)
                assert drawn_badges(app) == earlier, f"{key} drawn although its {fail_on} failed"
                assert db_badges(folder) == earlier
                told = [text for text in notices(app) if "disk is full" in text]
                assert told and "\n" not in told[0], notices(app)
            disk.fail_on = None
            await pilot.press("right", "space")
            assert drawn_badges(app)[3] == "✓ good" == db_badges(folder)[3]

    async def second_visit():
        async with app_on_the_worker(folder) as (app, _):
            assert drawn_badges(app) == db_badges(folder)

    run(first_visit())
    assert list(db_badges(folder).values())[:4] == [BADGES["good"], BEST_BADGE, BADGES["bad"], BADGES["good"]]
    run(second_visit())
    assert integrity(folder) == "ok"


def fill(folder: Path) -> Path:
    """Write a file until the disk under ``folder`` is full."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_on_a_full_disk_a_label_is_drawn_only_if_it_was_written(sampled_session, small_disk):
    """Guards the same promise on a real full disk (tmpfs): every key either commits and is drawn, or is
    not drawn and the person is told; earlier labels stay; once there is room again, labels are saved."""
    folder = copy_session(sampled_session, small_disk / "s")

    async def scenario():
        async with app_on_the_worker(folder) as (app, pilot):
            await pilot.press("space", "right", "b")
            earlier = db_badges(folder)
            filler = fill(small_disk)
            told = 0
            for key in ["right", "space", "right", "space", "u", "right", "b", "space", "right", "space"]:
                forget_notices(app)
                await pilot.press(key)
                assert drawn_badges(app) == db_badges(folder), f"{key} drawn but not in hero.db"
                told += any("disk is full" in text for text in notices(app))
            assert told, "the disk never filled up for hero.db: the test proved nothing"
            log.info("full disk: %d of 10 key presses refused, %s", told, [t for t in notices(app)][-1:])
            assert all(db_badges(folder)[idx] == badge for idx, badge in earlier.items() if badge)
            filler.unlink()
            await pilot.press("right", "space")
            assert drawn_badges(app) == db_badges(folder) and db_badges(folder)[app.session_screen.query_one(ImageGrid).cursor] != BADGES[None]

    run(scenario())
    assert integrity(folder) == "ok"


# kill -9 of the app ------------------------------------------------------------------------------


class Pane(TmuxServer):
    """The real `hero-tui` in a private tmux server; the pane keeps its last screen when the app dies."""

    def __init__(self, socket: str, env: dict[str, str]):
        super().__init__(socket)
        self.env = env

    def tmux(self, *args: str) -> str:
        return subprocess.run([*self.base, *args], check=True, capture_output=True, text=True).stdout

    def open(self, command: str) -> None:
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        # exec: the pane's process is the app itself. No COLUMNS/LINES (a tmux server started without a
        # terminal may hand out 80x24): the app must read the pane's real size.
        line = f"exec env -u COLUMNS -u LINES {exports} {command}"
        if not hasattr(self, "opened"):
            # The pane gets its size just after its first process starts: start the app only once it has it.
            self.tmux("new-session", "-d", "-s", "hero", "-x", "160", "-y", "48", "cat")  # the 8 images on one page
            self.tmux("set-option", "-t", "hero", "remain-on-exit", "on")
            self.opened = True
        self.tmux("respawn-pane", "-k", "-t", "hero", line)

    def pid(self) -> int:
        return int(self.tmux("display-message", "-p", "-t", "hero", "#{pane_pid}").strip())

    def wait_until(self, condition, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if condition(screen):
                return screen
            time.sleep(0.2)
        raise AssertionError(f"the pane never showed that; it shows:\n{self.screen()}")


def badges_on(screen: str) -> dict[int, str]:
    """idx -> the badge each thumbnail shows, read from the terminal's text: a title line of numbers ("▶ 3" at the
    cursor), and each tile's badge below its number, two columns to the left. A tile whose badge line shows no
    label (a notice may cover it) counts as unlabeled."""
    lines = screen.splitlines()
    labels = (BEST_BADGE, BADGES["good"], BADGES["bad"])
    found: dict[int, str] = {}
    for row, line in enumerate(lines):
        if not re.fullmatch(r"\s*(▶ )?\d+(\s+(▶ )?\d+)*\s*", line):
            continue
        for match in re.finditer(r"\d+", line):
            column = max(match.start() - 2, 0)
            below = next((later[column:] for later in lines[row + 1:] if later[column:].startswith(("✓", "✗", "★", "·"))), "")
            found[int(match.group()) - 1] = next((label for label in labels if below.startswith(label)), BADGES[None])
    return found


def wait_until_unlocked(folder: Path, timeout: float = 30) -> None:
    """The engine child sees its stdin close when the app dies, and stops; then the lock is free."""
    deadline = time.monotonic() + timeout
    while True:
        lock = SessionLock(folder)
        try:
            lock.acquire()
            lock.release()
            return
        except SessionLocked:
            if time.monotonic() > deadline:
                raise AssertionError("the engine did not stop after the app was killed") from None
            time.sleep(0.2)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_killing_the_app_at_any_moment_loses_no_drawn_label(sampled_session, tmp_path):
    """Guards: what a killed app last drew is a state hero.db committed (kill -9 within 100 ms of a key).

    The real `hero-tui resume` runs in tmux and is killed after bursts of keys; the last screen
    it drew (tmux keeps it) must match one of the states hero.db committed, replayed from
    label_events. Then the session resumes with every label, submits, learns and exports.
    """
    rng = random.Random(7)
    folder = copy_session(sampled_session, tmp_path / "s")
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_STATE_HOME": str(tmp_path / "state"),
           "XDG_DATA_HOME": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = f"{shlex.quote(sys.executable)} -m hero_tui resume {shlex.quote(str(folder))} --graphics halfblock --device cpu"
    pane = Pane(f"hero-durability-{os.getpid()}", env)
    behind = []
    try:
        for trial in range(3):
            pane.open(command)
            pane.wait_for("labeling", timeout=60)
            pane.wait_until(lambda screen: len(badges_on(screen)) == BATCH, timeout=30)
            time.sleep(0.3)
            app_pid = pane.pid()
            bursts = rng.randint(1, 3)
            for burst in range(bursts):
                keys = rng.choices(["Space", "b", "u", "Left", "Right", "Right", "Space"], k=rng.randint(3, 8))
                for index, key in enumerate(keys):
                    pane.keys(key)
                    if burst == bursts - 1 and index == len(keys) - 1:
                        break
                    time.sleep(rng.uniform(0, 0.03))
                else:
                    time.sleep(rng.uniform(0, 0.15))
            time.sleep(rng.choice([0, rng.uniform(0, 0.1)]))  # right after the last key, or within 100 ms of it
            os.kill(app_pid, signal.SIGKILL)
            wait_until_unlocked(folder)
            time.sleep(0.3)  # tmux reads what the app wrote before it died
            drawn = badges_on(pane.screen())
            assert len(drawn) == BATCH, pane.screen()
            states = committed_states(folder)
            assert drawn in states, f"trial {trial}: the app drew {drawn}; hero.db never held it (last: {states[-1]})"
            behind.append(len(states) - 1 - max(i for i, s in enumerate(states) if s == drawn))
    finally:
        pane.kill()
    log.info("key presses committed but not yet drawn when the app died: %s", behind)
    assert integrity(folder) == "ok"
    target = tmp_path / "out" / "lora.safetensors"

    async def resumed():
        async with app_on_the_worker(folder) as (app, pilot):
            assert drawn_badges(app) == db_badges(folder)
            await submit_next_round_and_export(pilot, app, target)

    run(resumed())
    assert integrity(folder) == "ok"
    assert target.stat().st_size > 0
