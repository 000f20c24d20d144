"""What `hero-tui start` and `hero-tui resume` do before and around the app.

Creating a session needs no torch: the store writes session.toml and hero.db,
and the engine child process opens the session when the app starts it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from hero_engine.config import HeroConfig
from hero_engine.errors import HeroError
from hero_engine.storage.listing import list_sessions
from hero_engine.storage.lock import SessionLock
from hero_engine.storage.paths import sessions_root
from hero_engine.storage.store import SessionStore, is_session
from hero_tui import recent_sessions, render
from hero_tui.engine_client import worker_command
from hero_tui.user_config import GraphicsSettings, graphics_settings

log = logging.getLogger(__name__)


def ensure_terminal(command: str) -> None:
    """The app needs a keyboard and a screen; a pipe gets a one-line pointer to the headless runner."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise HeroError(f"`hero-tui {command}` needs an interactive terminal; for headless use run `hero-tui run --prompt ...`")


def start(folder: Path, config: HeroConfig, graphics: str | None, device: str | None, dtype: str | None,
          given: Collection[str] = ()) -> None:
    """`hero-tui start`: create the session (refusing a folder that holds one, naming `resume`), then open the app.

    ``given`` names the settings the person set: the engine keeps them when `--model auto` picks the demo model."""
    SessionStore.check_new(folder)
    config.validate()
    ensure_terminal("start")
    settings = read_app_settings()  # a config file the app would refuse leaves no session folder behind
    SessionStore.create(folder, config, given).close()
    run_app(folder, graphics, device, dtype, settings=settings)


def resume(folder: Path | None, graphics: str | None, device: str | None, dtype: str | None) -> None:
    """`hero-tui resume [DIR]`: reopen a session, by default the most recently used one (see most_recent_session)."""
    folder = folder or most_recent_session()
    check_session(folder)
    ensure_terminal("resume")
    run_app(folder, graphics, device, dtype, settings=read_app_settings())


def most_recent_session(root: Path | None = None, registry: Path | None = None) -> Path:
    """The session used last: the latest of its last label or round and the last time the app opened it,
    among the sessions in ``root`` (the user sessions folder) and those the app opened anywhere else."""
    root = sessions_root() if root is None else Path(root)
    uses = recent_sessions.read_uses(registry)
    last_used: dict[Path, float] = {}
    for folder in [root, *(folder for folder in uses if is_session(folder))]:
        for summary in list_sessions(folder):
            key = summary.folder.resolve()
            last_used[key] = max(summary.last_activity, uses.get(key, 0.0), last_used.get(key, 0.0))
    if not last_used:
        raise HeroError(f"no sessions in {root} or opened elsewhere: start one with `hero-tui start --prompt ...`")
    return max(last_used, key=last_used.__getitem__)


def check_session(folder: Path) -> None:
    """One-line errors, before the app opens, for a folder that is not a session, that another process holds
    (SessionLocked), or whose hero.db cannot be used."""
    SessionStore.read_header(folder)
    lock = SessionLock(folder)
    lock.acquire()
    try:
        SessionStore(folder).close()
    finally:
        lock.release()


@dataclass(frozen=True)
class AppSettings:
    """What the user's config file says to the app."""

    graphics: GraphicsSettings
    keymap: dict[str, str]


def read_app_settings() -> AppSettings:
    """The config file's [graphics] and [keys]; a one-line HeroError for anything the app would refuse."""
    from hero_tui.app import binding_scopes
    from hero_tui.keys import load_keymap

    return AppSettings(graphics_settings(), load_keymap(binding_scopes()))


def run_app(folder: Path, graphics: str | None = None, device: str | None = None, dtype: str | None = None,
            engine_command: Sequence[str] | None = None, settings: AppSettings | None = None) -> None:
    """Open the app on a session; returns when the person quits. ``graphics`` None: the config file's, else auto.
    ``settings``: the config file as read_app_settings read it (None: read it now)."""
    from hero_tui.app import HeroApp
    from hero_tui.graphics import assume_truecolor, select_graphics, widget_class

    settings = settings or read_app_settings()
    log_to_file(folder)
    choice = select_graphics(graphics or settings.graphics.method)  # asks the terminal: before the app runs, never for --help
    truecolor = settings.graphics.truecolor
    if truecolor if truecolor is not None else assume_truecolor(choice.report):
        os.environ["COLORTERM"] = "truecolor"  # read by Textual's console when the app starts
    log.info("graphics: %s %s", choice.method, choice.reason)
    recent_sessions.record_use(folder)  # so that `hero-tui resume` finds it wherever it lives
    command = list(engine_command) if engine_command else worker_command(folder, device, dtype)
    app = HeroApp(folder, command, widget_class(choice.method), settings.keymap, graphics_note=choice.reason)
    error = app.run()
    if error:
        raise HeroError(error)
    render.stdout().print(f"session saved: continue with `hero-tui resume {folder}`", soft_wrap=True, markup=False)


def log_to_file(folder: Path) -> Path:
    """The app's own log, <session>/tui.log beside the engine's engine.log: one app holds a session at a time, so
    no two processes share it. Never the terminal, which Textual owns."""
    path = Path(folder) / "tui.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("hero_tui")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return path
