"""One image, as large as the terminal allows, labeled with the grid's own keys.

The zoom view shows the grid's cursor image and acts through the session screen's
own actions, so a label given here takes the same path as one given in the grid
(committed to hero.db first, drawn after) and moving here moves the grid's cursor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Vertical
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Footer, Static

from hero_tui.batch import ImageItem
from hero_tui.keys import QUIT_BINDING
from hero_tui.screens.image_modal_screen import ImageModalScreen
from hero_tui.widgets.image_grid import OFF_SCREEN, show_once_laid_out


class GridScreen(Protocol):
    """The screen whose grid this view zooms into (the session screen, which opens this one)."""

    def zoom_view(self) -> tuple[ImageItem, str, str] | None:
        """The grid's cursor image, its title and its label caption; None when there is none."""

    def action_move(self, dx: int, dy: int) -> None: ...

    def action_toggle_good(self) -> None: ...

    def action_best(self) -> None: ...

    def action_undo(self) -> None: ...


class ZoomScreen(ImageModalScreen[None]):
    # Same ids as the grid's bindings: a key remapped in [keys] is remapped here too.
    BINDINGS = [
        Binding("left,h", "move(-1, 0)", "Previous", id="left"),
        Binding("right,l", "move(1, 0)", "Next", id="right"),
        Binding("up,k", "move(0, -1)", "Row up", show=False, id="up"),
        Binding("down,j", "move(0, 1)", "Row down", show=False, id="down"),
        Binding("space", "toggle_good", "Good", id="good"),
        Binding("b", "best", "Best", id="best"),
        Binding("u,backspace", "undo", "Undo", id="undo"),
        Binding("enter,escape,z", "dismiss", "Close", id="zoom_close"),
        QUIT_BINDING,
    ]

    def __init__(self, grid_screen: GridScreen, image_class: type[Widget]):
        super().__init__()
        self._grid_screen = grid_screen
        self._image_class = image_class
        self._shown_path: Path | None = None
        self._notice = ""  # said on the title line for a few seconds (a notification would cover the image)
        self._notice_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="zoom-frame"):
            # The title and label are a line of their own: on the frame's border they would repaint the whole
            # frame, and in a graphics terminal send the image again, at each move or label.
            yield Static("", id="zoom-title", markup=False)
            yield Center(id="zoom-center")
        yield Footer()

    def on_mount(self) -> None:
        self.show_cursor_image()

    def show_cursor_image(self) -> None:
        """Show the grid's cursor image and its label now (after a move, a label, or a new batch)."""
        view = self._grid_screen.zoom_view()
        if view is None:
            self.dismiss()
            return
        item, title, caption = view
        notice = f"   {self._notice}" if self._notice else ""
        self.query_one("#zoom-title", Static).update(f"{title}  {caption}{notice}", layout=False)
        if item.path != self._shown_path:
            self._shown_path = item.path
            self.run_worker(self._show_image(item.path), group="zoom-image", exclusive=True)

    def show_notice(self, text: str, seconds: float) -> None:
        """A notice on the title line, for ``seconds``."""
        if self._notice_timer is not None:
            self._notice_timer.stop()
        self._notice = text
        self._notice_timer = self.set_timer(seconds, self._clear_notice)
        self.show_cursor_image()

    def _clear_notice(self) -> None:
        self._notice, self._notice_timer = "", None
        if self.is_current:
            self.show_cursor_image()

    async def _show_image(self, path: Path) -> None:
        center = self.query_one("#zoom-center", Center)
        await center.remove_children()
        image = self._image_class(path, id="zoom-image")
        image.styles.offset = (0, OFF_SCREEN)
        await center.mount(image)
        show_once_laid_out(image)

    def on_screen_suspend(self) -> None:
        """Closed or covered: drop the image, so that reopening on another image does not draw this one first."""
        self._shown_path = None
        self._notice = ""  # the session screen's status line says it now, if it is still due
        self.query_one("#zoom-center", Center).remove_children()

    def on_screen_resume(self) -> None:
        """Opened again (the screen is kept between openings): show the grid's cursor image now."""
        if self.is_mounted:
            self.show_cursor_image()

    def action_move(self, dx: int, dy: int) -> None:
        self._grid_screen.action_move(dx, dy)
        self.show_cursor_image()

    # A label given here is drawn by the session screen once hero.db holds it; it then redraws this view.
    def action_toggle_good(self) -> None:
        self._grid_screen.action_toggle_good()

    def action_best(self) -> None:
        self._grid_screen.action_best()

    def action_undo(self) -> None:
        self._grid_screen.action_undo()
