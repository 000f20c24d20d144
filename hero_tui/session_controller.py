"""The session between the engine and the screen: its phase, the commands the engine is sent, what is shown.

The controller starts, restarts and stops the engine child process, takes the
engine's events (hero_engine.protocol) one method each, in the order they come,
and the person's intents that change the session (a label, submit, quit,
restart). From them it decides the phase, the commands to send, and what the
screen shows next, which it asks of a ``SessionView``: the session screen
implements that interface and keeps the layout and the keys. Nothing here
imports Textual, so a test drives a session without a terminal.

Labels are committed to hero.db first and shown after (see hero_tui.feedback for
why the app writes them and not the engine); a key press that cannot be
committed is not shown, and the person is told why in one line.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hero_engine.storage.integrity import CHOOSE_ANOTHER_OUT
from hero_tui.batch import ImageItem, Label, RoundBatch, RoundReport
from hero_tui.feedback import LabelNotSaved, LabelWriter, describe
from hero_tui.labels import DEFAULT_KEYS, LabelRefused, RoundLabels
from hero_tui.stages import DOWNLOADING, LOADING, REPORT_STAGE, STAGE_TITLES

if TYPE_CHECKING:  # the events are Textual messages; the controller only reads their fields
    from hero_tui.engine_messages import (
        BatchReady,
        EngineError,
        EngineExited,
        EngineReady,
        ImagesArrived,
        RoundDone,
        StageProgress,
        Submitted,
    )


class Phase(enum.Enum):
    STARTING = "starting the engine…"
    SAMPLING = "sampling this round's images…"
    LABELING = "labeling: {good} good · {best} best · {submit} submit · {help} keys"  # keys.key_names fill these
    SUBMITTING = "submitting…"
    SYNCING = "catching up with the engine…"
    LEARNING = "learning from your labels (you can still look at the images)"
    FAILED = "the engine stopped: {restart_engine} restarts it"
    QUITTING = "stopping the engine at a safe point…"


class SubmitStep(enum.Enum):
    """What the submit key opens: the round's summary to confirm, or the best-picker (new best or the kept one)."""

    CONFIRM = "confirm"
    PICK_BEST = "pick_best"


NOT_LABELING = {
    Phase.LEARNING: "the engine is learning from the last round; these images are read-only",
    Phase.FAILED: "the engine is not running: press {restart_engine} to restart it",
}
WAIT_FOR_IMAGES = "wait for this round's images"
STOP_SECONDS = 20.0  # the engine's time to stop at a safe point before it is stopped by force
QUIT_AFTER_LEARNING_NOTE = "hero quits when the learning is done and the next images are made ({quit} quits now)"


class EngineLink(Protocol):
    """The engine child process as the controller uses it (hero_tui.engine_client.EngineClient)."""

    log_path: Path

    async def start(self) -> None: ...

    def send(self, cmd: str, **fields: Any) -> int | None: ...

    async def stop(self, timeout: float = 20.0) -> int | None: ...


class SessionView(Protocol):
    """What the controller asks of the screen that shows the session."""

    def phase_changed(self) -> None:
        """The phase changed: the keys on offer and the status line follow it."""

    def notify(self, message: str, *, title: str = "", severity: str = "information",
               timeout: float | None = None) -> None:
        """Tell the person one line."""

    def refresh_status(self) -> None:
        """The status line shows the round, its labels and the phase as they are now."""

    def refresh_zoom(self) -> None:
        """A zoom view on top shows what the grid shows now."""

    def grid_round(self) -> int | None:
        """The round the image grid shows; None before the first."""

    async def show_batch(self, batch: RoundBatch) -> None:
        """Show a round's images in the grid (in place of what it showed)."""

    async def add_to_grid(self, batch: RoundBatch) -> None:
        """Add the images of ``batch`` the grid does not show yet (the round it shows, grown)."""

    async def open_grid(self, then: Callable[[], Awaitable[None]]) -> None:
        """Give the grid the training panel's room, then call ``then`` (once the grid is laid out anew)."""

    def show_labels(self, touched: list[int]) -> None:
        """Draw the labels of these images as they are now (committed to hero.db)."""

    def show_progress(self, stage: str, done: int, total: int, sampling: bool) -> None:
        """A stage's progress; ``sampling``: the first images of a session or of a resume are being drawn."""

    def show_report(self, report: RoundReport) -> None:
        """The last round's figures, in the training panel."""

    def show_learning(self, round_: int | None, resumed: bool) -> bool:
        """Show the learning stages of a round in place of the grid; True when the last round's report is there."""

    def show_failure(self, message: str, log_path: str, detail: str, saved_labels: str) -> None:
        """Say the engine stopped, with the log and what hero.db holds; the person may restart it."""

    def dismiss_quit_question(self) -> bool:
        """If the quit question is open, answer it "quit now" and return True (the quit key pressed twice)."""

    def ask_quit(self, stage: str | None, round_: int | None) -> None:
        """Ask whether to quit now, throwing the running learning stage away, or once it is done."""

    def run_quit(self, work: Coroutine[Any, Any, None]) -> None:
        """Run the shutdown in the background, the only one."""

    def exit_app(self, message: str | None) -> None:
        """Leave the app; ``message``: the one line printed when the session could not be used."""


class SessionController:
    """One session's phase, engine client, round and labels; the screen is told what to show through ``view``."""

    def __init__(self, session: Path, view: SessionView, new_client: Callable[[], EngineLink],
                 label_writer: LabelWriter | None = None, keys: Mapping[str, str] | None = None):
        """``keys``: each binding id's key as hints name it (keys.key_names; default: the app's own keys)."""
        self.session = Path(session)
        self.view = view
        self.keys = dict(keys) if keys is not None else DEFAULT_KEYS
        self._new_client = new_client
        self.client = new_client()
        self.label_writer = label_writer if label_writer is not None else LabelWriter(self.session)
        self.phase = Phase.STARTING
        self.prompt = ""
        self.model = ""
        self.family = ""
        self.batch: RoundBatch | None = None
        self.labels: RoundLabels | None = None
        self.last_error: EngineError | None = None
        self.locked_message: str | None = None  # the session is open elsewhere: printed when the app leaves
        self.learning_stage: str | None = None  # the stage the last progress event named, while learning
        self.engine_stage: str | None = None  # the stage the engine reports running now, in any phase
        self._quit_started: float | None = None
        self._quit_waits_for = ""  # what the engine was doing when the person quit, in words
        self.quitting_after_learning = False  # chosen on the quit question: quit once the next batch is ready

    # engine lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Start the engine and ask for the round hero.db holds."""
        self._set_phase(Phase.STARTING)
        self.last_error = None
        try:
            await self.client.start()
        except OSError as exc:
            self._fail(f"the engine could not start: {exc}")
            return
        self.client.send("propose")

    async def restart(self) -> None:
        """A new engine in place of the one that stopped; nothing while the engine runs."""
        if self.phase is not Phase.FAILED:
            return
        await self.client.stop(timeout=5)
        self.client = self._new_client()
        self.labels = None  # the restarted engine's first images or batch bring the round as hero.db holds it
        await self.start()

    def quit(self) -> None:
        """Stop the engine at a safe point (labels already given reach it first), then leave the app.

        While the engine learns, ask first: quitting throws the running stage away (minutes of work on a
        CPU). The quit key pressed again on that question quits.
        """
        if self.phase is Phase.QUITTING or self.view.dismiss_quit_question():
            return
        if self.phase is Phase.LEARNING:
            self.view.ask_quit(self.learning_stage, self.batch.round if self.batch else None)
            return
        self.quit_now()

    def quit_after_learning(self) -> None:
        """Quit once the running learning is done and saved (the next batch is ready)."""
        self.quitting_after_learning = True
        self.view.notify(QUIT_AFTER_LEARNING_NOTE.format(**self.keys), title="quitting after this learning", timeout=10)

    def quit_now(self) -> None:
        if self.phase is Phase.QUITTING:
            return
        self._quit_started = time.monotonic()
        self._quit_waits_for = self._engine_activity()
        self._set_phase(Phase.QUITTING)
        self.view.run_quit(self._shut_down())

    def quit_status(self) -> str:
        """While quitting: what the app waits for, and how long it has and may still wait."""
        waited = time.monotonic() - (self._quit_started or time.monotonic())
        if not self._quit_waits_for:
            return f"quitting: the engine saves and stops · {waited:.0f} s"
        return (f"quitting: the engine stops {self._quit_waits_for} at its next safe point · {waited:.0f} s "
                f"(stopped by force after {STOP_SECONDS:.0f} s)")

    def _engine_activity(self) -> str:
        """What the engine is busy with, in words; "" when it is waiting for the person."""
        if self.engine_stage is not None:
            return STAGE_TITLES.get(self.engine_stage, self.engine_stage)
        if self.phase is Phase.STARTING:
            return "starting"
        if self.phase in (Phase.SAMPLING, Phase.LEARNING):
            return "sampling" if self.phase is Phase.SAMPLING else "learning"
        return ""

    async def _shut_down(self) -> None:
        await self.client.stop(timeout=STOP_SECONDS)
        self.label_writer.close()
        self.view.exit_app(self.locked_message)

    def _fail(self, message: str, detail: str = "") -> None:
        self._set_phase(Phase.FAILED)
        self.view.show_failure(message, str(self.client.log_path), detail, self.saved_labels())

    def saved_labels(self) -> str:
        """What hero.db holds, read back now: the failure screen never claims more than this."""
        try:
            summary = self.label_writer.summary()
        except LabelNotSaved as exc:
            return f"{exc}: the labels of this round may not be saved."
        labels = self.labels
        if labels is None or summary is None or labels.round != summary.round:
            return describe(summary)
        return describe(summary, labels.labels, labels.best_id)

    # engine events, one method each (hero_engine.protocol) --------------------------

    def engine_ready(self, message: EngineReady) -> None:
        self.prompt = message.prompt
        self.model = message.model
        self.family = message.family
        self._set_phase(Phase.SAMPLING)

    async def images_arrived(self, message: ImagesArrived) -> None:
        """A chunk of a round's images, stored while the rest are drawn: shown, and open to labels, at once."""
        if self.phase is Phase.QUITTING or self.quitting_after_learning or not message.images:
            return
        batch, labels = self.batch, self.labels
        if batch is not None and labels is not None and batch.round == message.round == labels.round and not batch.submitted:
            await self._add_images(message.images)
            return
        best = next((item.id for item in message.images if item.is_best and item.round == message.round), None)
        await self._open_round(RoundBatch(round=message.round, prompt=self.prompt, submitted=False, best_id=best,
                                          previous_best=message.previous_best, images=message.images, size=message.size))

    async def batch_ready(self, message: BatchReady) -> None:
        self.engine_stage = None  # the round is whole: the engine waits for the person
        if self.phase is Phase.QUITTING:
            return
        batch = message.batch
        if batch.submitted:  # resumed after a submit: the learning was not finished
            self.batch = batch
            self.labels = None
            await self.view.show_batch(batch)
            self.view.refresh_zoom()
            self._start_learning(resumed=True)
            return
        if self.quitting_after_learning:  # the learning the person chose to wait for is done and saved
            self.quit_now()
            return
        labels = self.labels
        if self.phase is Phase.LABELING and labels is not None and labels.round == batch.round and self.batch is not None:
            # The streamed round is all there: its last images join the grid; the labels given meanwhile stay.
            self.batch = replace(self.batch, size=batch.size, previous_best=batch.previous_best)
            await self._add_images(batch.images)
            return
        await self._open_round(batch)

    def submitted(self, message: Submitted) -> None:
        labels = self.labels
        if labels is not None and labels.round == message.round:
            self.view.show_labels(labels.submitted())  # the unlabeled tiles now say what the learning counts them as
        self._start_learning()

    def stage_progress(self, message: StageProgress) -> None:
        if message.stage == DOWNLOADING:  # a part of loading, counted in bytes
            self.engine_stage = LOADING
        else:
            self.engine_stage = message.stage if message.done < message.total else None
        if self.phase is Phase.LABELING or message.stage == REPORT_STAGE:
            # The rest of the round being drawn: the status line counts the images still coming. The report's
            # images: the metrics screen counts them, and the panel stays the round's.
            return
        self.view.show_progress(message.stage, message.done, message.total,
                                sampling=self.phase in (Phase.STARTING, Phase.SAMPLING))
        if self.phase is Phase.LEARNING:
            self.learning_stage = message.stage

    def round_done(self, message: RoundDone) -> None:
        self.view.show_report(message.report)

    def engine_error(self, message: EngineError) -> None:
        self.last_error = message
        if self.phase is Phase.QUITTING:
            return
        if message.kind == "locked":
            self.locked_message = message.text
            self.quit()
        elif message.kind in ("oom", "crash"):
            self._fail(message.text)
        elif message.kind == "invalid" and message.command is None:
            pass  # a start-up error: the process exits next, and the exit shows it
        elif message.command in ("propose", "update"):
            self._fail(message.text)
        elif message.command in ("submit", "label", "choose_best"):
            self.view.notify(message.text, title="not accepted", severity="error", timeout=8)
            self._set_phase(Phase.SYNCING)
            self.client.send("propose")  # idempotent: brings back the engine's labels and phase
        elif message.command == "export":  # the app asks for the path in a dialog, not with --out
            text = message.text.replace(CHOOSE_ANOTHER_OUT, f"press {self.keys['export']} and choose another path")
            self.view.notify(text, title="export", severity="error", timeout=8)
        else:
            self.view.notify(message.text, title=message.command or "engine", severity="error", timeout=8)

    def engine_exited(self, message: EngineExited) -> None:
        if self.phase is Phase.QUITTING or self.locked_message:
            return
        if self.phase is Phase.FAILED:
            return
        error = self.last_error.text if self.last_error else f"the engine exited with code {message.returncode}"
        self._fail(error, message.log_tail)

    # rounds -----------------------------------------------------------------------

    async def _open_round(self, batch: RoundBatch) -> None:
        """Show a round for labeling: its labels as hero.db holds them, the grid once the training panel is gone."""
        self.batch = batch
        self.labels = RoundLabels(batch, self.keys)
        await self.view.open_grid(partial(self._show_for_labeling, batch.round))

    async def _add_images(self, items: tuple[ImageItem, ...]) -> None:
        self.batch = self.batch.with_images(items)
        self.labels.add_images(items)
        if self.view.grid_round() == self.batch.round:
            await self.view.add_to_grid(self.batch)
        # else the round is about to be shown, with every image that has arrived by then
        self.view.refresh_status()

    async def _show_for_labeling(self, round_: int) -> None:
        batch = self.batch
        if batch is None or batch.round != round_ or self.phase is Phase.QUITTING:
            return  # a newer round came, or the person quit, meanwhile
        await self.view.show_batch(batch)
        if self.batch is not batch:  # images arrived while the grid was being built
            await self.view.add_to_grid(self.batch)
        self.view.refresh_zoom()
        self._set_phase(Phase.LABELING)

    def _start_learning(self, resumed: bool = False) -> None:
        self.learning_stage = None
        self._set_phase(Phase.LEARNING)
        has_report = self.view.show_learning(self.batch.round if self.batch else None, resumed)
        if not has_report and self.batch is not None and self.batch.round > 0:
            self.client.send("metrics")  # the last round's, e.g. after a resume; answered before the update starts
        self.client.send("update")

    def _set_phase(self, phase: Phase) -> None:
        self.phase = phase
        self.view.phase_changed()

    # labels and submit ------------------------------------------------------------

    def why_not_labeling(self) -> str | None:
        """None when labels can be given now; otherwise the one line that says why not."""
        if self.phase is Phase.LABELING and self.labels is not None:
            return None
        return NOT_LABELING.get(self.phase, WAIT_FOR_IMAGES).format(**self.keys)

    def engine_stopped_note(self) -> str:
        """What a command the stopped engine cannot take is answered with, naming the restart key."""
        return NOT_LABELING[Phase.FAILED].format(**self.keys)

    def label_of(self, image_id: int) -> tuple[Label, bool]:
        """An image's label and whether it is the best, as the open round holds them."""
        if self.labels is not None:
            return self.labels.label(image_id), self.labels.is_best(image_id)
        item = self.batch.image(image_id) if self.batch else None
        if item is None:
            return None, False
        return item.label, item.id == self.batch.best_id

    def toggle_good(self, image_id: int) -> None:
        self._apply(lambda labels: labels.toggle_good(image_id), [image_id])

    def choose_best(self, image_id: int) -> None:
        previous = self.labels.best_id
        self._apply(lambda labels: labels.choose_best(image_id), [i for i in (image_id, previous) if i is not None])

    def undo(self) -> None:
        self._apply(lambda labels: labels.undo(), None)

    def plan_submit(self) -> SubmitStep | None:
        """What the submit key opens now; None when the round cannot be submitted yet, the person told why."""
        batch, labels = self.batch, self.labels
        if batch.coming:
            self.view.notify(f"{batch.coming} of {batch.total} images still coming: label the ones shown meanwhile",
                             title="cannot submit yet", severity="warning")
            return None
        if labels.round == 0 or labels.previous_best is None:
            problem = labels.problem()
            step = SubmitStep.CONFIRM
        else:
            problem = labels.picker_problem()
            step = SubmitStep.PICK_BEST
        if problem:
            self.view.notify(problem, title="cannot submit yet", severity="error")
            return None
        return step

    def confirm_submit(self, submit: bool | None) -> None:
        """The answer to the round's summary: submit if the round is still open and complete."""
        if submit and self.phase is Phase.LABELING and self.labels is not None and self.labels.problem() is None:
            self._submit()

    def pick_best_and_submit(self, chosen: int | None) -> None:
        """The best-picker's choice (None: closed): committed as the round's best, then the round submitted."""
        if chosen is None or self.phase is not Phase.LABELING:
            return
        self.choose_best(chosen)
        if self.labels.problem() is None:
            self._submit()

    def _submit(self) -> None:
        self._set_phase(Phase.SUBMITTING)
        self.client.send("submit")

    def _apply(self, change: Callable[[RoundLabels], Any], touched: list[int] | None) -> None:
        """Make one change, commit it to hero.db, and only then show it; a change not committed is taken back.

        ``touched`` are the images to redraw; None when ``change`` returns them along with its changes (undo).
        """
        labels = self.labels
        before = labels.state()
        try:
            result = change(labels)
        except LabelRefused as refusal:
            self.view.notify(str(refusal), severity="warning")
            return
        changes, touched = result if touched is None else (result, touched)
        try:
            self.label_writer.write(labels.round, changes)
        except LabelNotSaved as failure:
            labels.restore(before)
            self.view.notify(str(failure), title="label not saved", severity="error", timeout=10)
            if failure.refused and self.client.send("propose") is not None:
                self._set_phase(Phase.SYNCING)  # hero.db disagrees with this screen: show what it holds
            return
        self.view.show_labels(touched)

    # requests that change no phase ----------------------------------------------------

    def request_metrics(self) -> bool:
        """Ask the engine for every round's metrics; False when it is not running."""
        return self.client.send("metrics") is not None

    def stored_metrics(self) -> dict[int, dict[str, float | None]] | None:
        """Every learned round's metrics, read from hero.db at once, whatever the engine is doing; None when unreadable."""
        return self.label_writer.metrics()

    def export(self, path: str) -> bool:
        """Ask the engine to write the LoRA to ``path``; False when it is not running."""
        return self.client.send("export", path=str(Path(path).expanduser().resolve())) is not None

    def write_report(self, path: Path) -> bool:
        """Ask the engine to write the HTML report, with its samples, to ``path``; False when it is not running."""
        return self.client.send("report", path=str(Path(path).expanduser().resolve())) is not None

    def default_export_path(self) -> Path:
        return self.session / "exports" / f"lora-round-{self.batch.round if self.batch else 0:04d}.safetensors"
