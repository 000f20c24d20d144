"""The Textual app: one SessionScreen over the engine child process, keys from the user's keymap."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from textual.app import App
from textual.await_complete import AwaitComplete
from textual.binding import Binding
from textual.driver import Driver
from textual.widget import Widget

from hero_tui import layout_record
from hero_tui.keys import key_names
from hero_tui.screens.best_picker_screen import BestPickerScreen
from hero_tui.screens.engine_failed_screen import EngineFailedScreen
from hero_tui.screens.export_screen import ExportScreen
from hero_tui.screens.help_screen import HelpScreen
from hero_tui.screens.metrics_screen import MetricsScreen
from hero_tui.screens.quit_confirm_screen import QuitConfirmScreen
from hero_tui.screens.session_screen import SessionScreen
from hero_tui.screens.submit_screen import SubmitScreen
from hero_tui.screens.zoom_screen import ZoomScreen

# Each screen, by the name a person knows it by (in a refused [keys] table's error).
_SCREENS = {"the grid": SessionScreen, "the zoom": ZoomScreen, "the best-picker": BestPickerScreen, "the help": HelpScreen,
            "the metrics": MetricsScreen, "the export prompt": ExportScreen, "the engine-failed screen": EngineFailedScreen,
            "the submit summary": SubmitScreen, "the quit question": QuitConfirmScreen}

POP_REPAINT_WAIT = 0.5  # seconds a closed screen's repaint waits at most for the screen it uncovers to resume

APP_BINDINGS = [
    Binding("q", "quit_session", "Quit", id="quit"),  # modal screens list keys.QUIT_BINDING
    Binding("question_mark", "help", "Keys", id="help"),
    Binding("ctrl+c", "quit_session", "Quit", show=False, priority=True, id="interrupt"),
]


def binding_scopes() -> dict[str, list[Binding]]:
    """Each screen's name and the bindings that answer keys there: its own, then the app's (a [keys] table remaps their ids)."""
    return {name: [*screen.BINDINGS, *APP_BINDINGS] for name, screen in _SCREENS.items()}


class HeroApp(App[str | None]):
    """Returns None on a normal quit, or a one-line message when the session could not be used."""

    CSS_PATH = "app.tcss"
    TITLE = "hero"
    BINDINGS = APP_BINDINGS
    ENABLE_COMMAND_PALETTE = False

    def __init__(self, session: Path, engine_command: Sequence[str], image_class: type[Widget],
                 keymap: dict[str, str] | None = None, graphics_note: str = ""):
        super().__init__()
        self._user_keymap = dict(keymap or {})
        self.session_screen = SessionScreen(session, engine_command, image_class, graphics_note,
                                            key_names(binding_scopes(), self._user_keymap))

    def get_driver_class(self) -> type[Driver]:
        """Textual's driver; in a POSIX terminal one that never reads a terminal's late reply as keys."""
        driver = super().get_driver_class()
        if driver.__name__ != "LinuxDriver":  # Windows, or one named by TEXTUAL_DRIVER
            return driver
        from hero_tui.terminal_input import ReplyFilteringDriver
        return ReplyFilteringDriver

    def on_mount(self) -> None:
        self.set_keymap(self._user_keymap)
        self.push_screen(self.session_screen)
        path = layout_record.layout_file()
        if path is not None:  # for the real-terminal tests: where each image is drawn
            self.set_interval(layout_record.INTERVAL, lambda: layout_record.write(self, path))

    def pop_screen(self) -> AwaitComplete:
        """Close the top screen with one repaint of the screen it uncovers.

        Textual repaints that screen when it resumes, and again once a closed screen that is not installed has
        been removed; the two may fall in separate frames, and in a Sixel terminal each repaint sends every
        image on the screen again. Repaints wait until both are done.
        """
        batch = self.batch_update()
        batch.__enter__()
        try:
            popped = super().pop_screen()
        except BaseException:
            batch.__exit__(None, None, None)
            raise
        resumed = self.screen

        async def repaint_once() -> None:
            try:
                await popped
                handled = asyncio.Event()
                if resumed.call_later(handled.set):  # queued after its resume event
                    await asyncio.wait_for(handled.wait(), POP_REPAINT_WAIT)
            except asyncio.TimeoutError:
                pass
            finally:
                batch.__exit__(None, None, None)

        return AwaitComplete(repaint_once()).call_next(self)

    def action_quit_session(self) -> None:
        self.session_screen.quit_session()

    async def action_quit(self) -> None:
        """Textual's own quit keys stop the engine at a safe point too."""
        self.session_screen.quit_session()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen.active_bindings))
