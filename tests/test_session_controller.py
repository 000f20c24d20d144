"""The session controller without a terminal: the engine's events in the order the protocol sends them, the person's
intents, and the phases, engine commands and screen requests that follow (no App, no pilot).

The events are built from protocol lines with hero_tui.engine_messages.parse_event, as the engine client builds them.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hero_tui.engine_messages import EngineExited, parse_event
from hero_tui.feedback import LabelNotSaved
from hero_tui.session_controller import Phase, SessionController, SubmitStep


class FakeClient:
    """The engine client: records the commands sent; sends nothing once stopped."""

    def __init__(self, start_error: OSError | None = None):
        self.log_path = Path("/session/engine.log")
        self.start_error = start_error
        self.running = False
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.stops: list[float] = []

    async def start(self) -> None:
        if self.start_error is not None:
            raise self.start_error
        self.running = True

    def send(self, cmd: str, **fields: Any) -> int | None:
        if not self.running:
            return None
        self.sent.append((cmd, fields))
        return len(self.sent)

    async def stop(self, timeout: float = 20.0) -> int | None:
        self.stops.append(timeout)
        self.running = False
        return 0

    @property
    def commands(self) -> list[str]:
        return [cmd for cmd, _ in self.sent]


class FakeWriter:
    """The app's connection to hero.db: records each committed key press, or refuses it with ``failure``."""

    def __init__(self):
        self.writes: list[tuple[int, list]] = []
        self.failure: LabelNotSaved | None = None
        self.closed = False

    def write(self, round_: int, changes) -> None:
        if self.failure is not None:
            raise self.failure
        if changes:
            self.writes.append((round_, list(changes)))

    def summary(self):
        return None

    def close(self) -> None:
        self.closed = True


class FakeView:
    """The session screen: records what it is asked to show; the training panel is shown or not (``panel``)."""

    def __init__(self):
        self.controller: SessionController | None = None
        self.phases: list[Phase] = []
        self.calls: list[tuple[str, tuple]] = []
        self.notices: list[tuple[str, str, str]] = []
        self.grid: int | None = None  # the round the grid shows
        self.panel = False
        self.has_report = False
        self.after_refresh: list = []  # what waits for the grid to take the panel's room
        self.quit_question = False
        self.quit_work = None
        self.exit_message: str | None | bool = False  # False: the app has not left

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def phase_changed(self) -> None:
        self.phases.append(self.controller.phase)

    def notify(self, message: str, *, title: str = "", severity: str = "information", timeout: float | None = None):
        self.notices.append((message, title, severity))

    def refresh_status(self) -> None:
        self.calls.append(("refresh_status", ()))

    def refresh_zoom(self) -> None:
        self.calls.append(("refresh_zoom", ()))

    def grid_round(self) -> int | None:
        return self.grid

    async def show_batch(self, batch) -> None:
        self.grid = batch.round
        self.calls.append(("show_batch", (batch.round, len(batch.images))))

    async def add_to_grid(self, batch) -> None:
        self.calls.append(("add_to_grid", (batch.round, len(batch.images))))

    async def open_grid(self, then) -> None:
        self.calls.append(("open_grid", ()))
        if self.panel:
            self.panel = False
            self.after_refresh.append(then)
        else:
            await then()

    def show_labels(self, touched) -> None:
        self.calls.append(("show_labels", tuple(touched)))

    def show_progress(self, stage: str, done: int, total: int, sampling: bool) -> None:
        self.calls.append(("show_progress", (stage, done, total, sampling)))

    def show_report(self, report) -> None:
        self.calls.append(("show_report", (report.round,)))

    def show_learning(self, round_, resumed: bool) -> bool:
        self.panel = True
        self.calls.append(("show_learning", (round_, resumed)))
        return self.has_report

    def show_failure(self, message: str, log_path: str, detail: str, saved_labels: str) -> None:
        self.calls.append(("show_failure", (message, log_path, detail, saved_labels)))

    def dismiss_quit_question(self) -> bool:
        if self.quit_question:
            self.quit_question = False
            self.calls.append(("dismiss_quit_question", ()))
            self.controller.quit_now()  # what the question's answer "quit now" does
            return True
        return False

    def ask_quit(self, stage, round_) -> None:
        self.quit_question = True
        self.calls.append(("ask_quit", (stage, round_)))

    def run_quit(self, work) -> None:
        self.quit_work = work

    def exit_app(self, message) -> None:
        self.exit_message = message


def make(start_error: OSError | None = None) -> tuple[SessionController, FakeView, list[FakeClient], FakeWriter]:
    view, clients, writer = FakeView(), [], FakeWriter()

    def new_client() -> FakeClient:
        clients.append(FakeClient(start_error))
        return clients[-1]

    controller = SessionController(Path("/session"), view, new_client, label_writer=writer)
    view.controller = controller
    return controller, view, clients, writer


def image(round_: int, idx: int, label: str | None = None, is_best: bool = False) -> dict[str, Any]:
    return {"id": round_ * 100 + idx, "round": round_, "idx": idx, "path": f"/session/images/{round_}-{idx}.png",
            "label": label, "is_best": is_best}


def event(name: str, command: str | None = None, **fields: Any):
    """One event as the engine client posts it: parsed from its protocol line, ``command`` the one it answers."""
    return parse_event({"event": name, **({"reply_to": 1} if command else {}), **fields}, command)


def images_event(round_: int, idxs, size: int, previous_best: dict | None = None):
    return event("images", "propose", round=round_, size=size, images=[image(round_, i) for i in idxs],
                 previous_best=previous_best)


def batch_event(round_: int, size: int, submitted: bool = False, previous_best: dict | None = None,
                command: str = "propose", labels: dict[int, str] | None = None, best_idx: int | None = None):
    labels = labels or {}
    images = [image(round_, i, labels.get(i), i == best_idx) for i in range(size)]
    return event("batch_ready", command, batch={
        "round": round_, "prompt": "a red hand", "submitted": submitted, "size": size, "previous_best": previous_best,
        "best_id": None if best_idx is None else round_ * 100 + best_idx, "images": images})


def run(coroutine) -> None:
    asyncio.run(coroutine)


async def started(controller: SessionController) -> None:
    await controller.start()
    controller.engine_ready(event("ready", round=0, prompt="a red hand", model="fake", log="/session/engine.log"))


async def labeling_round_zero(controller: SessionController, size: int = 4) -> None:
    await started(controller)
    await controller.batch_ready(batch_event(0, size))


def test_start_asks_for_the_round_and_ready_means_sampling():
    """Start-up: the engine is started, asked for the round hero.db holds (propose), and its ready event moves the
    session on to sampling with the prompt and model it names."""
    controller, view, clients, _ = make()

    async def scenario():
        await controller.start()
        assert controller.phase is Phase.STARTING and clients[0].commands == ["propose"]
        controller.engine_ready(event("ready", round=0, prompt="a red hand", model="demo", log=None))

    run(scenario())
    assert view.phases == [Phase.STARTING, Phase.SAMPLING]
    assert (controller.prompt, controller.model) == ("a red hand", "demo")


def test_an_engine_that_cannot_start_fails_with_the_reason():
    """An engine whose process cannot be started: the failure is shown (with its log and hero.db's labels) and nothing
    is sent to it."""
    controller, view, clients, _ = make(start_error=FileNotFoundError("no such python"))
    run(controller.start())
    assert controller.phase is Phase.FAILED and clients[0].sent == []
    (name, (message, log_path, _, saved)), = view.calls
    assert name == "show_failure" and message == "the engine could not start: no such python"
    assert log_path == "/session/engine.log" and saved.startswith("hero.db holds no round yet")


def test_a_streamed_round_opens_on_its_first_images_and_keeps_its_labels_as_it_grows():
    """Streaming: the first chunk opens the round for labeling at once; a label given then is committed; later chunks
    and batch_ready add images to the same round without reopening it or losing the label."""
    controller, view, _, writer = make()

    async def scenario():
        await started(controller)
        await controller.images_arrived(images_event(0, [0, 1], size=4))
        assert controller.phase is Phase.LABELING and controller.batch.coming == 2
        controller.toggle_good(0)
        await controller.images_arrived(images_event(0, [2], size=4))
        await controller.batch_ready(batch_event(0, 4))

    run(scenario())
    assert view.phases == [Phase.STARTING, Phase.SAMPLING, Phase.LABELING]
    assert view.names().count("open_grid") == 1 and view.names().count("show_batch") == 1
    assert [args for name, args in view.calls if name == "add_to_grid"] == [(0, 3), (0, 4)]
    assert controller.batch.coming == 0 and controller.labels.label(0) == "good"
    assert writer.writes and writer.writes[0][0] == 0 and ("show_labels", (0,)) in view.calls


def test_progress_while_labeling_is_not_shown_but_sampling_progress_is():
    """Stage progress: before the first images it fills the sampling panel; once labeling, the rest of the round being
    drawn is the status line's business, not the panel's."""
    controller, view, _, _ = make()

    async def scenario():
        await started(controller)
        controller.stage_progress(event("progress", stage="sampling", done=1, total=4, round=0))
        await controller.images_arrived(images_event(0, [0, 1], size=4))
        controller.stage_progress(event("progress", stage="sampling", done=3, total=4, round=0))

    run(scenario())
    assert [args for name, args in view.calls if name == "show_progress"] == [("sampling", 1, 4, True)]


def test_a_round_goes_from_labeling_through_submit_and_learning_to_the_next_round():
    """The round trip, in protocol order: labels, submit confirmed (submit sent), submitted (update sent, no metrics for
    round 0), progress (the learning stage is kept), round_done (report shown), the next round's images (shown once
    the training panel has made room) and batch_ready."""
    controller, view, clients, _ = make()
    client = clients[0]

    async def scenario():
        await labeling_round_zero(controller)
        controller.toggle_good(0)
        controller.choose_best(1)
        assert controller.plan_submit() is SubmitStep.CONFIRM
        controller.confirm_submit(True)
        assert controller.phase is Phase.SUBMITTING and client.commands[-1] == "submit"
        controller.submitted(event("submitted", "submit", round=0))
        assert controller.phase is Phase.LEARNING and client.commands[-1] == "update" and "metrics" not in client.commands
        assert ("show_learning", (0, False)) in view.calls
        controller.stage_progress(event("progress", stage="representation", done=1, total=3, round=0))
        assert controller.learning_stage == "representation"
        controller.round_done(event("round_done", "update", report={"round": 0, "good": 2, "bad": 2}))
        await controller.images_arrived(images_event(1, [0, 1], size=4, previous_best=image(0, 1, "good", True)))
        assert controller.phase is Phase.LEARNING and len(view.after_refresh) == 1  # waits for the panel to go
        await view.after_refresh.pop()()
        assert controller.phase is Phase.LABELING and controller.batch.round == 1 and view.grid == 1
        await controller.batch_ready(batch_event(1, 4, previous_best=image(0, 1, "good", True), command="update"))

    run(scenario())
    assert view.phases == [Phase.STARTING, Phase.SAMPLING, Phase.LABELING, Phase.SUBMITTING, Phase.LEARNING,
                           Phase.LABELING]
    assert client.commands == ["propose", "submit", "update"]
    assert ("show_report", (0,)) in view.calls
    assert controller.batch.coming == 0 and controller.plan_submit() is None  # round 1 needs a good and a not-good
    assert controller.phase is Phase.LABELING


def test_a_round_after_the_first_is_submitted_through_the_best_picker():
    """From round 1 on (a previous best exists) the submit key opens the best-picker; its choice is committed as the
    best and then the round is submitted."""
    controller, view, clients, writer = make()
    previous = image(0, 1, "good", True)

    async def scenario():
        await started(controller)
        await controller.batch_ready(batch_event(1, 3, previous_best=previous, labels={0: "good", 1: "good", 2: "bad"}))

    run(scenario())
    assert controller.plan_submit() is SubmitStep.PICK_BEST
    controller.pick_best_and_submit(None)  # the picker closed: nothing happens
    assert controller.phase is Phase.LABELING and "submit" not in clients[0].commands
    controller.pick_best_and_submit(100)
    assert controller.labels.best_id == 100 and writer.writes[-1][0] == 1
    assert controller.phase is Phase.SUBMITTING and clients[0].commands[-1] == "submit"


def test_submit_waits_for_the_images_still_coming_and_for_a_valid_round():
    """Submit is not offered while images are still coming, nor for a round HERO's rules refuse; the person is told
    why, and nothing is sent."""
    controller, view, clients, _ = make()

    async def scenario():
        await started(controller)
        await controller.images_arrived(images_event(0, [0, 1], size=4))

    run(scenario())
    assert controller.plan_submit() is None and view.notices[-1][0].startswith("2 of 4 images still coming")
    run(controller.batch_ready(batch_event(0, 4)))
    assert controller.plan_submit() is None and view.notices[-1][1:] == ("cannot submit yet", "error")
    controller.confirm_submit(True)  # a stale confirmation of an invalid round
    assert controller.phase is Phase.LABELING and clients[0].commands == ["propose"]


def test_resuming_a_submitted_round_restarts_its_learning_and_asks_for_the_last_metrics():
    """A session resumed after a submit: the batch comes back submitted; the learning starts again (said so on the
    panel), the last round's metrics are asked for when the panel has no report, then update."""
    controller, view, clients, _ = make()

    async def scenario():
        await started(controller)
        await controller.batch_ready(batch_event(2, 4, submitted=True, labels={0: "good"}, best_idx=0))

    run(scenario())
    assert controller.phase is Phase.LEARNING and controller.labels is None
    assert ("show_learning", (2, True)) in view.calls and view.grid == 2
    assert clients[0].commands == ["propose", "metrics", "update"]
    assert controller.label_of(200) == ("good", True) and controller.label_of(201) == (None, False)


def test_a_resumed_learning_with_a_report_shown_asks_only_for_update():
    """No metrics request when the training panel already shows the last round's report."""
    controller, view, clients, _ = make()
    view.has_report = True

    async def scenario():
        await started(controller)
        await controller.batch_ready(batch_event(2, 4, submitted=True))

    run(scenario())
    assert clients[0].commands == ["propose", "update"]


def test_a_refused_submit_catches_up_with_the_engine():
    """An error answering submit: the person is told, the session syncs (propose), and the engine's batch brings it
    back to labeling."""
    controller, view, clients, _ = make()

    async def scenario():
        await labeling_round_zero(controller)
        controller.engine_error(event("error", "submit", kind="invalid", message="1 of 4 images still coming"))
        assert controller.phase is Phase.SYNCING and clients[0].commands[-1] == "propose"
        await controller.batch_ready(batch_event(0, 4))

    run(scenario())
    assert view.notices[-1] == ("1 of 4 images still coming", "not accepted", "error")
    assert view.phases[-2:] == [Phase.SYNCING, Phase.LABELING]


@pytest.mark.parametrize("kind, command, fails", [
    ("oom", "update", True),
    ("crash", None, True),
    ("invalid", "propose", True),
    ("cancelled", "update", True),
    ("invalid", None, False),  # a start-up error: the exit that follows shows it
    ("invalid", "export", False),
])
def test_engine_errors_fail_the_session_or_are_told(kind, command, fails):
    """Which errors stop the session (failure screen, phase FAILED) and which are only told, the session going on."""
    controller, view, _, _ = make()
    run(labeling_round_zero(controller))
    controller.engine_error(event("error", command, kind=kind, message="it went wrong", log="/session/engine.log"))
    assert (controller.phase is Phase.FAILED) is fails
    assert ("show_failure" in view.names()) is fails
    if not fails:
        assert controller.phase is Phase.LABELING
        assert bool(view.notices) is (command is not None)


def test_an_engine_exit_shows_the_last_error_once():
    """The engine exits after an error: one failure, with that error's words; an exit with no error names its code
    and shows the log's last lines."""
    controller, view, _, _ = make()
    run(labeling_round_zero(controller))
    controller.engine_error(event("error", "update", kind="crash", message="CUDA error"))
    controller.engine_exited(EngineExited(1, "Traceback line"))
    assert view.names().count("show_failure") == 1 and view.calls[-1][1][0] == "CUDA error"

    controller, view, _, _ = make()
    run(labeling_round_zero(controller))
    controller.engine_exited(EngineExited(1, "RuntimeError: boom"))
    assert controller.phase is Phase.FAILED
    assert view.calls[-1] == ("show_failure", ("the engine exited with code 1", "/session/engine.log",
                                               "RuntimeError: boom", "hero.db holds no round yet: there are no labels to lose."))


def test_restart_only_after_a_failure_with_a_new_engine():
    """r restarts only a stopped engine: the old client is stopped (5 s), a new one started and asked to propose, the
    round's labels dropped until hero.db's come back."""
    controller, view, clients, _ = make()
    run(labeling_round_zero(controller))
    run(controller.restart())
    assert len(clients) == 1 and controller.phase is Phase.LABELING
    controller.engine_exited(EngineExited(1, ""))
    run(controller.restart())
    assert len(clients) == 2 and clients[0].stops == [5] and controller.client is clients[1]
    assert controller.labels is None and controller.phase is Phase.STARTING and clients[1].commands == ["propose"]


def test_a_locked_session_quits_with_its_message():
    """hero.db is open in another hero: the app stops the engine, closes hero.db and leaves with that one line; the
    exit that follows is not a failure."""
    controller, view, clients, writer = make()
    run(controller.start())
    controller.engine_error(event("error", kind="locked", message="the session is open in another hero"))
    assert controller.phase is Phase.QUITTING and view.quit_work is not None
    run(view.quit_work)
    controller.engine_exited(EngineExited(3, ""))
    assert clients[0].stops == [20.0] and writer.closed
    assert view.exit_message == "the session is open in another hero" and "show_failure" not in view.names()


def test_quit_while_learning_asks_and_quit_after_learning_waits_for_the_next_batch():
    """Quitting while the engine learns asks first (naming the running stage and round); "after learning" ignores
    the next round's images and quits when its batch is ready; a quit before anything else quits at once."""
    controller, view, clients, _ = make()

    async def scenario():
        await labeling_round_zero(controller)
        controller.toggle_good(0)
        controller.choose_best(1)
        controller.confirm_submit(True)
        controller.submitted(event("submitted", "submit", round=0))
        controller.stage_progress(event("progress", stage="policy", done=1, total=3, round=0))
        controller.quit()
        assert view.calls[-1] == ("ask_quit", ("policy", 0)) and controller.phase is Phase.LEARNING
        controller.quit_after_learning()
        await controller.images_arrived(images_event(1, [0, 1], size=4))
        assert controller.batch.round == 0 and controller.phase is Phase.LEARNING
        await controller.batch_ready(batch_event(1, 4, command="update"))

    run(scenario())
    assert controller.phase is Phase.QUITTING and view.quit_work is not None
    assert view.notices[-1][1] == "quitting after this learning"
    view.quit_work.close()


def test_the_quit_key_twice_on_the_question_quits_now():
    """The quit question open and quit pressed again: it is answered "quit now" and not asked a second time."""
    controller, view, _, _ = make()
    run(labeling_round_zero(controller))
    controller.toggle_good(0)
    controller.choose_best(1)
    controller.confirm_submit(False)  # the summary closed without submitting
    assert controller.phase is Phase.LABELING
    controller.confirm_submit(True)
    controller.submitted(event("submitted", "submit", round=0))
    controller.quit()
    controller.quit()
    assert view.names().count("ask_quit") == 1 and "dismiss_quit_question" in view.names()
    assert controller.phase is Phase.QUITTING
    view.quit_work.close()


def test_quitting_says_what_the_engine_is_stopping_and_for_how_long_it_may_wait():
    """Guards the quit's answer: the stage the engine reported running (the model's loading too, and its download,
    which has no total), named at once; an engine waiting for the person just saves and stops."""
    controller, view, _, _ = make()
    run(started(controller))
    controller.stage_progress(event("progress", stage="loading", done=0, total=1, round=0))
    controller.stage_progress(event("progress", stage="downloading", done=5_000_000, total=0, round=0))
    controller.quit()
    status = controller.quit_status()
    assert status.startswith("quitting: the engine stops loading the model at its next safe point · 0 s"), status
    assert "stopped by force after 20 s" in status
    view.quit_work.close()

    controller, view, _, _ = make()
    run(labeling_round_zero(controller))
    controller.quit()
    assert controller.quit_status() == "quitting: the engine saves and stops · 0 s"
    view.quit_work.close()


def test_once_quitting_the_engine_events_change_nothing():
    """While stopping at a safe point, late images, batches and errors neither open a round nor show a failure."""
    controller, view, _, _ = make()
    run(started(controller))
    controller.quit()
    assert controller.phase is Phase.QUITTING
    run(controller.images_arrived(images_event(0, [0, 1], size=4)))
    run(controller.batch_ready(batch_event(0, 4)))
    controller.engine_error(event("error", "propose", kind="crash", message="killed"))
    controller.engine_exited(EngineExited(-9, ""))
    assert controller.batch is None and view.phases[-1] is Phase.QUITTING and "show_failure" not in view.names()
    view.quit_work.close()


def test_a_label_not_saved_is_taken_back_and_a_refused_one_resyncs():
    """A key press hero.db did not commit is not drawn and is taken back; one hero.db refused (it holds another round
    state) also asks the engine for the round again (propose) and shows the session as syncing."""
    controller, view, clients, writer = make()
    run(labeling_round_zero(controller))
    writer.failure = LabelNotSaved("not saved: the disk is full")
    controller.toggle_good(0)
    assert controller.labels.label(0) is None and "show_labels" not in view.names()
    assert view.notices[-1] == ("not saved: the disk is full", "label not saved", "error")
    assert controller.phase is Phase.LABELING and clients[0].commands == ["propose"]
    writer.failure = LabelNotSaved("not saved: round 0 is submitted", refused=True)
    controller.choose_best(2)
    assert controller.labels.best_id is None and controller.phase is Phase.SYNCING
    assert clients[0].commands == ["propose", "propose"]


def test_undo_takes_back_the_last_committed_change():
    """Undo commits the reverse change and redraws the images it touched; with nothing to undo the person is told."""
    controller, view, _, writer = make()
    run(labeling_round_zero(controller))
    controller.undo()
    assert view.notices[-1][2] == "warning" and writer.writes == []
    controller.toggle_good(2)
    controller.undo()
    assert controller.labels.label(2) is None and len(writer.writes) == 2 and view.calls[-1] == ("show_labels", (2,))


@pytest.mark.parametrize("phase, reason", [
    (Phase.STARTING, "wait for this round's images"),
    (Phase.LEARNING, "the engine is learning from the last round; these images are read-only"),
    (Phase.FAILED, "the engine is not running: press r to restart it"),
])
def test_labels_are_refused_outside_labeling_with_the_reason(phase, reason):
    """Why the label keys do nothing in each phase that is not labeling."""
    controller, _, _, _ = make()
    controller.phase = phase
    assert controller.why_not_labeling() == reason


def test_requests_to_a_stopped_engine_say_so():
    """Metrics and export report whether the engine took them; export sends an absolute path."""
    controller, _, clients, _ = make()
    assert not controller.request_metrics() and not controller.export("~/lora.safetensors")
    run(controller.start())
    assert controller.request_metrics() and controller.export("lora.safetensors")
    assert clients[0].sent[-1] == ("export", {"path": str(Path("lora.safetensors").resolve())})
    assert controller.default_export_path() == Path("/session/exports/lora-round-0000.safetensors")


def test_the_controller_imports_neither_textual_nor_torch():
    """The controller stays a plain class: importing it loads no Textual (so it runs without a terminal) and no
    torch (the app never does)."""
    code = ("import sys, hero_tui.session_controller; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'textual', 'torch'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert out.strip() == "[]"
