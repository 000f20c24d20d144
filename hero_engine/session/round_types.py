"""What the round API hands a front end: a round's images, its batch, and the report of its update."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hero_engine.storage.store import ImageRow


@dataclass(frozen=True)
class ImageInfo:
    id: int
    round: int
    idx: int
    path: Path
    label: str | None  # 'good', 'bad' or None while unlabeled
    is_best: bool

    @classmethod
    def from_row(cls, row: ImageRow, session_folder: Path) -> ImageInfo:
        return cls(row.id, row.round, row.idx, session_folder / row.path, row.label, row.is_best)


@dataclass(frozen=True)
class Batch:
    round: int
    prompt: str
    images: list[ImageInfo]
    best_id: int | None  # the best chosen so far in this round
    previous_best: ImageInfo | None  # the best after the previous round (may be kept)
    submitted: bool
    size: int  # images the round will hold; fewer are in ``images`` while the rest are drawn

    @property
    def coming(self) -> int:
        return self.size - len(self.images)


@dataclass
class RoundReport:
    round: int
    good: int
    bad: int
    labels_total: int
    mean_reward: float
    seconds: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    rewards: list[float] = field(default_factory=list)  # each image's reward, in batch order
