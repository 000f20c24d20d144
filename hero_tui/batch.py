"""Typed views of the protocol's BATCH, IMAGE and REPORT objects (see hero_engine.protocol)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

Label = Literal["good", "bad"] | None


@dataclass(frozen=True)
class ImageItem:
    id: int
    round: int
    idx: int
    path: Path
    label: Label
    is_best: bool

    @property
    def number(self) -> int:
        """The number a person reads on the thumbnail (1-based, so "image 1" is the first)."""
        return self.idx + 1

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageItem:
        label = data.get("label")
        return cls(
            id=int(data["id"]),
            round=int(data["round"]),
            idx=int(data["idx"]),
            path=Path(data["path"]),
            label=label if label in ("good", "bad") else None,
            is_best=bool(data.get("is_best", False)),
        )


@dataclass(frozen=True)
class RoundBatch:
    round: int
    prompt: str
    submitted: bool
    best_id: int | None
    previous_best: ImageItem | None
    images: tuple[ImageItem, ...]
    size: int = 0  # images the round will hold; 0: as many as are here

    @property
    def total(self) -> int:
        return max(self.size, len(self.images))

    @property
    def coming(self) -> int:
        """Images of the round still being drawn."""
        return self.total - len(self.images)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RoundBatch:
        previous = data.get("previous_best")
        best = data.get("best_id")
        return cls(
            round=int(data["round"]),
            prompt=str(data.get("prompt", "")),
            submitted=bool(data.get("submitted", False)),
            best_id=None if best is None else int(best),
            previous_best=ImageItem.from_json(previous) if previous else None,
            images=tuple(ImageItem.from_json(item) for item in data.get("images", [])),
            size=int(data.get("size") or 0),
        )

    def with_images(self, items: tuple[ImageItem, ...] | list[ImageItem]) -> RoundBatch:
        """This batch with more of its images, in batch order; an image it has already is kept as it is."""
        known = {item.id for item in self.images}
        images = sorted([*self.images, *(item for item in items if item.id not in known)], key=lambda item: item.idx)
        return replace(self, images=tuple(images))

    def image(self, image_id: int) -> ImageItem | None:
        for item in self.images:
            if item.id == image_id:
                return item
        if self.previous_best is not None and self.previous_best.id == image_id:
            return self.previous_best
        return None


@dataclass(frozen=True)
class RoundReport:
    round: int
    good: int
    bad: int
    labels_total: int
    mean_reward: float | None
    seconds: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float | None] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RoundReport:
        reward = data.get("mean_reward")
        return cls(
            round=int(data["round"]),
            good=int(data.get("good", 0)),
            bad=int(data.get("bad", 0)),
            labels_total=int(data.get("labels_total", 0)),
            mean_reward=None if reward is None else float(reward),
            seconds={str(k): float(v) for k, v in (data.get("seconds") or {}).items() if v is not None},
            metrics=dict(data.get("metrics") or {}),
        )

    @classmethod
    def from_metrics(cls, round_: int, values: dict[str, float | None]) -> RoundReport:
        """A report rebuilt from the metrics the engine stored for a round (as the `metrics` event gives them)."""
        good, bad = int(values.get("good") or 0), int(values.get("bad") or 0)
        seconds = {k.removeprefix("seconds_"): v for k, v in values.items() if k.startswith("seconds_") and v is not None}
        return cls(round=round_, good=good, bad=bad, labels_total=(round_ + 1) * (good + bad),
                   mean_reward=values.get("reward_mean"), seconds=seconds, metrics=dict(values))
