"""The engine as a child process: ``python -m hero_engine.worker --session DIR [--device D] [--dtype T]``.

It owns one session and speaks the JSON-lines protocol written down in
:mod:`hero_engine.protocol`: commands on stdin, events on stdout, logs in
``DIR/engine.log``. A reader thread takes ``cancel`` and ``shutdown`` at once;
the main thread runs every other command, one at a time.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from hero_engine import protocol
from hero_engine.errors import HeroError, OutOfMemory, SessionLocked, StageCancelled
from hero_engine.reporting import html_report, session_record
from hero_engine.storage.store import is_session

log = logging.getLogger("hero_engine.worker")  # not __main__ under python -m

LOG_NAME = "engine.log"
PROGRESS_INTERVAL = 0.05  # seconds between progress events of one stage (at most ~20 a second)
EXIT_INVALID = 2
EXIT_CRASH = 1
STAGED = ("propose", "update")  # commands that run long stages, which cancel and shutdown stop
REPORT_SAMPLES = 4  # image pairs, tuned against base, in a report the app asks for


class Channel:
    """Writes events, one JSON line each, from any thread."""

    def __init__(self, out: TextIO, log_path: Path):
        self._out = out
        self._lock = threading.Lock()
        self.log_path = log_path

    def emit(self, event: str, **fields: Any) -> None:
        line = protocol.encode({"event": event, **fields})
        with self._lock:
            try:
                self._out.write(line + "\n")
                self._out.flush()
            except (BrokenPipeError, ValueError):
                log.warning("the front end is gone; dropped event %s", event)

    def error(self, kind: str, message: str, reply: dict[str, Any] | None = None) -> None:
        log.info("error %s: %s", kind, message)
        self.emit("error", **(reply or {}), kind=kind, message=message, log=str(self.log_path))


class Throttle:
    """Progress events for one command: the first and last tick of each stage, and at most one per interval between."""

    def __init__(self, channel: Channel, session):
        self._channel = channel
        self._session = session
        self._stage: str | None = None
        self._last = 0.0
        self._round: int | None = None
        self._command_thread = threading.get_ident()

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if stage == self._stage and done < total and now - self._last < PROGRESS_INTERVAL:
            return
        self._stage, self._last = stage, now
        # current_round moves on once the round is updated, so next-round sampling reports the next round. It is read
        # from hero.db, which only the command's thread may use: the download's watcher reports the round last read.
        if threading.get_ident() == self._command_thread:
            self._round = self._session.current_round
        self._channel.emit("progress", stage=stage, done=done, total=total, round=self._round)


class Worker:
    """Runs commands against one HeroSession and answers with events."""

    def __init__(self, session, channel: Channel):
        self.session = session
        self.channel = channel
        self.commands: queue.Queue[tuple[int, dict[str, Any] | None]] = queue.Queue()  # None: shut down
        self.stopping = threading.Event()
        self._queued = 0  # sequence number of the last queued command
        self._cancelled_upto = 0  # commands up to this number stop at their next progress tick

    # reader thread ------------------------------------------------------------

    def read(self, stdin: TextIO) -> None:
        """Feed stdin's commands to the main thread; ``cancel`` and ``shutdown`` act at once. EOF means shutdown."""
        for line in stdin:
            if line.strip():
                self._accept(line)
        self._shut_down()

    def _accept(self, line: str) -> None:
        try:
            message = protocol.decode(line)
        except ValueError as exc:
            self.channel.error("invalid", f"malformed command line: {exc}")
            return
        cmd = message.get("cmd")
        if cmd not in protocol.COMMANDS:
            self.channel.error("invalid", f"unknown command {cmd!r}; known: {', '.join(protocol.COMMANDS)}", _reply(message))
        elif cmd == "cancel":
            self._cancelled_upto = self._queued
        elif cmd == "shutdown":
            self._shut_down()
        else:
            self._queued += 1
            self.commands.put((self._queued, message))

    def _shut_down(self) -> None:
        self.stopping.set()
        self.commands.put((0, None))

    # main thread --------------------------------------------------------------

    def serve(self) -> None:
        """Run queued commands one at a time until shutdown.

        Commands queued before a shutdown still run, so no label is lost, but their stages are cancelled.
        """
        while True:
            seq, message = self.commands.get()
            if message is None:
                return
            self.run(message, lambda: seq <= self._cancelled_upto or self.stopping.is_set())

    def run(self, message: dict[str, Any], should_stop) -> None:
        reply = _reply(message)
        log.info("command %s", message)
        try:
            if message["cmd"] in STAGED and should_stop():
                raise StageCancelled(f"{message['cmd']} was cancelled before it started")
            getattr(self, f"_do_{message['cmd']}")(message, reply, should_stop)
        except StageCancelled as exc:
            self.channel.error("cancelled", str(exc), reply)
        except OutOfMemory as exc:
            self.channel.error("oom", str(exc), reply)
        except HeroError as exc:
            self.channel.error("invalid", str(exc), reply)
        except Exception as exc:
            log.exception("command %s crashed", message["cmd"])
            self.channel.error("crash", _one_line(exc), reply)
        finally:
            self._send_notices()

    def _send_notices(self) -> None:
        while self.session.notices:
            self.channel.emit("notice", message=self.session.notices.pop(0))

    # commands -----------------------------------------------------------------

    def _do_propose(self, message, reply, should_stop) -> None:
        batch = self.session.propose(Throttle(self.channel, self.session), should_stop, self._images_event(reply))
        self.channel.emit("batch_ready", **reply, batch=batch)
        self._work_while_labeling()

    def _work_while_labeling(self) -> None:
        """While the person labels and the GPU is idle: replay the open round where this process did not draw it (a
        resumed session's), then check (and if need be recompute) its old log-probs where the precision needs it.

        Any command stops it at its next UNet pass; whatever is not done then, the update does. A failure here is
        logged only: the update meets it again and reports it.
        """
        from hero_engine.algorithm import (
            old_log_probs,  # torch: imported once the session is open, as the session itself is
        )

        def should_stop() -> bool:
            return not self.commands.empty() or self.stopping.is_set()

        try:
            self.session.replay_open_round(should_stop)
            if old_log_probs.aligns(self.session.runtime):
                self.session.align_old_log_probs(should_stop)
        except StageCancelled:
            log.info("the work done while labeling stopped for the next command; the update does the rest")
        except Exception:
            log.exception("the work done while labeling failed; the update tries again")

    def _images_event(self, reply):
        """Sends each chunk of a round's images as soon as it is stored, with the previous best for the status line."""
        def images(round_: int, new, size: int) -> None:
            self.channel.emit("images", **reply, round=round_, size=size, images=new,
                              previous_best=self.session.previous_best(round_))
        return images

    # The TUI writes labels to hero.db itself and never sends label or choose_best, so this process
    # and the app never both write the same round's labels; these serve front ends without the store.
    # The session re-reads hero.db on every call (no copy of the labels in memory), and its store waits
    # out the app's short label transactions (busy timeout), so the app's writes are seen at submit.
    def _do_label(self, message, reply, should_stop) -> None:
        image_id = _image_id(message)
        if "good" not in message or message["good"] not in (True, False, None):
            raise HeroError('label needs "good": true, false or null')
        self.session.label(image_id, message["good"])
        self.channel.emit(
            "labeled", **reply, image_id=image_id,
            label=self.session.store.image(image_id).label, labels_total=self.session.store.label_count(),
        )

    def _do_choose_best(self, message, reply, should_stop) -> None:
        image_id = None if message.get("image_id", 0) is None else _image_id(message)  # null clears the best
        self.session.choose_best(image_id)
        self.channel.emit("best_chosen", **reply, image_id=image_id)

    def _do_submit(self, message, reply, should_stop) -> None:
        self.session.submit()
        self.channel.emit("submitted", **reply, round=self.session.current_round)

    def _do_update(self, message, reply, should_stop) -> None:
        # The report goes out as soon as the learning is saved, then the next round's images chunk by chunk.
        throttle = Throttle(self.channel, self.session)
        report = self.session.update(throttle, should_stop, sample_next=False)
        self.channel.emit("round_done", **reply, report=report)
        batch = self.session.propose(throttle, should_stop, self._images_event(reply))
        self.channel.emit("batch_ready", **reply, batch=batch)
        self._work_while_labeling()

    def _do_export(self, message, reply, should_stop) -> None:
        path = message.get("path")
        if not isinstance(path, str) or not path:
            raise HeroError('export needs "path": a .safetensors file or a folder')
        files = self.session.export_files(Path(path))  # diffusers' file, then kohya's beside it
        self.channel.emit("exported", **reply, path=files[0], paths=files)

    def _do_metrics(self, message, reply, should_stop) -> None:
        self.channel.emit("metrics", **reply, rounds=self.session.store.metrics())

    def _do_report(self, message, reply, should_stop) -> None:
        path, samples = message.get("path"), message.get("samples", REPORT_SAMPLES)
        if not isinstance(path, str) or not path:
            raise HeroError('report needs "path": the HTML file to write')
        if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
            raise HeroError('report\'s "samples" is a positive number of image pairs')
        html_report.check_writable(Path(path))  # before the samples are drawn
        record = session_record.read_session(self.session.folder)
        comparison, note = None, "no round has been learned from yet, so the LoRA still draws what the base model draws."
        if self.session.latest_checkpoint() is not None:
            throttle = Throttle(self.channel, self.session)

            def drawing(stage: str, done: int, total: int) -> None:  # the report's images, told apart from a round's
                throttle(protocol.REPORT_STAGE if stage == "sampling" else stage, done, total)

            round_, tuned, base = self.session.sample_against_base(samples, on_progress=drawing, should_stop=should_stop)
            comparison = html_report.SampleComparison.from_images(tuned, base, round_, self.session.config.seed)
        written = html_report.write_report(record, Path(path), comparison, note)
        self.channel.emit("report_written", **reply, path=written)


def _reply(message: dict[str, Any]) -> dict[str, Any]:
    return {"reply_to": message["id"]} if "id" in message else {}


def _image_id(message: dict[str, Any]) -> int:
    image_id = message.get("image_id")
    if not isinstance(image_id, int) or isinstance(image_id, bool):
        raise HeroError(f'{message["cmd"]} needs "image_id": an integer')
    return image_id


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# process set-up ---------------------------------------------------------------


def _claim_stdout(folder: Path) -> TextIO:
    """A private handle on the real stdout for events; fds 1 and 2 then go to the log (or stderr without a session).

    Libraries print, warn and draw progress bars on fds 1 and 2; redirecting
    the descriptors, not just sys.stdout, keeps even C-level writes out of the
    protocol and off the front end's terminal.
    """
    events = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    if is_session(folder):
        stray = os.open(folder / LOG_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(stray, 2)
        os.close(stray)
    os.dup2(2, 1)
    return events


def _setup_logging(folder: Path) -> None:
    if is_session(folder):
        handler = logging.FileHandler(folder / LOG_NAME)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.captureWarnings(True)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m hero_engine.worker", description="The hero engine as a child process.")
    parser.add_argument("--session", required=True, type=Path, help="the session folder")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    parser.add_argument("--dtype", help="float32, float16 or bfloat16 (default: bfloat16 on CUDA GPUs of compute capability 8 and up, else float16; float32 on cpu)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    folder = args.session.resolve()  # absolute, so image paths in events are absolute
    for name in ("TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY"):
        os.environ.setdefault(name, "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # The front end owns our lifetime (shutdown or EOF); a Ctrl-C in its terminal must not kill a stage half-way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    channel = Channel(_claim_stdout(folder), folder / LOG_NAME)
    _setup_logging(folder)
    try:
        return _serve(folder, args, channel)
    except Exception as exc:
        log.exception("the worker crashed")
        channel.error("crash", _one_line(exc))
        return EXIT_CRASH


def _serve(folder: Path, args: argparse.Namespace, channel: Channel) -> int:
    from hero_engine.session.hero_session import (
        HeroSession,  # only now: importing torch and diffusers may print
    )

    try:
        session = HeroSession.open(folder, args.device, args.dtype)
    except SessionLocked as exc:
        channel.error("locked", str(exc))
        return protocol.EXIT_LOCKED
    except HeroError as exc:
        channel.error("invalid", str(exc))
        return EXIT_INVALID
    with session:
        log.info("worker %d serving %s", os.getpid(), folder)
        channel.emit(
            "ready", session=folder, round=session.current_round,
            prompt=session.config.prompt, model=session.config.model, family=session.model_family(), log=channel.log_path,
        )
        worker = Worker(session, channel)
        sys.stdin.reconfigure(encoding="utf-8", errors="replace")
        threading.Thread(target=worker.read, args=(sys.stdin,), name="commands", daemon=True).start()
        worker.serve()
    channel.emit("bye")  # after close: the lock is free once the front end reads this
    return 0


if __name__ == "__main__":
    sys.exit(main())
