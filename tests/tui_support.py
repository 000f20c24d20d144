"""Shared pieces of the TUI tests: a session folder, the app running on it under Textual's pilot (`running_app`),
the fake engine's command line, store queries."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from textual.pilot import Pilot

from hero_engine.config import HeroConfig
from hero_engine.storage.store import SessionStore
from hero_tui.app import HeroApp
from hero_tui.graphics import widget_class
from hero_tui.session_controller import Phase

FAKE_ENGINE = Path(__file__).with_name("fake_engine.py")
SIZE = (100, 40)


def make_session(folder: Path, batch_size: int = 6, model: str = "fake") -> Path:
    config = HeroConfig(prompt="a red hand", model=model, batch_size=batch_size)
    config.validate()
    SessionStore.create(folder, config).close()
    return folder


def fake_engine(folder: Path, *extra: str) -> list[str]:
    return [sys.executable, str(FAKE_ENGINE), "--session", str(folder), *extra]


def make_app(folder: Path, command: list[str], keymap: dict[str, str] | None = None, graphics_note: str = "") -> HeroApp:
    return HeroApp(folder, command, widget_class("halfblock"), keymap, graphics_note=graphics_note)


def labels(folder: Path, round_: int = 0) -> dict[int, str | None]:
    """idx -> label of a round's images, as the store holds them."""
    with sqlite3.connect(folder / "hero.db") as db:
        return dict(db.execute("SELECT idx, label FROM images WHERE round = ? ORDER BY idx", (round_,)))


def best_idx(folder: Path, round_: int = 0) -> tuple[int, int] | None:
    """(round, idx) of the round's best image, or None."""
    with sqlite3.connect(folder / "hero.db") as db:
        row = db.execute("SELECT i.round, i.idx FROM rounds r JOIN images i ON i.id = r.best_image_id WHERE r.round = ?",
                         (round_,)).fetchone()
    return tuple(row) if row else None


def round_row(folder: Path, round_: int) -> tuple[float | None, float | None] | None:
    """(submitted_at, updated_at) of a round, or None when it does not exist."""
    with sqlite3.connect(folder / "hero.db") as db:
        return db.execute("SELECT submitted_at, updated_at FROM rounds WHERE round = ?", (round_,)).fetchone()


async def wait_for(pilot, condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Let the app run until ``condition`` holds (engine events arrive from another process)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting for the app")
        await pilot.pause(0.05)


def status_text(screen) -> str:
    """What the session screen's status says: its two lines, then its notes or the notice shown in their place."""
    return "\n".join(str(screen.query_one(part).render()) for part in ("#status-text", "#status-notes"))


def on_screen(image) -> bool:
    """An image widget the person sees: laid out with its size and moved in from off screen (the grid and the zoom
    lay a new image out below the screen and move it in on a later refresh, which a loaded machine can delay past
    any fixed pause)."""
    return bool(image.size.area) and 0 <= image.region.y < image.screen.size.height


def labeling(app, round_: int = 0) -> Callable[[], bool]:
    """The round is on screen for labeling, all of its images there."""
    screen = app.session_screen
    return lambda: (screen.controller.phase is Phase.LABELING and screen.controller.batch is not None and screen.controller.batch.round == round_
                    and not screen.controller.batch.coming)


async def quit_app(pilot, app, timeout: float = 20.0) -> None:
    await pilot.press("q")
    await wait_for(pilot, lambda: not app.is_running, timeout=timeout)


@asynccontextmanager
async def running_app(folder: Path, *engine_args: str, engine: list[str] | None = None,
                      keymap: dict[str, str] | None = None, size: tuple[int, int] = SIZE,
                      labeling_within: float | None = 20.0, quit_within: float = 20.0,
                      graphics_note: str = "") -> AsyncIterator[tuple[HeroApp, Pilot]]:
    """The app on the session in ``folder``, run under Textual's pilot: yields ``(app, pilot)``.

    Its engine is the fake engine started with ``engine_args``, or the command ``engine``. The block starts once
    round 0 is on screen for labeling (waited for up to ``labeling_within`` seconds; None: the block starts at once),
    and when it ends without an error the app is quit with q (waited for up to ``quit_within`` seconds), unless the
    block stopped the app itself. ``graphics_note`` is the line the status says about the images' method.
    """
    app = make_app(folder, engine if engine is not None else fake_engine(folder, *engine_args), keymap, graphics_note)
    async with app.run_test(size=size) as pilot:
        if labeling_within is not None:
            await wait_for(pilot, labeling(app), timeout=labeling_within)
        yield app, pilot
        if app.is_running:
            await quit_app(pilot, app, timeout=quit_within)


def notices(app) -> list[str]:
    """Texts of the notices the app showed since the last forget_notices: the session screen's (in its status line),
    and the notifications of the screens on top."""
    return [*app.session_screen.told, *(notification.message for notification in app._notifications)]


def forget_notices(app) -> None:
    app.session_screen.told.clear()
    app.clear_notifications()


def run(coroutine):
    """Run a test's scenario; its return value, if any."""
    return asyncio.run(coroutine)


class TmuxServer:
    """One private tmux server (its own socket) with one pane, named "hero", driven by keys and read as text."""

    def __init__(self, socket: str):
        self.base = ["tmux", "-L", socket]

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.base, "send-keys", "-t", "hero", *keys], check=True)

    def screen(self) -> str:
        return subprocess.run([*self.base, "capture-pane", "-p", "-t", "hero"], capture_output=True, text=True).stdout

    def wait_for(self, *texts: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if all(text in screen for text in texts):
                return screen
            time.sleep(0.2)
        raise AssertionError(f"never saw {texts}; the pane shows:\n{self.screen()}")

    def wait_until_gone(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text not in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never went away; the pane shows:\n{self.screen()}")

    def kill(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True)
