"""Textual messages for the engine's events, one class per protocol event (see hero_engine.protocol)."""

from __future__ import annotations

from typing import Any

from textual.message import Message

from hero_tui.batch import ImageItem, Label, RoundBatch, RoundReport


class EngineMessage(Message, bubble=False):
    """An event from the engine child process."""

    def __init__(self, reply_to: int | None = None, command: str | None = None):
        super().__init__()
        self.reply_to = reply_to
        self.command = command  # the command this event answers, when it answers one


class EngineReady(EngineMessage):
    def __init__(self, round_: int, prompt: str, log: str | None, model: str = "", family: str = ""):
        super().__init__()
        self.round = round_
        self.prompt = prompt
        self.log = log
        self.model = model
        self.family = family  # SD1.x, SD2.x, SDXL, or '' where the engine cannot tell


class BatchReady(EngineMessage):
    def __init__(self, batch: RoundBatch, **kw: Any):
        super().__init__(**kw)
        self.batch = batch


class ImagesArrived(EngineMessage):
    """A chunk of a round's images, stored and ready to label while the rest are drawn."""

    def __init__(self, round_: int, size: int, images: tuple[ImageItem, ...], previous_best: ImageItem | None, **kw: Any):
        super().__init__(**kw)
        self.round = round_
        self.size = size
        self.images = images
        self.previous_best = previous_best


class Labeled(EngineMessage):
    def __init__(self, image_id: int, label: Label, labels_total: int | None, **kw: Any):
        super().__init__(**kw)
        self.image_id = image_id
        self.label = label
        self.labels_total = labels_total


class BestChosen(EngineMessage):
    def __init__(self, image_id: int | None, **kw: Any):
        super().__init__(**kw)
        self.image_id = image_id


class Submitted(EngineMessage):
    def __init__(self, round_: int, **kw: Any):
        super().__init__(**kw)
        self.round = round_


class StageProgress(EngineMessage):
    def __init__(self, stage: str, done: int, total: int, round_: int | None):
        super().__init__()
        self.stage = stage
        self.done = done
        self.total = total
        self.round = round_


class RoundDone(EngineMessage):
    def __init__(self, report: RoundReport, **kw: Any):
        super().__init__(**kw)
        self.report = report


class Exported(EngineMessage):
    def __init__(self, path: str, paths: list[str] | None = None, **kw: Any):
        super().__init__(**kw)
        self.path = path  # diffusers' file
        self.paths = paths or [path]  # every file written: diffusers', then kohya's


class ReportWritten(EngineMessage):
    def __init__(self, path: str, **kw: Any):
        super().__init__(**kw)
        self.path = path


class MetricsReceived(EngineMessage):
    def __init__(self, rounds: dict[int, dict[str, float | None]], **kw: Any):
        super().__init__(**kw)
        self.rounds = rounds


class EngineNotice(EngineMessage):
    def __init__(self, text: str):
        super().__init__()
        self.text = text


class EngineError(EngineMessage):
    def __init__(self, kind: str, text: str, log: str | None, **kw: Any):
        super().__init__(**kw)
        self.kind = kind
        self.text = text
        self.log = log


class EngineBye(EngineMessage):
    pass


class EngineExited(EngineMessage):
    """The child process is gone (its stdout closed)."""

    def __init__(self, returncode: int | None, log_tail: str):
        super().__init__()
        self.returncode = returncode
        self.log_tail = log_tail


def parse_event(data: dict[str, Any], command: str | None) -> EngineMessage | None:
    """The typed message for one decoded event line; None for an event this version does not know."""
    kind = data.get("event")
    reply = {"reply_to": data.get("reply_to"), "command": command}
    if kind == "ready":
        return EngineReady(int(data.get("round", 0)), str(data.get("prompt", "")), data.get("log"), str(data.get("model", "")),
                           str(data.get("family", "")))
    if kind == "batch_ready":
        return BatchReady(RoundBatch.from_json(data["batch"]), **reply)
    if kind == "images":
        previous = data.get("previous_best")
        return ImagesArrived(int(data["round"]), int(data.get("size") or 0),
                             tuple(ImageItem.from_json(item) for item in data.get("images", [])),
                             ImageItem.from_json(previous) if previous else None, **reply)
    if kind == "labeled":
        label = data.get("label")
        total = data.get("labels_total")
        return Labeled(int(data["image_id"]), label if label in ("good", "bad") else None,
                       None if total is None else int(total), **reply)
    if kind == "best_chosen":
        return BestChosen(None if data["image_id"] is None else int(data["image_id"]), **reply)
    if kind == "submitted":
        return Submitted(int(data.get("round", 0)), **reply)
    if kind == "progress":
        round_ = data.get("round")
        return StageProgress(str(data["stage"]), int(data.get("done", 0)), int(data.get("total", 0)),
                             None if round_ is None else int(round_))
    if kind == "round_done":
        return RoundDone(RoundReport.from_json(data["report"]), **reply)
    if kind == "exported":
        return Exported(str(data["path"]), [str(path) for path in data.get("paths") or []], **reply)
    if kind == "report_written":
        return ReportWritten(str(data["path"]), **reply)
    if kind == "metrics":
        rounds = {int(k): dict(v) for k, v in (data.get("rounds") or {}).items()}
        return MetricsReceived(rounds, **reply)
    if kind == "notice":
        return EngineNotice(str(data.get("message", "")))
    if kind == "error":
        return EngineError(str(data.get("kind", "crash")), str(data.get("message", "the engine failed")),
                           data.get("log"), **reply)
    if kind == "bye":
        return EngineBye()
    return None
