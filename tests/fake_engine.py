"""A torch-free stand-in for ``python -m hero_engine.worker`` that speaks the same protocol.

It writes a real session store (hero.db and PNGs) with tiny generated images,
so TUI tests can check what the store holds after real key presses, in
milliseconds instead of the real engine's seconds.

    python tests/fake_engine.py --session DIR [--stage-seconds S] [--chunk-seconds S] [--crash-on CMD] [--reject CMD]
                                [--burn N] [--image-size PX]

Like the real engine, it draws a round in chunks and sends each one (``images``) as it is stored;
--chunk-seconds sets how long each chunk takes.

--reject answers CMD with an "invalid" error (as the real engine does when it
disagrees with the TUI); --burn keeps N processes busy, like an engine training;
--image-size draws images of that side (the demo model's are 64 px).
"""

from __future__ import annotations

import argparse
import multiprocessing
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from hero_engine import protocol
from hero_engine.algorithm.chunks import chunk_ranges
from hero_engine.errors import HeroError, SessionLocked
from hero_engine.feedback_rules import FeedbackChange, label_of, submit_problem
from hero_engine.models.model_configs import model_family
from hero_engine.reporting import html_report, session_record
from hero_engine.storage.labels import read_round_feedback, record_feedback
from hero_engine.storage.lock import SessionLock
from hero_engine.storage.store import SessionStore

STAGES = ("representation", "policy", "saving")
COLORS = [(200, 60, 60), (60, 160, 60), (60, 90, 200), (200, 180, 40), (150, 60, 170), (40, 170, 170)]


class Cancelled(Exception):
    pass


class FakeEngine:
    def __init__(self, folder: Path, stage_seconds: float, crash_on: str | None, reject: str | None, image_size: int = 32,
                 chunk_seconds: float | None = None):
        self.folder = folder
        self.chunk_seconds = chunk_seconds
        self.image_size = image_size
        _, self.config = SessionStore.read_header(folder)
        self.store = SessionStore(folder)
        self.stage_seconds = stage_seconds
        self.crash_on = crash_on
        self.reject = reject
        self.out_lock = threading.Lock()
        self.commands: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stopping = threading.Event()
        self.interrupt = threading.Event()  # cancel or shutdown: the running stage stops at its next tick

    def emit(self, event: str, **fields: Any) -> None:
        with self.out_lock:
            sys.stdout.write(protocol.encode({"event": event, **fields}) + "\n")
            sys.stdout.flush()

    def read(self) -> None:
        for line in sys.stdin:
            if not line.strip():
                continue
            message = protocol.decode(line)
            if message["cmd"] == "cancel":
                self.interrupt.set()
            elif message["cmd"] == "shutdown":
                break
            else:
                self.commands.put(message)
        self.stopping.set()
        self.interrupt.set()
        self.commands.put({"cmd": "shutdown"})

    def serve(self) -> None:
        while True:
            message = self.commands.get()
            if self.stopping.is_set():
                break
            self.interrupt.clear()
            reply = {"reply_to": message["id"]} if "id" in message else {}
            if message["cmd"] == self.crash_on:
                sys.stderr.write("Traceback (most recent call last):\nRuntimeError: fake engine crash\n")
                sys.stderr.flush()
                sys.exit(1)
            try:
                if message["cmd"] == self.reject:
                    raise HeroError(f"the engine does not accept this {message['cmd']} (fake refusal)")
                getattr(self, f"do_{message['cmd']}")(message, reply)
            except Cancelled:
                self.emit("error", **reply, kind="cancelled", message="stopped at a safe point", log=str(self.log))
            except HeroError as exc:
                self.emit("error", **reply, kind="invalid", message=str(exc), log=str(self.log))
        self.emit("bye")

    @property
    def log(self) -> Path:
        return self.folder / "engine.log"

    # the session logic, as HeroSession has it ------------------------------------

    @property
    def current_round(self) -> int:
        rounds = self.store.rounds()
        if not rounds:
            return 0
        return rounds[-1].round + 1 if rounds[-1].updated_at is not None else rounds[-1].round

    def tick(self, stage: str, steps: int, seconds: float, start: int = 0, total: int | None = None) -> None:
        """``steps`` progress ticks of a stage over ``seconds``, counted from ``start`` of ``total`` (default: steps)."""
        total = steps if total is None else total
        for done in range(start, start + steps + 1):
            if self.interrupt.is_set() or self.stopping.is_set():
                raise Cancelled()
            self.emit("progress", stage=stage, done=done, total=total, round=self.current_round)
            if done < start + steps:
                self.interrupt.wait(seconds / steps)

    def sample(self, round_: int, seconds: float = 0.0, reply: dict[str, Any] | None = None) -> None:
        """Draw the round in the real engine's chunks, each stored and sent (``images``) before the next is drawn.

        Continues a round stopped part-way: its stored images are sent first and not drawn again.
        """
        if self.store.round(round_) is None:
            self.store.open_round(round_, self.config.batch_size)
        stored = {row.idx for row in self.store.images(round_)}
        if stored:
            self.emit_images(round_, sorted(stored), reply)
        ranges = chunk_ranges(self.config.batch_size, self.config.sample_batch, short_first=True)
        for number, positions in enumerate(ranges):
            idxs = [idx for idx in positions if idx not in stored]
            if not idxs:
                continue
            wait = self.chunk_seconds if self.chunk_seconds is not None else (seconds if number == 0 else 0.0)
            self.tick("sampling", 2, wait, start=2 * number, total=2 * len(ranges))
            self.store.add_images(round_, [(idx, self.draw(round_, idx)) for idx in idxs])
            self.emit_images(round_, idxs, reply)
        self.tick("sampling", 0, 0, start=2 * len(ranges), total=2 * len(ranges))

    def emit_images(self, round_: int, idxs: list[int], reply: dict[str, Any] | None) -> None:
        rows = {row.idx: row for row in self.store.images(round_)}
        prev = self.store.round(round_ - 1) if round_ else None
        self.emit("images", **(reply or {}), round=round_, size=self.config.batch_size,
                  images=[self.image_json(rows[idx].id) for idx in idxs],
                  previous_best=self.image_json(prev.best_image_id) if prev and prev.best_image_id else None)

    def draw(self, round_: int, idx: int) -> str:
        """One image's PNG, written whole; its path in the session."""
        folder = self.store.round_dir(round_)
        folder.mkdir(parents=True, exist_ok=True)
        side = self.image_size
        image = Image.new("RGB", (side, side), COLORS[(idx + round_) % len(COLORS)])
        draw = ImageDraw.Draw(image)
        draw.rectangle((side // 4, side // 4, side * 3 // 4 - 1, side * 3 // 4 - 1),
                       fill=(255, 255, 255) if idx % 2 else (0, 0, 0))
        draw.line((0, idx % side, side - 1, side - 1 - idx % side), fill=(255, 255, 0))  # no two images alike
        name = f"{idx:03d}.png"
        image.save(folder / f".{name}.tmp", format="PNG")
        (folder / f".{name}.tmp").replace(folder / name)
        return str(folder.relative_to(self.folder) / name)

    def image_json(self, image_id: int) -> dict[str, Any]:
        row = self.store.image(image_id)
        return {"id": row.id, "round": row.round, "idx": row.idx, "path": str(self.folder / row.path),
                "label": row.label, "is_best": row.is_best}

    def batch(self) -> dict[str, Any]:
        round_ = self.current_round
        row = self.store.round(round_)
        prev = self.store.round(round_ - 1) if round_ else None
        return {
            "round": round_, "prompt": self.config.prompt, "submitted": row.submitted_at is not None,
            "best_id": row.best_image_id,
            "previous_best": self.image_json(prev.best_image_id) if prev and prev.best_image_id else None,
            "images": [self.image_json(i.id) for i in self.store.images(round_)], "size": row.size,
        }

    def open_image(self, image_id: Any):
        image = self.store.image(image_id) if isinstance(image_id, int) else None
        if image is None or image.round != self.current_round:
            raise HeroError(f"image {image_id} is not in the open round")
        if self.store.round(image.round).submitted_at is not None:
            raise HeroError("the round is already submitted")
        return image

    def do_propose(self, message, reply) -> None:
        if self.store.round(self.current_round) is None or self.store.images_coming(self.current_round):
            self.sample(self.current_round, 0.0, reply)
        self.emit("batch_ready", **reply, batch=self.batch())

    def do_label(self, message, reply) -> None:
        image = self.open_image(message.get("image_id"))
        record_feedback(self.store, image.round, [FeedbackChange("label", image.id, label_of(message.get("good")))])
        self.emit("labeled", **reply, image_id=image.id, label=self.store.image(image.id).label,
                  labels_total=self.store.label_count())

    def do_choose_best(self, message, reply) -> None:
        image_id = message.get("image_id")
        record_feedback(self.store, self.current_round, [FeedbackChange("best", image_id)])
        self.emit("best_chosen", **reply, image_id=image_id)

    def do_submit(self, message, reply) -> None:
        round_ = self.current_round
        row = self.store.round(round_)
        if row.submitted_at is None:
            problem = submit_problem(read_round_feedback(self.store, round_), coming=self.store.images_coming(round_),
                                     size=row.size)
            if problem:
                raise HeroError(f"round {round_} cannot be submitted yet: {problem}")
            self.store.submit_round(round_)
        self.emit("submitted", **reply, round=round_)

    def do_update(self, message, reply) -> None:
        round_ = self.current_round
        seconds = {}
        for stage in STAGES:
            started = time.perf_counter()
            self.tick(stage, 5, self.stage_seconds)
            seconds[stage] = time.perf_counter() - started
        self.store.mark_updated(round_)
        images = self.store.images(round_)
        good = sum(i.label == "good" for i in images)
        metrics = {"good": good, "bad": len(images) - good, "reward_mean": 0.5 + 0.1 * round_, "reward_label_agreement": 0.75}
        self.store.put_metrics(round_, metrics)
        report = {"round": round_, "good": good, "bad": len(images) - good, "labels_total": self.store.label_count(),
                  "mean_reward": metrics["reward_mean"], "seconds": seconds, "metrics": metrics}
        self.emit("round_done", **reply, report=report)  # as the real engine's, before the next round is drawn
        self.sample(round_ + 1, self.stage_seconds, reply)
        self.emit("batch_ready", **reply, batch=self.batch())

    def do_export(self, message, reply) -> None:
        if not any(r.updated_at for r in self.store.rounds()):
            raise HeroError("nothing to export yet: finish at least one round")
        path = Path(message["path"])
        target = path if path.suffix == ".safetensors" else path / "pytorch_lora_weights.safetensors"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"fake lora")
        self.emit("exported", **reply, path=str(target))

    def do_report(self, message, reply) -> None:
        """The report as the real engine writes it, without samples: the fake engine has no model to draw them, but it
        takes as long to as --stage-seconds says, telling its "report" progress, once a round is learned."""
        if any(r.updated_at for r in self.store.rounds()):
            self.tick(protocol.REPORT_STAGE, 4, self.stage_seconds)
        record = session_record.read_session(self.folder)
        path = html_report.write_report(record, Path(message["path"]), comparison_note="The fake engine draws no samples.")
        self.emit("report_written", **reply, path=str(path))

    def do_metrics(self, message, reply) -> None:
        self.emit("metrics", **reply, rounds=self.store.metrics())


def burn() -> None:
    while True:
        sum(i * i for i in range(10_000))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--session", type=Path, required=True)
    parser.add_argument("--stage-seconds", type=float, default=0.0)
    parser.add_argument("--crash-on")
    parser.add_argument("--reject")
    parser.add_argument("--burn", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--chunk-seconds", type=float, help="seconds each chunk of images takes (default: the first chunk after a round's learning takes --stage-seconds, the others none)")
    args = parser.parse_args()
    folder = args.session.resolve()
    lock = SessionLock(folder)
    try:
        lock.acquire()
    except SessionLocked as exc:
        print(protocol.encode({"event": "error", "kind": "locked", "message": str(exc), "log": str(folder / "engine.log")}), flush=True)
        return protocol.EXIT_LOCKED
    burners = [multiprocessing.Process(target=burn, daemon=True) for _ in range(args.burn)]
    for process in burners:
        process.start()
    engine = FakeEngine(folder, args.stage_seconds, args.crash_on, args.reject, args.image_size, args.chunk_seconds)
    engine.emit("ready", session=str(folder), round=engine.current_round, prompt=engine.config.prompt,
                model=engine.config.model, family=model_family(engine.config.model, online=False) or "", log=str(engine.log))
    threading.Thread(target=engine.read, daemon=True).start()
    engine.serve()
    engine.store.close()
    lock.release()
    for process in burners:
        process.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
