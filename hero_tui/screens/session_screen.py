"""The main screen: a round's images, the person's labels, and the engine between rounds.

The screen lays the session out and turns keys into intents; the session itself (the
engine's lifecycle, the phase, the round and its labels) is a SessionController
(hero_tui.session_controller), which tells this screen what to show through the
SessionView methods below.
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.events import Resize
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Static

from hero_tui import last_place
from hero_tui.batch import ImageItem, RoundBatch, RoundReport
from hero_tui.engine_client import EngineClient
from hero_tui.engine_messages import (
    BatchReady,
    EngineBye,
    EngineError,
    EngineExited,
    EngineNotice,
    EngineReady,
    Exported,
    ImagesArrived,
    MetricsReceived,
    ReportWritten,
    RoundDone,
    StageProgress,
    Submitted,
)
from hero_tui.screens.best_picker_screen import BestPickerScreen
from hero_tui.screens.engine_failed_screen import EngineFailedScreen
from hero_tui.screens.export_screen import ExportScreen
from hero_tui.screens.metrics_screen import MetricsScreen
from hero_tui.screens.quit_confirm_screen import QuitConfirmScreen
from hero_tui.screens.submit_screen import SubmitScreen
from hero_tui.screens.zoom_screen import ZoomScreen
from hero_tui.session_controller import (
    Phase,
    SessionController,
    SubmitStep,
)
from hero_tui.stages import REPORT_STAGE, STAGE_TITLES
from hero_tui.widgets.image_grid import ImageGrid
from hero_tui.widgets.status_bar import StatusBar
from hero_tui.widgets.thumbnail import BADGES, BEST_BADGE
from hero_tui.widgets.training_panel import TrainingPanel

log = logging.getLogger(__name__)

NOTICE_SECONDS = 6.0  # how long a notice stays in the status line unless it says otherwise
MIN_WIDTH = 24  # one tile of about 20 cells
MIN_HEIGHT = 18  # status line, one thumbnail row and the footer
LEARNING_STAGES = ("representation", "policy", "saving", "sampling")
ZOOM_SCREEN = "zoom"
GRID_ACTIONS = ("move", "page", "toggle_good", "best", "undo", "zoom", "submit")  # nothing to act on while the grid is hidden


class SessionScreen(Screen[None]):
    BINDINGS = [
        Binding("left,h", "move(-1, 0)", "Move left", show=False, id="left"),
        Binding("right,l", "move(1, 0)", "Move right", show=False, id="right"),
        Binding("up,k", "move(0, -1)", "Move up", show=False, id="up"),
        Binding("down,j", "move(0, 1)", "Move down", show=False, id="down"),
        Binding("pagedown,right_square_bracket", "page(1)", "Next page", id="next_page"),
        Binding("pageup,left_square_bracket", "page(-1)", "Previous page", id="previous_page"),
        Binding("space", "toggle_good", "Good", id="good"),
        Binding("b", "best", "Best", id="best"),
        Binding("u,backspace", "undo", "Undo", id="undo"),
        Binding("enter", "zoom", "Zoom", id="zoom"),
        Binding("s", "submit", "Submit", id="submit"),
        Binding("m", "metrics", "Metrics", id="metrics"),
        Binding("e", "export", "Export", id="export"),
        Binding("r", "restart_engine", "Restart engine", id="restart_engine"),
    ]

    def __init__(self, session: Path, engine_command: Sequence[str], image_class: type[Widget], graphics_note: str,
                 keys: Mapping[str, str]):
        """``keys``: each binding id's key as the hints name it (keys.key_names, after the [keys] table)."""
        super().__init__()
        self.graphics_note = graphics_note  # why the images are not sharper, shown in the status line
        self.session = Path(session)
        self.engine_command = list(engine_command)
        self.image_class = image_class
        self.controller = SessionController(self.session, self, self._new_client, keys=keys)
        self.told: list[str] = []  # every notice shown, in order
        self._covered_notice: tuple[str, str, str, float] | None = None  # given while covered: text, title, severity, until

    def notify(self, message: str, *, title: str = "", severity: str = "information", timeout: float | None = None,
               markup: bool = True) -> None:
        """Notices go to the status line, under the status, never over the images; they are kept in ``told``.

        While another screen is on top the status line is under it: the zoom says the notice on its title line,
        and the other screens (metrics, a question) in a notification, whose images sit in a frame the
        notification does not reach. Back on this screen, what is still due moves to the status line: a
        notification left over the grid would cover a thumbnail, and send it again as it went."""
        self.told.append(message)
        log.info("notice: %s%s", f"{title}: " if title else "", message)
        seconds = timeout or NOTICE_SECONDS
        if self.app.screen is self:
            self.query_one(StatusBar).show_notice(message, title, severity, seconds)
            return
        self._covered_notice = (message, title, severity, time.monotonic() + seconds)
        if isinstance(self.app.screen, ZoomScreen):
            self.app.screen.show_notice(f"{title}: {message}" if title else message, seconds)
        else:
            super().notify(message, title=title, severity=severity, timeout=seconds, markup=markup)

    def on_screen_resume(self) -> None:
        self.app.clear_notifications()
        if self._covered_notice is not None:
            message, title, severity, until = self._covered_notice
            self._covered_notice = None
            if until > time.monotonic():
                self.query_one(StatusBar).show_notice(message, title, severity, until - time.monotonic())

    def _new_client(self) -> EngineClient:
        return EngineClient(self, self.engine_command, self.session)

    def compose(self) -> ComposeResult:
        yield StatusBar(self.image_class, note=self.graphics_note, id="status")
        yield ImageGrid(self.image_class, id="grid")
        yield TrainingPanel(id="training")
        yield Static("The terminal is too small for one image: make it larger.", id="too-small")
        yield Footer()

    async def on_mount(self) -> None:
        self.query_one(TrainingPanel).display = False
        await self.controller.start()

    # engine events: the controller decides -------------------------------------------

    def on_engine_ready(self, message: EngineReady) -> None:
        self.controller.engine_ready(message)

    async def on_images_arrived(self, message: ImagesArrived) -> None:
        await self.controller.images_arrived(message)

    async def on_batch_ready(self, message: BatchReady) -> None:
        await self.controller.batch_ready(message)

    def on_submitted(self, message: Submitted) -> None:
        self.controller.submitted(message)

    def on_stage_progress(self, message: StageProgress) -> None:
        if message.stage == REPORT_STAGE and isinstance(self.app.screen, MetricsScreen):
            self.app.screen.show_report_progress(message.done, message.total)
        self.controller.stage_progress(message)

    def on_round_done(self, message: RoundDone) -> None:
        self.controller.round_done(message)
        if isinstance(self.app.screen, MetricsScreen):  # the round just learned joins the table
            rounds = self.controller.stored_metrics()
            if rounds is not None:
                self.app.screen.show(rounds)

    def on_engine_error(self, message: EngineError) -> None:
        if message.command == "report" and isinstance(self.app.screen, MetricsScreen):
            self.app.screen.show_report_result(None, message.text)
        self.controller.engine_error(message)

    def on_engine_exited(self, message: EngineExited) -> None:
        self.controller.engine_exited(message)

    def on_exported(self, message: Exported) -> None:
        kohya = [path for path in message.paths if path != message.path]
        also = f"; for ComfyUI and AUTOMATIC1111: {kohya[0]}" if kohya else ""
        self.notify(f"LoRA written to {message.path}{also}", title="exported")

    def on_report_written(self, message: ReportWritten) -> None:
        if isinstance(self.app.screen, MetricsScreen):
            self.app.screen.show_report_result(Path(message.path))
        else:
            self.notify(f"report written to {message.path}", title="report")

    def on_metrics_received(self, message: MetricsReceived) -> None:
        if isinstance(self.app.screen, MetricsScreen):
            self.app.screen.show(message.rounds)
        elif message.rounds:
            last = max(message.rounds)
            self.show_report(RoundReport.from_metrics(last, message.rounds[last]))

    def on_engine_notice(self, message: EngineNotice) -> None:
        self.notify(message.text, title="engine", severity="warning", timeout=10)

    def on_engine_bye(self, message: EngineBye) -> None:
        log.info("engine said bye")

    # keys ----------------------------------------------------------------------------

    async def action_restart_engine(self) -> None:
        await self.controller.restart()

    def quit_session(self) -> None:
        """Stop the engine at a safe point, then leave the app (asking first while the engine learns)."""
        self.controller.quit()

    def action_move(self, dx: int, dy: int) -> None:
        self.query_one(ImageGrid).move(dx, dy)

    def action_page(self, step: int) -> None:
        self.query_one(ImageGrid).turn_page(step)

    def on_image_grid_page_changed(self, message: ImageGrid.PageChanged) -> None:
        self.refresh_status()
        self.refresh_bindings()  # the page keys show only while there is more than one page

    def action_toggle_good(self) -> None:
        item = self._labeling_item()
        if item is not None:
            self.controller.toggle_good(item.id)

    def action_best(self) -> None:
        item = self._labeling_item()
        if item is not None:
            self.controller.choose_best(item.id)

    def action_undo(self) -> None:
        if self._labeling_item() is not None:
            self.controller.undo()

    def action_submit(self) -> None:
        if self._labeling_item() is None:
            return
        step = self.controller.plan_submit()
        batch, labels = self.controller.batch, self.controller.labels
        if step is SubmitStep.CONFIRM:
            best = batch.image(labels.best_id) if labels.best_id is not None else None
            confirm = SubmitScreen(labels.round, labels.counts_line(), labels.best_line(), best, self.image_class,
                                   keys=self.controller.keys)
            self.app.push_screen(confirm, self.controller.confirm_submit)
        elif step is SubmitStep.PICK_BEST:
            good = [item for item in batch.images if labels.label(item.id) == "good"]
            picker = BestPickerScreen(labels.previous_best, good, labels.best_id, self.image_class, labels.problem,
                                      labels.counts_line(), keys=self.controller.keys)
            self.app.push_screen(picker, self.controller.pick_best_and_submit)

    def action_zoom(self) -> None:
        if self.query_one(ImageGrid).cursor_item is None:
            return
        # One zoom screen, kept installed: removing a closed screen makes Textual repaint (and, in a Sixel
        # terminal, send) the whole grid a second time.
        if not self.app.is_screen_installed(ZOOM_SCREEN):
            self.app.install_screen(ZoomScreen(self, self.image_class), ZOOM_SCREEN)
        self.app.push_screen(ZOOM_SCREEN)

    def zoom_view(self) -> tuple[ImageItem, str, str] | None:
        """The zoom view's image (the grid's cursor), its title and its label caption; None when there is none."""
        grid = self.query_one(ImageGrid)
        item = grid.cursor_item
        if item is None or grid.batch is None:
            return None
        label, is_best = self.controller.label_of(item.id)
        caption = BEST_BADGE if is_best else BADGES[label]
        return item, f"round {item.round} · image {item.number} of {grid.batch.total}", caption

    def action_metrics(self) -> None:
        # Read from hero.db, not asked of the engine: it would answer only once the round it learns or draws is done.
        rounds = self.controller.stored_metrics()
        self.app.push_screen(MetricsScreen(self.session, self.controller.write_report, keys=self.controller.keys, rounds=rounds))
        if rounds is None and not self.controller.request_metrics():
            self.notify(self.controller.engine_stopped_note(), severity="warning")

    def action_export(self) -> None:
        self.app.push_screen(ExportScreen(str(self.controller.default_export_path()), keys=self.controller.keys), self._after_export_path)

    def _after_export_path(self, path: str | None) -> None:
        if path is None:
            return
        if not self.controller.export(path):
            self.notify(self.controller.engine_stopped_note(), severity="error")
        else:
            self.notify("exporting… (while the engine learns, it exports after the current stage)")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "restart_engine":
            return self.controller.phase is Phase.FAILED
        if action in GRID_ACTIONS and self.has_class("-too-small"):
            return False
        if action == "page" and self.is_mounted:
            return self.query_one(ImageGrid).pages > 1
        return True

    def _labeling_item(self) -> ImageItem | None:
        """The image under the cursor if labels can be given now; otherwise say why not."""
        reason = self.controller.why_not_labeling()
        if reason is not None:
            self.notify(reason, severity="warning")
            return None
        return self.query_one(ImageGrid).cursor_item

    # SessionView: what the controller asks of this screen ------------------------------

    def phase_changed(self) -> None:
        self.refresh_bindings()
        if self.is_mounted:
            self.refresh_status()

    def grid_round(self) -> int | None:
        grid = self.query_one(ImageGrid)
        return grid.batch.round if grid.batch is not None else None

    async def show_batch(self, batch: RoundBatch) -> None:
        await self.query_one(ImageGrid).show_batch(batch, self.controller.label_of, last_place.load(self.session, batch.round))

    async def add_to_grid(self, batch: RoundBatch) -> None:
        await self.query_one(ImageGrid).add_images(batch, self.controller.label_of)

    async def open_grid(self, then: Callable[[], Awaitable[None]]) -> None:
        if self.query_one(TrainingPanel).display:  # the grid takes the panel's room first: its tiles are then sized once, each image sent once
            self._show_panel(False)
            self.call_after_refresh(then)
        else:
            await then()

    def show_labels(self, touched: list[int]) -> None:
        self.query_one(ImageGrid).refresh_labels(touched, self.controller.label_of)
        self.refresh_status()
        self.refresh_zoom()

    def refresh_zoom(self) -> None:
        """A zoom view on top shows what the grid shows now (labels read back from hero.db, a new batch)."""
        if isinstance(self.app.screen, ZoomScreen):
            self.app.screen.show_cursor_image()

    def show_progress(self, stage: str, done: int, total: int, sampling: bool) -> None:
        panel = self.query_one(TrainingPanel)
        if sampling and not panel.display and self.controller.batch is None:
            # Only before a round has come: once one has (its grid may still be being built), the rest of its
            # images are drawn behind it (the status line counts them); a panel shown again there would take the
            # grid's room with no page limit.
            panel.start("sampling the images of this round", ("sampling",))
            panel.display = True
        if panel.progress(stage, done, total):
            self.query_one(ImageGrid).hold_for_resize()  # a stage's row takes one of the grid's rows

    def show_report(self, report: RoundReport) -> None:
        if self.query_one(TrainingPanel).show_report(report):
            self.query_one(ImageGrid).hold_for_resize()  # the report's lines take the grid's room

    def show_learning(self, round_: int | None, resumed: bool) -> bool:
        panel = self.query_one(TrainingPanel)
        title = f"learning from round {'?' if round_ is None else round_}"
        if resumed:  # the person saw a stage stop when they quit; say why it runs again
            title += (f" again, from its first stage ({STAGE_TITLES[LEARNING_STAGES[0]]}): it was stopped before it "
                      "finished, and a stage stopped midway starts over (your labels are kept)")
        panel.start(title, LEARNING_STAGES)
        self._show_panel(True)
        return panel.has_report

    def show_failure(self, message: str, log_path: str, detail: str, saved_labels: str) -> None:
        self.app.push_screen(EngineFailedScreen(message, log_path, detail, saved_labels, keys=self.controller.keys), self._after_failure)

    async def _after_failure(self, restart: bool | None) -> None:
        if restart:
            await self.controller.restart()

    def dismiss_quit_question(self) -> bool:
        if isinstance(self.app.screen, QuitConfirmScreen):
            self.app.screen.dismiss(QuitConfirmScreen.QUIT_NOW)
            return True
        return False

    def ask_quit(self, stage: str | None, round_: int | None) -> None:
        confirm = QuitConfirmScreen(STAGE_TITLES.get(stage or "", "first"), round_,
                                    f"hero-tui resume {shlex.quote(str(self.session))}", keys=self.controller.keys)
        self.app.push_screen(confirm, self._after_quit_confirm)

    def _after_quit_confirm(self, choice: str | None) -> None:
        if choice == QuitConfirmScreen.QUIT_NOW:
            self.controller.quit_now()
        elif choice == QuitConfirmScreen.QUIT_AFTER_LEARNING:
            self.controller.quit_after_learning()

    def run_quit(self, work: Coroutine[Any, Any, None]) -> None:
        """Stop the engine in the background; the status line, uncovered, counts the wait each second."""
        while self.app.screen is not self and len(self.app.screen_stack) > 1:
            self.app.pop_screen()
        item = self.query_one(ImageGrid).cursor_item
        if item is not None:
            last_place.save(self.session, item.round, item.id)  # a resume opens here
        self.refresh_status()
        self.set_interval(1.0, self.refresh_status)
        self.run_worker(work, exclusive=True, group="quit")

    def exit_app(self, message: str | None) -> None:
        self.app.exit(message)

    # layout ----------------------------------------------------------------------------

    def _show_panel(self, shown: bool) -> None:
        """Show or hide the training panel; the grid's tiles, resized by it, wait off screen until laid out anew.

        Textual paints the grid at its new size before the grid has planned its tiles for it, and once more for
        each step of their new layout; a Sixel or Kitty terminal would get every thumbnail at each paint.
        """
        panel = self.query_one(TrainingPanel)
        if panel.display != shown:
            grid = self.query_one(ImageGrid)
            grid.hold_for_resize()
            grid.keep_pages(shown)  # the panel's room comes out of the tiles' size, not onto more pages
            panel.display = shown

    def _about(self, prompt: str) -> str:
        """The prompt and the model, which says plainly when it is the built-in demo."""
        if self.controller.model == "demo":
            return f"{prompt} · built-in demo model (no CUDA device); pass --model for a real checkpoint"
        if not self.controller.model:
            return prompt
        family = f" ({self.controller.family})" if self.controller.family else ""
        return f"{prompt} · {self.controller.model}{family}"

    def _phase_text(self) -> str:
        return self.controller.phase.value.format(**self.controller.keys)

    def refresh_status(self) -> None:
        batch, labels = self.controller.batch, self.controller.labels
        status = self.query_one(StatusBar)
        quitting = self.controller.quit_status() if self.controller.phase is Phase.QUITTING else None
        if batch is None:
            status.show(round_=None, prompt=self._about(self.controller.prompt), labeled=0, batch_size=0, labels_total=None,
                        good=0, best="–", phase=quitting or self._phase_text())
            return
        size = batch.total
        # Once submitted, every image is labeled (the unlabeled ones count as not good), whether the round was
        # submitted now or before a resume.
        labeled = labels.labeled_count if labels and self.controller.phase is not Phase.LEARNING else size
        grid = self.query_one(ImageGrid)
        keys = self.controller.keys
        page = f"page {grid.page + 1}/{grid.pages} ({keys['previous_page']}/{keys['next_page']})" if grid.pages > 1 else ""
        good = labels.good_count if labels else sum(1 for i in batch.images if i.label == "good")
        best_id = labels.best_id if labels else batch.best_id
        best_item = batch.image(best_id) if best_id is not None else None
        shown_best = best_item or batch.previous_best
        if best_item is None:
            best = "previous" if batch.previous_best else f"not chosen ({keys['best']})"
        elif best_item.round != batch.round:
            best = f"kept from round {best_item.round} (#{best_item.number})"
        else:
            best = f"#{best_item.number}"
        phase = quitting or self._phase_text()
        if batch.coming and self.controller.phase is Phase.LABELING:  # first: the key hints after it repeat the footer
            phase = f"{batch.coming} of {size} images still coming · {phase}"
        status.show(round_=batch.round, prompt=self._about(self.controller.prompt or batch.prompt), labeled=labeled, batch_size=size,
                    labels_total=batch.round * size + labeled, good=good, best=best, phase=phase, page=page)
        # The small copy is for a best whose tile is not on screen (kept from an earlier round, or on another page):
        # beside its starred tile it would only repeat it, and a label key would cost an image.
        on_screen = best_item is not None and grid.is_on_shown_page(best_item.id)
        status.show_best_image(shown_best.path if shown_best and not on_screen else None)

    def on_resize(self, event: Resize) -> None:
        self.query_one(ImageGrid).hold_for_resize()  # before Textual repaints the screen at its new size
        too_small = event.size.width < MIN_WIDTH or event.size.height < MIN_HEIGHT
        if too_small != self.has_class("-too-small"):
            self.set_class(too_small, "-too-small")
            self.refresh_bindings()
