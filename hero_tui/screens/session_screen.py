"""The main screen: a round's images, the person's labels, and the engine between rounds.

It owns the engine client and the app's own connection to hero.db. A key press's
labels are committed to hero.db first and drawn after (see hero_tui.feedback for
why the app writes them and not the engine); a press that cannot be committed is
not drawn, and the person is told why in one line.
"""

from __future__ import annotations

import enum
import logging
import shlex
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.events import Resize
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Static

from hero_tui.batch import ImageItem, Label, RoundBatch, RoundReport
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
    RoundDone,
    StageProgress,
    Submitted,
)
from hero_tui.feedback import LabelNotSaved, LabelWriter, describe
from hero_tui.labels import LabelRefused, RoundLabels
from hero_tui.screens.best_picker_screen import BestPickerScreen
from hero_tui.screens.engine_failed_screen import EngineFailedScreen
from hero_tui.screens.export_screen import ExportScreen
from hero_tui.screens.metrics_screen import MetricsScreen
from hero_tui.screens.quit_confirm_screen import QuitConfirmScreen
from hero_tui.screens.submit_screen import SubmitScreen
from hero_tui.screens.zoom_screen import ZoomScreen
from hero_tui.widgets.image_grid import ImageGrid
from hero_tui.widgets.status_bar import StatusBar
from hero_tui.widgets.thumbnail import BADGES, BEST_BADGE
from hero_tui.widgets.training_panel import STAGES as STAGE_TITLES
from hero_tui.widgets.training_panel import TrainingPanel

log = logging.getLogger(__name__)

MIN_WIDTH = 24  # one tile of about 20 cells
MIN_HEIGHT = 18  # status line, one thumbnail row and the footer
LEARNING_STAGES = ("representation", "policy", "saving", "sampling")
ZOOM_SCREEN = "zoom"
GRID_ACTIONS = ("move", "page", "toggle_good", "best", "undo", "zoom", "submit")  # nothing to act on while the grid is hidden


class Phase(enum.Enum):
    STARTING = "starting the engine…"
    SAMPLING = "sampling this round's images…"
    LABELING = "labeling: space good · b best · s submit · ? keys"
    SUBMITTING = "submitting…"
    SYNCING = "catching up with the engine…"
    LEARNING = "learning from your labels (you can still look at the images)"
    FAILED = "the engine stopped: r restarts it"
    QUITTING = "stopping the engine at a safe point…"


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

    def __init__(self, session: Path, engine_command: Sequence[str], image_class: type[Widget], graphics_note: str = ""):
        super().__init__()
        self.graphics_note = graphics_note  # why the images are not sharper, shown in the status line
        self.session = Path(session)
        self.engine_command = list(engine_command)
        self.image_class = image_class
        self.client = EngineClient(self, self.engine_command, self.session)
        self.label_writer = LabelWriter(self.session)
        self.phase = Phase.STARTING
        self.prompt = ""
        self.model = ""
        self.batch: RoundBatch | None = None
        self.labels: RoundLabels | None = None
        self._last_error: EngineError | None = None
        self._locked_message: str | None = None
        self._learning_stage: str | None = None  # the stage the last progress event named, while learning
        self._quit_after_learning = False  # chosen on the quit question: quit once the next batch is ready

    def compose(self) -> ComposeResult:
        yield StatusBar(self.image_class, note=self.graphics_note, id="status")
        yield ImageGrid(self.image_class, id="grid")
        yield TrainingPanel(id="training")
        yield Static("The terminal is too small for one image: make it larger.", id="too-small")
        yield Footer()

    async def on_mount(self) -> None:
        self.query_one(TrainingPanel).display = False
        await self._start_engine()

    # engine lifecycle -----------------------------------------------------------

    async def _start_engine(self) -> None:
        self._set_phase(Phase.STARTING)
        self._last_error = None
        try:
            await self.client.start()
        except OSError as exc:
            self._show_failure(f"the engine could not start: {exc}")
            return
        self.client.send("propose")

    async def action_restart_engine(self) -> None:
        if self.phase is not Phase.FAILED:
            return
        await self.client.stop(timeout=5)
        self.client = EngineClient(self, self.engine_command, self.session)
        self.labels = None  # the restarted engine's first images or batch bring the round as hero.db holds it
        await self._start_engine()

    def quit_session(self) -> None:
        """Stop the engine at a safe point (labels already given reach it first), then leave the app.

        While the engine learns, ask first: quitting throws the running stage away (minutes of work on a
        CPU). The quit key pressed again on that question quits.
        """
        if self.phase is Phase.QUITTING:
            return
        if isinstance(self.app.screen, QuitConfirmScreen):
            self.app.screen.dismiss(QuitConfirmScreen.QUIT_NOW)
            return
        if self.phase is Phase.LEARNING:
            stage = STAGE_TITLES.get(self._learning_stage or "", "first")
            round_ = self.batch.round if self.batch else None
            confirm = QuitConfirmScreen(stage, round_, f"hero-tui resume {shlex.quote(str(self.session))}")
            self.app.push_screen(confirm, self._after_quit_confirm)
            return
        self._quit_now()

    def _after_quit_confirm(self, choice: str | None) -> None:
        if choice == QuitConfirmScreen.QUIT_NOW:
            self._quit_now()
        elif choice == QuitConfirmScreen.QUIT_AFTER_LEARNING:
            self._quit_after_learning = True
            self.notify("hero quits when the learning is done and the next images are made (q quits now)",
                        title="quitting after this learning", timeout=10)

    def _quit_now(self) -> None:
        if self.phase is Phase.QUITTING:
            return
        self._set_phase(Phase.QUITTING)
        self.run_worker(self._quit(), exclusive=True, group="quit")

    async def _quit(self) -> None:
        await self.client.stop()
        self.label_writer.close()
        self.app.exit(self._locked_message)

    def _show_failure(self, message: str, detail: str = "") -> None:
        self._set_phase(Phase.FAILED)
        log_path = str(self.client.log_path)
        self.app.push_screen(EngineFailedScreen(message, log_path, detail, self._saved_labels()), self._after_failure)

    def _saved_labels(self) -> str:
        """What hero.db holds, read back now: the failure screen never claims more than this."""
        try:
            summary = self.label_writer.summary()
        except LabelNotSaved as exc:
            return f"{exc}: the labels of this round may not be saved."
        labels = self.labels
        if labels is None or summary is None or labels.round != summary.round:
            return describe(summary)
        return describe(summary, labels.labels, labels.best_id)

    async def _after_failure(self, restart: bool | None) -> None:
        if restart:
            await self.action_restart_engine()

    # engine events --------------------------------------------------------------

    def on_engine_ready(self, message: EngineReady) -> None:
        self.prompt = message.prompt
        self.model = message.model
        self._set_phase(Phase.SAMPLING)

    async def on_images_arrived(self, message: ImagesArrived) -> None:
        """A chunk of a round's images, stored while the rest are drawn: shown, and open to labels, at once."""
        if self.phase is Phase.QUITTING or self._quit_after_learning or not message.images:
            return
        batch, labels = self.batch, self.labels
        if batch is not None and labels is not None and batch.round == message.round == labels.round and not batch.submitted:
            await self._add_images(message.images)
            return
        best = next((item.id for item in message.images if item.is_best and item.round == message.round), None)
        await self._open_round(RoundBatch(round=message.round, prompt=self.prompt, submitted=False, best_id=best,
                                    previous_best=message.previous_best, images=message.images, size=message.size))

    async def on_batch_ready(self, message: BatchReady) -> None:
        if self.phase is Phase.QUITTING:
            return
        batch = message.batch
        if batch.submitted:  # resumed after a submit: the learning was not finished
            self.batch = batch
            self.labels = None
            await self.query_one(ImageGrid).show_batch(batch, self._label_of)
            self._refresh_zoom()
            self._start_learning(resumed=True)
            return
        if self._quit_after_learning:  # the learning the person chose to wait for is done and saved
            self._quit_now()
            return
        labels = self.labels
        if self.phase is Phase.LABELING and labels is not None and labels.round == batch.round and self.batch is not None:
            # The streamed round is all there: its last images join the grid; the labels given meanwhile stay.
            self.batch = replace(self.batch, size=batch.size, previous_best=batch.previous_best)
            await self._add_images(batch.images)
            return
        await self._open_round(batch)

    async def _open_round(self, batch: RoundBatch) -> None:
        """Show a round for labeling: its labels as hero.db holds them, the grid once the training panel is gone."""
        self.batch = batch
        self.labels = RoundLabels(batch)
        panel = self.query_one(TrainingPanel)
        if panel.display:  # the grid takes the panel's room first: its tiles are then sized once, each image sent once
            self._show_panel(False)
            self.call_after_refresh(self._show_for_labeling, batch.round)
        else:
            await self._show_for_labeling(batch.round)

    async def _add_images(self, items) -> None:
        self.batch = self.batch.with_images(items)
        self.labels.add_images(items)
        grid = self.query_one(ImageGrid)
        if grid.batch is not None and grid.batch.round == self.batch.round:
            await grid.add_images(self.batch, self._label_of)
        # else the round is about to be shown, with every image that has arrived by then
        self._refresh_status()

    async def _show_for_labeling(self, round_: int) -> None:
        batch = self.batch
        if batch is None or batch.round != round_ or self.phase is Phase.QUITTING:
            return  # a newer round came, or the person quit, meanwhile
        await self.query_one(ImageGrid).show_batch(batch, self._label_of)
        if self.batch is not batch:  # images arrived while the grid was being built
            await self.query_one(ImageGrid).add_images(self.batch, self._label_of)
        self._refresh_zoom()
        self._set_phase(Phase.LABELING)

    def on_submitted(self, message: Submitted) -> None:
        self._start_learning()

    def on_stage_progress(self, message: StageProgress) -> None:
        if self.phase is Phase.LABELING:
            return  # the rest of the round being drawn: the status line counts the images still coming
        panel = self.query_one(TrainingPanel)
        if self.phase in (Phase.STARTING, Phase.SAMPLING) and not panel.display:
            panel.start("sampling the images of this round", ("sampling",))
            panel.display = True
        if panel.progress(message.stage, message.done, message.total):
            self.query_one(ImageGrid).hold_for_resize()  # a stage's row takes one of the grid's rows
        if self.phase is Phase.LEARNING:
            self._learning_stage = message.stage

    def on_round_done(self, message: RoundDone) -> None:
        if self.query_one(TrainingPanel).show_report(message.report):
            self.query_one(ImageGrid).hold_for_resize()  # the report's lines take the grid's room

    def on_exported(self, message: Exported) -> None:
        self.notify(f"LoRA written to {message.path}", title="exported")

    def on_metrics_received(self, message: MetricsReceived) -> None:
        if isinstance(self.app.screen, MetricsScreen):
            self.app.screen.show(message.rounds)
        elif message.rounds:
            last = max(message.rounds)
            if self.query_one(TrainingPanel).show_report(RoundReport.from_metrics(last, message.rounds[last])):
                self.query_one(ImageGrid).hold_for_resize()

    def on_engine_notice(self, message: EngineNotice) -> None:
        self.notify(message.text, title="engine", severity="warning", timeout=10)

    def on_engine_error(self, message: EngineError) -> None:
        self._last_error = message
        if self.phase is Phase.QUITTING:
            return
        if message.kind == "locked":
            self._locked_message = message.text
            self.quit_session()
        elif message.kind in ("oom", "crash"):
            self._show_failure(message.text)
        elif message.kind == "invalid" and message.command is None:
            pass  # a start-up error: the process exits next, and the exit shows it
        elif message.command in ("propose", "update"):
            self._show_failure(message.text)
        elif message.command in ("submit", "label", "choose_best"):
            self.notify(message.text, title="not accepted", severity="error", timeout=8)
            self._set_phase(Phase.SYNCING)
            self.client.send("propose")  # idempotent: brings back the engine's labels and phase
        else:
            self.notify(message.text, title=message.command or "engine", severity="error", timeout=8)

    def on_engine_bye(self, message: EngineBye) -> None:
        log.info("engine said bye")

    def on_engine_exited(self, message: EngineExited) -> None:
        if self.phase is Phase.QUITTING or self._locked_message:
            return
        if self.phase is Phase.FAILED:
            return
        error = self._last_error.text if self._last_error else f"the engine exited with code {message.returncode}"
        self._show_failure(error, message.log_tail)

    # labeling actions -------------------------------------------------------------

    def action_move(self, dx: int, dy: int) -> None:
        self.query_one(ImageGrid).move(dx, dy)

    def action_page(self, step: int) -> None:
        self.query_one(ImageGrid).turn_page(step)

    def on_image_grid_page_changed(self, message: ImageGrid.PageChanged) -> None:
        self._refresh_status()
        self.refresh_bindings()  # the page keys show only while there is more than one page

    def action_toggle_good(self) -> None:
        item = self._labeling_item()
        if item is not None:
            self._apply(lambda labels: labels.toggle_good(item.id), [item.id])

    def action_best(self) -> None:
        item = self._labeling_item()
        if item is None:
            return
        previous = self.labels.best_id
        self._apply(lambda labels: labels.choose_best(item.id), [i for i in (item.id, previous) if i is not None])

    def action_undo(self) -> None:
        if self._labeling_item() is None:
            return
        self._apply(lambda labels: labels.undo(), None)

    def action_submit(self) -> None:
        if self._labeling_item() is None:
            return
        if self.batch.coming:
            self.notify(f"{self.batch.coming} of {self.batch.total} images still coming: label the ones shown meanwhile",
                        title="cannot submit yet", severity="warning")
            return
        labels = self.labels
        if labels.round == 0 or labels.previous_best is None:
            problem = labels.problem()
            if problem:
                self.notify(problem, title="cannot submit yet", severity="error")
                return
            best = self.batch.image(labels.best_id) if labels.best_id is not None else None
            confirm = SubmitScreen(labels.round, labels.counts_line(), labels.best_line(), best, self.image_class)
            self.app.push_screen(confirm, self._after_confirm)
            return
        problem = labels.picker_problem()
        if problem:
            self.notify(problem, title="cannot submit yet", severity="error")
            return
        good = [item for item in self.batch.images if labels.label(item.id) == "good"]
        picker = BestPickerScreen(labels.previous_best, good, labels.best_id, self.image_class, labels.problem,
                                  labels.counts_line())
        self.app.push_screen(picker, self._after_pick)

    def _after_confirm(self, submit: bool | None) -> None:
        if submit and self.phase is Phase.LABELING and self.labels is not None and self.labels.problem() is None:
            self._submit()

    def _after_pick(self, chosen: int | None) -> None:
        if chosen is None or self.phase is not Phase.LABELING:
            return
        previous = self.labels.best_id
        self._apply(lambda labels: labels.choose_best(chosen), [i for i in (chosen, previous) if i is not None])
        if self.labels.problem() is None:
            self._submit()

    def _submit(self) -> None:
        self._set_phase(Phase.SUBMITTING)
        self.client.send("submit")

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
        label, is_best = self._label_of(item.id)
        caption = BEST_BADGE if is_best else BADGES[label]
        return item, f"round {item.round} · image {item.number} of {grid.batch.total}", caption

    def _refresh_zoom(self) -> None:
        """A zoom view on top shows what the grid shows now (labels read back from hero.db, a new batch)."""
        if isinstance(self.app.screen, ZoomScreen):
            self.app.screen.show_cursor_image()

    def action_metrics(self) -> None:
        self.app.push_screen(MetricsScreen())
        if self.client.send("metrics") is None:
            self.notify("the engine is not running: press r to restart it", severity="warning")

    def action_export(self) -> None:
        default = self.session / "exports" / f"lora-round-{self.batch.round if self.batch else 0:04d}.safetensors"
        self.app.push_screen(ExportScreen(str(default)), self._after_export_path)

    def _after_export_path(self, path: str | None) -> None:
        if path is None:
            return
        if self.client.send("export", path=str(Path(path).expanduser().resolve())) is None:
            self.notify("the engine is not running: press r to restart it", severity="error")
        else:
            self.notify("exporting… (while the engine learns, it exports after the current stage)")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "restart_engine":
            return self.phase is Phase.FAILED
        if action in GRID_ACTIONS and self.has_class("-too-small"):
            return False
        if action == "page" and self.is_mounted:
            return self.query_one(ImageGrid).pages > 1
        return True

    # helpers ------------------------------------------------------------------------

    def _labeling_item(self) -> ImageItem | None:
        """The image under the cursor if labels can be given now; otherwise say why not."""
        if self.phase is Phase.LABELING and self.labels is not None:
            return self.query_one(ImageGrid).cursor_item
        reasons = {
            Phase.LEARNING: "the engine is learning from the last round; these images are read-only",
            Phase.FAILED: "the engine is not running: press r to restart it",
        }
        self.notify(reasons.get(self.phase, "wait for this round's images"), severity="warning")
        return None

    def _apply(self, change, touched: list[int] | None) -> None:
        """Make one change, commit it to hero.db, and only then draw it; a change not committed is taken back.

        ``touched`` are the images to redraw; None when ``change`` returns them along with its changes (undo).
        """
        labels = self.labels
        before = labels.state()
        try:
            result = change(labels)
        except LabelRefused as refusal:
            self.notify(str(refusal), severity="warning")
            return
        changes, touched = result if touched is None else (result, touched)
        try:
            self.label_writer.write(labels.round, changes)
        except LabelNotSaved as failure:
            labels.restore(before)
            self.notify(str(failure), title="label not saved", severity="error", timeout=10)
            if failure.refused and self.client.send("propose") is not None:
                self._set_phase(Phase.SYNCING)  # hero.db disagrees with this screen: show what it holds
            return
        self._show_labels(touched)

    def _show_labels(self, touched: list[int]) -> None:
        self.query_one(ImageGrid).refresh_labels(touched, self._label_of)
        self._refresh_status()
        self._refresh_zoom()

    def _label_of(self, image_id: int) -> tuple[Label, bool]:
        if self.labels is not None:
            return self.labels.label(image_id), self.labels.is_best(image_id)
        item = self.batch.image(image_id) if self.batch else None
        if item is None:
            return None, False
        return item.label, item.id == self.batch.best_id

    def _start_learning(self, resumed: bool = False) -> None:
        self._learning_stage = None
        self._set_phase(Phase.LEARNING)
        panel = self.query_one(TrainingPanel)
        title = f"learning from round {self.batch.round if self.batch else '?'}"
        if resumed:  # the person saw a stage stop when they quit; say why it runs again
            title += (f" again, from its first stage ({STAGE_TITLES[LEARNING_STAGES[0]]}): it was stopped before it "
                      "finished, and a stage stopped midway starts over (your labels are kept)")
        panel.start(title, LEARNING_STAGES)
        self._show_panel(True)
        if not panel.has_report and self.batch is not None and self.batch.round > 0:
            self.client.send("metrics")  # the last round's, e.g. after a resume; answered before the update starts
        self.client.send("update")

    def _show_panel(self, shown: bool) -> None:
        """Show or hide the training panel; the grid's tiles, resized by it, wait off screen until laid out anew.

        Textual paints the grid at its new size before the grid has planned its tiles for it, and once more for
        each step of their new layout; a Sixel or Kitty terminal would get every thumbnail at each paint.
        """
        panel = self.query_one(TrainingPanel)
        if panel.display != shown:
            self.query_one(ImageGrid).hold_for_resize()
            panel.display = shown

    def _set_phase(self, phase: Phase) -> None:
        self.phase = phase
        self.refresh_bindings()
        if self.is_mounted:
            self._refresh_status()

    def _about(self, prompt: str) -> str:
        """The prompt and the model, which says plainly when it is the built-in demo."""
        if self.model == "demo":
            return f"{prompt} · built-in demo model (no CUDA device); pass --model for a real checkpoint"
        return f"{prompt} · {self.model}" if self.model else prompt

    def _refresh_status(self) -> None:
        batch, labels = self.batch, self.labels
        status = self.query_one(StatusBar)
        if batch is None:
            status.show(round_=None, prompt=self._about(self.prompt), labeled=0, batch_size=0, labels_total=None,
                        good=0, best="–", phase=self.phase.value)
            return
        size = batch.total
        # Once submitted, every image is labeled (the unlabeled ones count as not good), whether the round was
        # submitted now or before a resume.
        labeled = labels.labeled_count if labels and self.phase is not Phase.LEARNING else size
        grid = self.query_one(ImageGrid)
        page = f"page {grid.page + 1}/{grid.pages} (pgup/pgdn)" if grid.pages > 1 else ""
        good = labels.good_count if labels else sum(1 for i in batch.images if i.label == "good")
        best_id = labels.best_id if labels else batch.best_id
        best_item = batch.image(best_id) if best_id is not None else None
        shown_best = best_item or batch.previous_best
        if best_item is None:
            best = "previous" if batch.previous_best else "not chosen (b)"
        elif best_item.round != batch.round:
            best = f"kept from round {best_item.round} (#{best_item.number})"
        else:
            best = f"#{best_item.number}"
        phase = self.phase.value
        if batch.coming and self.phase is Phase.LABELING:
            phase += f" · {batch.coming} of {size} images still coming"
        status.show(round_=batch.round, prompt=self._about(self.prompt or batch.prompt), labeled=labeled, batch_size=size,
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
