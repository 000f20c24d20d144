"""The engine's JSON-lines protocol: the one place it is written down.

``python -m hero_engine.worker --session DIR [--device D] [--dtype T]`` owns one
session. It reads one JSON object per line on stdin (commands) and writes one
JSON object per line on stdout (events). Logs go to ``DIR/engine.log``, never
to the terminal. This module imports no torch, so the TUI can use it.

Commands (stdin). ``id`` is optional; events that answer a command carry it as ``reply_to``.

    {"cmd": "propose", "id": 1}                          -> (progress | images)*, batch_ready
    {"cmd": "label", "image_id": 7, "good": true}        -> labeled      (good: true | false | null to clear)
    {"cmd": "choose_best", "image_id": 7}                -> best_chosen  (image_id null clears the round's best: undo)
    {"cmd": "submit"}                                    -> submitted    (or error kind "invalid" saying what is missing)
    {"cmd": "update"}                                    -> progress*, round_done, (progress | images)*, batch_ready (the next round)
    {"cmd": "export", "path": "/x/lora.safetensors"}     -> exported
    {"cmd": "metrics"}                                   -> metrics
    {"cmd": "report", "path": "/x/report.html", "samples": 4} -> report_written (hero-tui report's page, with samples
                                                            of the tuned LoRA against the base model; samples optional)
    {"cmd": "cancel"}                                    -> the running stage stops at a safe point (error kind "cancelled")
    {"cmd": "shutdown"}                                  -> cancels a running stage, then bye; the process exits 0

``cancel`` and ``shutdown`` are read while a stage runs (or ``report`` draws its images); other commands wait for it.

Labels: the TUI does not send ``label`` or ``choose_best``. It commits each key press to
hero.db itself (``storage.labels.record_feedback``, under ``feedback_rules``) before drawing it, so a
label on screen is on disk whatever the engine is doing; the engine reads the labels
from hero.db when ``submit`` comes, and ``propose`` returns them. The two commands stay
for front ends that do not open the store (tests, scripts).

Events (stdout):

    {"event": "ready", "session": DIR, "round": 0, "prompt": "...", "model": "...", "family": "SD1.x|SD2.x|SDXL|", "log": "DIR/engine.log"}
    {"event": "progress", "stage": "loading|replay|sampling|representation|policy|saving", "done": 3, "total": 10, "round": 1}
        (each stage reports 0 done as it starts, so a front end times it from its start; replay: before ``update`` learns
        from a round another process drew, its steps are drawn again from its stored noise)
    {"event": "progress", "stage": "downloading", "done": BYTES_SO_FAR, "total": BYTES | 0, "round": 0}   (while loading fetches
        a hub model; total 0 where the hub does not tell the files' sizes, and done may pass an estimated total)
    {"event": "progress", "stage": "report", "done": 120, "total": 400, "round": 1}   (while ``report`` draws its images:
        image-steps, the tuned model's then the base model's; the model's loading may come first)
    {"event": "images", "reply_to": 1, "round": 1, "size": 64, "images": [IMAGE, ...], "previous_best": IMAGE | null}
    {"event": "batch_ready", "reply_to": 1, "batch": BATCH}
    {"event": "labeled", "reply_to": 2, "image_id": 7, "label": "good|bad|null", "labels_total": 12}
    {"event": "best_chosen", "reply_to": 3, "image_id": 7 | null}
    {"event": "submitted", "reply_to": 4, "round": 0}
    {"event": "round_done", "reply_to": 5, "report": REPORT}
    {"event": "exported", "reply_to": 6, "path": "/x/lora.safetensors", "paths": ["/x/lora.safetensors", "/x/lora.kohya.safetensors"]}
    {"event": "metrics", "reply_to": 7, "rounds": {"0": {"good": 3.0, "reward_mean": 0.7, ...}, ...}}
    {"event": "report_written", "reply_to": 8, "path": "/x/report.html"}
    {"event": "notice", "message": "checkpoint 0003 is damaged; ..."}
    {"event": "error", "reply_to": 5, "kind": KIND, "message": "one line", "log": "DIR/engine.log"}
    {"event": "bye"}

    KIND   = "invalid" (bad command or feedback; nothing changed) | "cancelled" | "oom" | "locked" | "crash"
    BATCH  = {"round": 1, "prompt": "...", "submitted": false, "best_id": 7 | null,
              "previous_best": IMAGE | null, "images": [IMAGE, ...], "size": 64}
    IMAGE  = {"id": 7, "round": 1, "idx": 0, "path": "/abs/path.png", "label": "good" | "bad" | null, "is_best": false}
    REPORT = {"round": 0, "good": 3, "bad": 5, "labels_total": 8, "mean_reward": 0.71,
              "seconds": {"representation": 1.2, ...}, "metrics": {...}, "rewards": [0.93, 0.41, ...]}

Images stream: a round is drawn a chunk at a time, and each chunk's images are sent in an
``images`` event as soon as they are stored (files on disk, rows in hero.db), so they can be
shown and labeled while the rest are drawn; ``batch_ready`` follows once all ``size`` are
there. A round stopped part-way continues from its stored chunks, which the first ``images``
event of the next ``propose`` carries. Until every image is there, ``submit`` answers "invalid":
"N of M images still coming".

A "locked" error at start-up is followed by exit code 3; a crash leaves exit code 1.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

REPORT_STAGE = "report"  # the progress of the images ``report`` draws, apart from a round's own stages
COMMANDS = ("propose", "label", "choose_best", "submit", "update", "export", "metrics", "report", "cancel", "shutdown")
EXIT_LOCKED = 3


def encode(message: dict[str, Any]) -> str:
    """One JSON line (no newline inside); dataclasses and paths become plain JSON, NaN becomes null."""
    return json.dumps(_plain(message), separators=(",", ":"))


def decode(line: str) -> dict[str, Any]:
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("a protocol message is a JSON object")
    return message


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
