"""The engine's protocol: the engine as a child process, driven over the JSON-lines protocol of hero_engine.protocol."""

import io
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fake_hub import TINY_REPO, serving_the_tiny_model

from hero_engine import protocol
from hero_engine.errors import HeroError, OutOfMemory
from hero_engine.session.hero_session import HeroSession
from hero_engine.storage.store import SessionStore
from hero_engine.worker import Channel, Worker

READ_TIMEOUT = 90  # seconds for one event: a hung worker fails the test instead of hanging it


class Engine:
    """One worker process; every stdout line must decode as a protocol event."""

    def __init__(self, folder, stderr_path, *options):
        self.stderr = open(stderr_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hero_engine.worker", "--session", str(folder), *options],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send_line(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def send(self, **command):
        self.send_line(protocol.encode(command))

    def read(self):
        try:
            line = self.lines.get(timeout=READ_TIMEOUT)
        except queue.Empty:
            pytest.fail(f"no event from the worker within {READ_TIMEOUT} s")
        assert line is not None, "the worker closed its stdout"
        return protocol.decode(line)

    def until(self, name):
        """Events up to and including the first ``name`` event (or an error event)."""
        seen = [self.read()]
        while seen[-1]["event"] not in (name, "error"):
            seen.append(self.read())
        return seen

    def expect(self, name, **fields):
        event = self.until(name)[-1]
        assert event["event"] == name, event
        assert fields.items() <= event.items(), event
        return event

    def wait(self):
        try:
            return self.proc.wait(timeout=READ_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail("the worker did not exit")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


@pytest.fixture
def session_dir(tmp_path, tiny_config):
    folder = tmp_path / "session"
    HeroSession.create(folder, tiny_config).close()
    return folder


@pytest.fixture
def start_engine(tmp_path):
    engines = []

    def start(folder, *options):
        engines.append(Engine(folder, tmp_path / f"stderr-{len(engines)}.txt", *options))
        return engines[-1]

    yield start
    for engine in engines:
        engine.kill()


def db_rows(folder, sql):
    db = sqlite3.connect(folder / "hero.db")
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_full_round_over_the_protocol(session_dir, start_engine, tmp_path):
    engine = start_engine(session_dir)
    ready = engine.expect("ready", round=0, prompt="a red hand", model="tiny")
    assert ready["log"] == str(session_dir / "engine.log")

    engine.send(cmd="propose", id=1)
    events = engine.until("batch_ready")
    batch = events[-1]["batch"]
    assert events[-1]["reply_to"] == 1
    progress = [e for e in events if e["event"] == "progress"]
    assert [e["stage"] for e in progress[:2]] == ["loading", "loading"]  # the model, then its images
    assert {e["stage"] for e in progress[2:]} == {"sampling"}
    assert progress[-1]["done"] == progress[-1]["total"]
    # the images stream: a short first chunk is sent while the rest are still being drawn, then the others
    chunks = [e for e in events if e["event"] == "images"]
    assert [e["event"] for e in events[:-1]] == [e["event"] for e in events[:-1] if e["event"] in ("progress", "images")]
    assert [len(e["images"]) for e in chunks] == [1, 5]  # sample_batch 6: a first chunk of a quarter, then the rest
    assert all(e["round"] == 0 and e["size"] == 6 and e["reply_to"] == 1 and e["previous_best"] is None for e in chunks)
    first_chunk_at = events.index(chunks[0])
    assert any(e["event"] == "progress" and e["done"] < e["total"] for e in events[first_chunk_at:])
    assert [i for e in chunks for i in e["images"]] == batch["images"]
    assert batch["round"] == 0 and not batch["submitted"] and len(batch["images"]) == 6 and batch["size"] == 6
    assert all(image["path"].startswith("/") and image["label"] is None for image in batch["images"])
    best, good, bad = (image["id"] for image in batch["images"][:3])

    # feedback that HERO cannot learn from is refused, and the worker keeps going
    engine.send(cmd="submit", id=2)
    engine.expect("error", reply_to=2, kind="invalid")
    engine.send(cmd="choose_best", id=3, image_id=best)
    engine.expect("best_chosen", reply_to=3, image_id=best)
    engine.send(cmd="label", id=4, image_id=good, good=True)
    engine.expect("labeled", reply_to=4, image_id=good, label="good", labels_total=2)
    engine.send(cmd="label", id=5, image_id=bad, good=False)
    engine.expect("labeled", reply_to=5, image_id=bad, label="bad", labels_total=3)
    engine.send(cmd="submit", id=6)
    engine.expect("submitted", reply_to=6, round=0)
    labels = db_rows(session_dir, "SELECT id, label, is_best FROM images WHERE round = 0 ORDER BY idx")
    assert labels[:3] == [(best, "good", 1), (good, "good", 0), (bad, "bad", 0)]
    assert {label for _, label, _ in labels[3:]} == {"bad"}  # unlabeled counts as bad once submitted

    # a cancelled update changes nothing ...
    engine.send(cmd="update", id=7)
    assert engine.expect("progress", stage="representation")["round"] == 0
    engine.send(cmd="cancel")
    engine.expect("error", reply_to=7, kind="cancelled")
    assert db_rows(session_dir, "SELECT round, updated_at FROM rounds") == [(0, None)]

    # ... and the next one learns, checkpoints and samples round 1
    engine.send(cmd="update", id=8)
    events = engine.until("round_done")
    report = events[-1]["report"]
    assert events[-1]["reply_to"] == 8
    assert report["round"] == 0 and report["good"] == 2 and report["bad"] == 4 and report["labels_total"] == 6
    progress = [e for e in events if e["event"] == "progress"]
    assert {"representation", "policy", "saving"} <= {e["stage"] for e in progress}
    assert "sampling" not in {e["stage"] for e in progress}  # the report comes before the next round is drawn
    events = engine.until("batch_ready")
    batch = events[-1]["batch"]
    progress = [e for e in events if e["event"] == "progress"]
    assert progress[-1]["stage"] == "sampling" and progress[-1]["round"] == 1
    assert progress[-1]["done"] == progress[-1]["total"]
    chunks = [e for e in events if e["event"] == "images"]
    assert [len(e["images"]) for e in chunks] == [1, 5] and all(e["reply_to"] == 8 for e in chunks)
    assert chunks[0]["previous_best"]["id"] == best
    assert batch["round"] == 1 and batch["previous_best"]["id"] == best and len(batch["images"]) == 6
    assert [r for r, updated in db_rows(session_dir, "SELECT round, updated_at FROM rounds") if updated] == [0]
    assert (session_dir / "checkpoints" / "0000").is_dir()

    engine.send(cmd="shutdown")
    engine.expect("bye")
    assert engine.wait() == 0
    assert (tmp_path / "stderr-0.txt").read_text() == ""  # stray output goes to engine.log, not the terminal
    HeroSession.open(session_dir).close()  # the lock is released


def test_a_second_worker_is_locked_out(session_dir, start_engine):
    first = start_engine(session_dir)
    first.expect("ready")
    second = start_engine(session_dir)
    second.expect("error", kind="locked")
    assert second.wait() == protocol.EXIT_LOCKED
    first.send(cmd="shutdown")
    first.expect("bye")
    assert first.wait() == 0


def test_malformed_lines_are_invalid_and_eof_shuts_down(session_dir, start_engine):
    engine = start_engine(session_dir)
    engine.expect("ready")
    engine.send_line("not json")
    engine.expect("error", kind="invalid")
    engine.send_line("[1, 2]")
    engine.expect("error", kind="invalid")
    engine.send(cmd="dance", id=1)
    engine.expect("error", reply_to=1, kind="invalid")
    engine.send(cmd="label", id=2, image_id="seven", good=True)
    engine.expect("error", reply_to=2, kind="invalid")
    engine.send(cmd="metrics", id=3)
    engine.expect("metrics", reply_to=3, rounds={})
    engine.proc.stdin.close()
    engine.expect("bye")
    assert engine.wait() == 0


class FailingSession:
    """Stands in for HeroSession: its update raises what it is given."""

    def __init__(self, exc):
        self.exc = exc
        self.notices = ["checkpoint 0001 is damaged; using 0000"]
        self.current_round = 0

    def update(self, on_progress, should_stop, sample_next=True):
        on_progress("policy", 1, 2)
        raise self.exc


@pytest.mark.parametrize("exc, kind, message", [
    (RuntimeError("boom\nat line 2"), "crash", "RuntimeError: boom"),
    (OutOfMemory("out of memory during learning"), "oom", "out of memory during learning"),
    (HeroError("round 0 has not been submitted yet"), "invalid", "round 0 has not been submitted yet"),
])
def test_failures_map_to_error_kinds_and_the_worker_goes_on(tmp_path, exc, kind, message):
    out = io.StringIO()
    worker = Worker(FailingSession(exc), Channel(out, tmp_path / "engine.log"))
    worker.run({"cmd": "update", "id": 5}, lambda: False)
    worker.run({"cmd": "update", "id": 6}, lambda: False)
    events = [protocol.decode(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["progress", "error", "notice", "progress", "error"]
    assert events[1] == {"event": "error", "reply_to": 5, "kind": kind, "message": message, "log": str(tmp_path / "engine.log")}
    assert events[4]["reply_to"] == 6


def wait_until(condition, failure: str) -> None:
    """Wait for what the worker does between commands, up to READ_TIMEOUT."""
    deadline = time.monotonic() + READ_TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.05)


def submit_and_update(engine, batch) -> list[dict]:
    """The batch's first image best and its second good, submitted, then updated (id 5): the events up to its
    round_done."""
    best, good = (image["id"] for image in batch["images"][:2])
    engine.send(cmd="choose_best", id=2, image_id=best)
    engine.send(cmd="label", id=3, image_id=good, good=True)
    engine.send(cmd="submit", id=4)
    engine.expect("submitted", reply_to=4)
    engine.send(cmd="update", id=5)
    events = engine.until("round_done")
    assert events[-1]["event"] == "round_done" and events[-1]["reply_to"] == 5, events[-1]
    return events


def test_the_old_log_probs_are_aligned_while_the_person_labels(session_dir, start_engine):
    """Guards the idle-time check of PPO's old log-probs: in half precision the worker measures the open round's
    stored log-probs against the update's path as soon as the batch is out, before any submit (hero.db holds the
    figure while nothing else was asked), and the round's update then spends nothing on it (faults planted: the check
    not run while labeling; the update checking again)."""
    engine = start_engine(session_dir, "--dtype", "bfloat16")
    engine.expect("ready")
    engine.send(cmd="propose", id=1)
    batch = engine.expect("batch_ready", reply_to=1)["batch"]
    wait_until(lambda: db_rows(session_dir, "SELECT value FROM metrics WHERE round = 0 AND name = 'old_log_prob_error'"),
               "the old log-probs were not checked while the round was open")
    report = submit_and_update(engine, batch)[-1]["report"]
    assert "aligning" not in report["seconds"]
    assert report["metrics"]["policy_first_ratio_error"] < 1e-4
    assert report["metrics"]["old_log_prob_error"] < 1e-5  # bfloat16 on the CPU: the two paths agree
    engine.expect("batch_ready", reply_to=5)
    engine.send(cmd="shutdown")  # stops round 1's check at its next pass
    engine.expect("bye")
    assert engine.wait() == 0


def test_a_resumed_round_is_replayed_while_the_person_labels(session_dir, start_engine):
    """Guards the worker's idle-time replay: a round an earlier engine process drew is drawn again from its stored
    noise as soon as its batch is out, so its update reports neither the model's loading nor a replay (fault planted:
    the worker not replaying while labeling)."""
    with HeroSession.open(session_dir) as session:
        session.propose()  # round 0 drawn by another process
    engine = start_engine(session_dir)
    engine.expect("ready")
    engine.send(cmd="propose", id=1)
    batch = engine.expect("batch_ready", reply_to=1)["batch"]
    wait_until(lambda: "round 0 replayed from its stored noise" in (session_dir / "engine.log").read_text(),
               "the round was not replayed while it was open")
    stages = {e["stage"] for e in submit_and_update(engine, batch) if e["event"] == "progress"}
    assert stages == {"representation", "policy", "saving"}, stages
    engine.expect("batch_ready", reply_to=5)
    engine.send(cmd="shutdown")
    engine.expect("bye")
    assert engine.wait() == 0


def test_a_worker_killed_mid_round_leaves_a_round_that_continues_to_the_same_images(tmp_path, tiny_config, start_engine):
    """Guards resume after a real ``kill -9``: the worker killed right after its first chunk of images went out leaves
    that chunk in hero.db and on disk; a new worker continues the round from it, sends it first, and the round's
    images equal those of a session never killed (faults planted: stored chunks redrawn; noise drawn for the rest only)."""
    config = tiny_config.replace(steps=40, train_timesteps=3)  # the rest of the round takes long enough to be cut
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    for folder in (whole, killed):
        HeroSession.create(folder, config).close()
    with HeroSession.open(whole) as session:
        expected = [path.read_bytes() for path in (image.path for image in session.propose().images)]

    engine = start_engine(killed)
    engine.expect("ready")
    engine.send(cmd="propose", id=1)
    first = engine.expect("images", reply_to=1)
    engine.kill()
    assert [image["idx"] for image in first["images"]] == [0]
    assert db_rows(killed, "SELECT idx FROM images ORDER BY idx") == [(0,)]  # the round was cut part-way
    stored = Path(first["images"][0]["path"])
    stamp = stored.stat().st_mtime_ns

    engine = start_engine(killed)
    engine.expect("ready")
    engine.send(cmd="propose", id=2)
    events = engine.until("batch_ready")
    chunks = [[image["idx"] for image in e["images"]] for e in events if e["event"] == "images"]
    assert chunks == [[0], [1, 2, 3, 4, 5]]
    batch = events[-1]["batch"]
    assert [Path(image["path"]).read_bytes() for image in batch["images"]] == expected
    assert stored.stat().st_mtime_ns == stamp  # the stored image was not drawn again
    engine.send(cmd="shutdown")
    engine.expect("bye")


def test_a_hub_model_is_downloaded_with_its_bytes_told_then_loaded_from_the_cache(tmp_path, tiny_config, start_engine,
                                                                                  monkeypatch):
    """Guards loading a model by its hub id (a hub on localhost, huggingface_hub and diffusers for real) and the
    download's progress: while the loading fetches the files, "downloading" events tell the bytes come so far, growing
    to the total they tell, within the loading stage; the round is drawn from the downloaded model; a second engine
    loads it from the cache, downloading nothing and telling nothing."""
    from dataclasses import replace

    with serving_the_tiny_model(tmp_path, monkeypatch, delay=2.0) as hub:
        folder = tmp_path / "session"
        SessionStore.create(folder, replace(tiny_config, model=TINY_REPO)).close()
        engine = start_engine(folder)
        engine.expect("ready", model=TINY_REPO)
        engine.send(cmd="propose", id=1)
        events = engine.until("batch_ready")
        assert events[-1]["event"] == "batch_ready", events[-1]
        assert len(events[-1]["batch"]["images"]) == tiny_config.batch_size
        stages = [(e["stage"], e["done"], e["total"]) for e in events if e["event"] == "progress"]
        told = [done for stage, done, total in stages if stage == "downloading"]
        repo_bytes = sum(path.stat().st_size for path in hub.files.values())
        assert len(told) >= 2 and told == sorted(set(told)) and 0 < told[-1] <= repo_bytes, (told, repo_bytes)
        totals = {total for stage, done, total in stages if stage == "downloading"}
        assert totals == {told[-1]}, stages  # the total, told from the start, is what the download comes to
        first, last = stages.index(("downloading", told[0], told[-1])), stages.index(("downloading", told[-1], told[-1]))
        assert stages[first - 1] == ("loading", 0, 1) and stages[last + 1] == ("loading", 1, 1), stages
        assert "unet/diffusion_pytorch_model.safetensors" in hub.downloaded
        engine.send(cmd="shutdown")
        assert engine.wait() == 0

        # The second engine finds round 0 stored, so it loads the model only to replay it (while it is labeled, or in
        # the update), learn and draw round 1: from the cache.
        hub.downloaded.clear()
        engine = start_engine(folder)
        engine.expect("ready", model=TINY_REPO)
        engine.send(cmd="propose", id=1)
        best, good = (image["id"] for image in engine.until("batch_ready")[-1]["batch"]["images"][:2])
        engine.send(cmd="choose_best", id=2, image_id=best)
        engine.expect("best_chosen", reply_to=2)
        engine.send(cmd="label", id=3, image_id=good, good=True)
        engine.expect("labeled", reply_to=3)
        engine.send(cmd="submit", id=4)
        engine.expect("submitted", reply_to=4)
        engine.send(cmd="update", id=5)
        events = engine.until("batch_ready")
        assert events[-1]["event"] == "batch_ready" and events[-1]["batch"]["round"] == 1, events[-1]
        stages = [e["stage"] for e in events if e["event"] == "progress"]
        assert "downloading" not in stages, stages
        assert not [name for name in hub.downloaded if name.endswith(".safetensors")], hub.downloaded
