"""The open round's feedback in hero.db: read it, and commit a key press's changes under HERO's rules, all or none.

The app records labels itself, so a label is on disk before it is drawn whatever the
engine child is doing; the engine (the session, and through it the worker and the
evaluators) writes its own the same way, and reads them all from here when the round
is submitted. Every change goes through ``feedback_rules.apply``. Torch-free.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hero_engine.feedback_rules import (
    FeedbackChange,
    FeedbackRefused,
    RoundFeedback,
    apply,
)
from hero_engine.storage.store import LABEL_COUNT_SQL, SessionStore

LABEL_BUSY_TIMEOUT = 5.0  # seconds a front end's label write waits for the engine's short transactions


def open_for_labels(folder: Path) -> SessionStore:
    """The store as a front end opens it to record labels itself (``record_feedback``).

    Each commit is synchronous (FULL: the label survives a power cut, not only a killed
    process; one fsync per key press), and a write waits at most LABEL_BUSY_TIMEOUT for the
    engine's short transactions, so a stuck writer shows up as a failed label, not a frozen screen.
    """
    store = SessionStore(folder)
    store.db.execute("PRAGMA synchronous=FULL")
    store.db.execute(f"PRAGMA busy_timeout={int(LABEL_BUSY_TIMEOUT * 1000)}")
    return store


def read_round_feedback(store: SessionStore, round_: int) -> RoundFeedback:
    """Round ``round_``'s labels (of the images stored so far), its best, and the previous round's best."""
    return _read_round(store.db, round_)


def _read_round(db: sqlite3.Connection, round_: int) -> RoundFeedback:
    labels = dict(db.execute("SELECT id, label FROM images WHERE round = ? ORDER BY idx", (round_,)).fetchall())
    row = db.execute("SELECT best_image_id FROM rounds WHERE round = ?", (round_,)).fetchone()
    previous = db.execute("SELECT best_image_id FROM rounds WHERE round = ?", (round_ - 1,)).fetchone()
    return RoundFeedback(round_, labels, row[0] if row else None, previous[0] if previous else None)


def record_feedback(store: SessionStore, round_: int, changes: Sequence[FeedbackChange]) -> None:
    """Commit one key press's changes to the open round's feedback: all of them, or none.

    The round must be the open one (the last sampled, not submitted), and each change
    must pass HERO's rules. Raises FeedbackRefused, or sqlite3.Error when the write fails
    (disk full, database locked); either way nothing of the press is written and nothing
    earlier changes.
    """
    now = time.time()  # one time for the whole press: label_events rows of one press share it
    db = store.db
    db.execute("BEGIN IMMEDIATE")
    try:
        _record(db, round_, changes, now)
        db.execute("COMMIT")
    except BaseException:
        # A failed COMMIT (disk full) may leave the transaction open or may have rolled it back.
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise


def _record(db: sqlite3.Connection, round_: int, changes: Sequence[FeedbackChange], now: float) -> None:
    row = db.execute("SELECT submitted_at FROM rounds WHERE round = ?", (round_,)).fetchone()
    last = db.execute("SELECT MAX(round) FROM rounds").fetchone()[0]
    if row is None or row[0] is not None or round_ != last:
        raise FeedbackRefused(f"round {round_} is no longer open for labels")
    feedback = _read_round(db, round_)
    best_moved: set[int] = set()
    for change in changes:
        best_before = feedback.best_id
        for image_id, label in apply(feedback, change):
            db.execute("UPDATE images SET label = ?, labeled_at = ? WHERE id = ?", (label, now, image_id))
            db.execute("INSERT INTO label_events (at, image_id, label) VALUES (?, ?, ?)", (now, image_id, label))
        if change.kind != "best":
            continue
        db.execute("UPDATE rounds SET best_image_id = ? WHERE round = ?", (feedback.best_id, round_))
        event = (feedback.best_id, "best") if feedback.best_id is not None else (best_before, "best-cleared")
        if event[0] is not None:
            db.execute("INSERT INTO label_events (at, image_id, label) VALUES (?, ?, ?)", (now, *event))
        best_moved.update(i for i in (best_before, feedback.best_id) if i is not None)
    if best_moved:
        marks = ",".join("?" * len(best_moved))
        db.execute(
            f"UPDATE images SET is_best = (id IN (SELECT best_image_id FROM rounds WHERE best_image_id IS NOT NULL)) "
            f"WHERE id IN ({marks})", sorted(best_moved))


@dataclass(frozen=True)
class FeedbackSummary:
    """The last round's feedback as hero.db holds it."""

    round: int
    submitted: bool
    labels: dict[int, str | None]  # image id -> label
    best_id: int | None
    best: tuple[int, int] | None  # (round, idx) of the best: an earlier round's when the previous best is kept
    labels_total: int  # units of feedback in the whole session

    @property
    def labeled(self) -> int:
        return sum(label is not None for label in self.labels.values())

    @property
    def good(self) -> int:
        return sum(label == "good" for label in self.labels.values())


def feedback_summary(store: SessionStore) -> FeedbackSummary | None:
    """What hero.db holds for the last round (read now, in one transaction); None before any round."""
    db = store.db
    with store.read_transaction():
        row = db.execute("SELECT round, submitted_at, best_image_id FROM rounds ORDER BY round DESC LIMIT 1").fetchone()
        if row is None:
            return None
        round_, submitted_at, best_id = row
        labels = dict(db.execute("SELECT id, label FROM images WHERE round = ?", (round_,)).fetchall())
        best = db.execute("SELECT round, idx FROM images WHERE id = ?", (best_id,)).fetchone() if best_id else None
        total = db.execute(LABEL_COUNT_SQL).fetchone()[0]
    return FeedbackSummary(round_, submitted_at is not None, labels, best_id,
                           None if best is None else (best[0], best[1]), total)
