"""A session as stored, read once: its settings, every round's images with their labels and best, and its metrics.

Read-only (SQLite opened with ``mode=ro``, one read transaction), so a report or a dataset can be
made of a session that another process has open, or that lives on a read-only disk. Torch-free.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hero_engine.config import HeroConfig
from hero_engine.errors import HeroError
from hero_engine.storage.store import DB_FILE, SessionStore

# How a label reads outside hero.db: a round's images not marked good are "not good" once it is submitted.
LABEL_NAMES = {"good": "good", "bad": "not good", None: "unlabeled"}


@dataclass(frozen=True)
class RecordedImage:
    id: int
    round: int
    idx: int
    label: str | None  # 'good', 'bad' or None, as hero.db holds it
    is_best: bool  # some round chose it as its best
    path: Path  # the PNG, absolute
    labeled_at: float | None  # unix time of the label it holds (None while unlabeled)

    @property
    def label_name(self) -> str:
        return LABEL_NAMES[self.label]


@dataclass(frozen=True)
class RecordedRound:
    round: int
    started_at: float
    submitted_at: float | None
    updated_at: float | None
    best_image_id: int | None  # the best after this round: one of its images, or an earlier round's kept
    images: list[RecordedImage]
    metrics: dict[str, float | None] = field(default_factory=dict)  # empty until the round's update is done


@dataclass(frozen=True)
class SessionRecord:
    folder: Path
    config: HeroConfig
    created_at: float | None
    rounds: list[RecordedRound]

    def images(self) -> list[RecordedImage]:
        return [image for round_ in self.rounds for image in round_.images]

    def image(self, image_id: int | None) -> RecordedImage | None:
        return next((image for image in self.images() if image.id == image_id), None)

    def updated_rounds(self) -> list[RecordedRound]:
        """The rounds whose update is done: those with metrics and a checkpoint."""
        return [round_ for round_ in self.rounds if round_.updated_at is not None]


def read_session(folder: Path) -> SessionRecord:
    """The session in ``folder`` as stored now; one with no image yet is refused (HeroError), as is a folder that is not a session."""
    folder = Path(folder)
    info, config = SessionStore.read_header(folder)  # not a session, damaged, or newer: one line each
    try:
        db = sqlite3.connect(f"file:{folder / DB_FILE}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise HeroError(f"{folder / DB_FILE} cannot be read ({exc})") from None
    try:
        db.execute("BEGIN")  # one snapshot, even while the engine writes
        rounds = _read_rounds(db, folder)
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        raise HeroError(f"{folder / DB_FILE} cannot be read ({exc})") from None
    finally:
        db.close()
    if not any(round_.images for round_ in rounds):
        raise HeroError(f"session {folder} has no rounds yet: label a round first (`hero-tui resume {folder}`)")
    created_at = info.get("created_at")
    return SessionRecord(folder, config, created_at if isinstance(created_at, (int, float)) else None, rounds)


def _read_rounds(db: sqlite3.Connection, folder: Path) -> list[RecordedRound]:
    metrics: dict[int, dict[str, Any]] = {}
    for round_, name, value in db.execute("SELECT round, name, value FROM metrics"):
        metrics.setdefault(round_, {})[name] = value
    images: dict[int, list[RecordedImage]] = {}
    for id_, round_, idx, label, is_best, path, labeled_at in db.execute(
            "SELECT id, round, idx, label, is_best, path, labeled_at FROM images ORDER BY round, idx"):
        images.setdefault(round_, []).append(RecordedImage(
            id_, round_, idx, label, bool(is_best), folder / path, labeled_at if label is not None else None))
    return [
        RecordedRound(round_, started, submitted, updated, best, images.get(round_, []), metrics.get(round_, {}))
        for round_, started, submitted, updated, best in db.execute(
            "SELECT round, started_at, submitted_at, updated_at, best_image_id FROM rounds ORDER BY round")
    ]


def noise_source(config: HeroConfig, round_: int) -> str:
    """Where a round's initial noises came from (hero_engine.session.round_sampler draws them so)."""
    if round_ == 0 or not config.guided_noise:
        return f"plain Gaussian noise, seeded by (seed {config.seed}, round {round_})"
    return (f"feedback-guided: round {round_ - 1}'s best and good images' noise (best_ratio {config.best_ratio}, "
            f"noise_eps {config.noise_eps}), seeded by (seed {config.seed}, round {round_})")


def lora_round(round_: int) -> int | None:
    """The LoRA round a round's images were drawn with: the update after the round before (None: the base model)."""
    return round_ - 1 if round_ > 0 else None
