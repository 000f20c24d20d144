"""The person's labels go to hero.db from the app itself, before the screen shows them.

Why the app writes and not the engine child: a label may only be drawn once it is
committed, whatever the engine is doing (busy with a stage, stopped, killed,
restarting). Were the engine the only writer, the screen would have to show labels as
pending until it answered, and hold and resend them across restarts. The store is
torch-free (stdlib sqlite3, WAL), so the app commits each key press in its own
transaction, in the key's handler, and draws only after the commit returns; the
engine reads the labels from hero.db when the round is submitted, and keeps no copy
of its own. Both connections wait on each other's short transactions (busy timeout).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from hero_engine.errors import HeroError
from hero_engine.feedback_rules import FeedbackChange, FeedbackRefused
from hero_engine.storage.labels import (
    FeedbackSummary,
    feedback_summary,
    open_for_labels,
    record_feedback,
)
from hero_engine.storage.store import SessionStore

log = logging.getLogger(__name__)


class LabelNotSaved(Exception):
    """A key press whose labels were not committed; the message says why, in one line.

    ``refused``: hero.db holds a different round state than the screen (not a failed write).
    """

    def __init__(self, message: str, refused: bool = False):
        super().__init__(message)
        self.refused = refused


class LabelWriter:
    """The app's own connection to the session's hero.db, opened on first use."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._store: SessionStore | None = None

    @property
    def store(self) -> SessionStore:
        if self._store is None:
            self._store = open_for_labels(self.folder)
        return self._store

    def write(self, round_: int, changes: Sequence[FeedbackChange]) -> None:
        """Commit one key press's changes, all or none; raises LabelNotSaved when nothing was written."""
        if not changes:
            return
        try:
            record_feedback(self.store, round_, changes)
        except FeedbackRefused as refusal:
            raise LabelNotSaved(f"not saved: {refusal}", refused=True) from None
        except (sqlite3.Error, OSError, HeroError) as exc:
            log.warning("label not saved (%s): %s", changes, exc)
            raise LabelNotSaved(_failure_line(exc)) from None

    def summary(self) -> FeedbackSummary | None:
        """The last round's labels read back from hero.db now (raises LabelNotSaved when it cannot be read)."""
        try:
            return feedback_summary(self.store)
        except (sqlite3.Error, OSError, HeroError) as exc:
            raise LabelNotSaved(_failure_line(exc, doing="read")) from None

    def metrics(self) -> dict[int, dict[str, float | None]] | None:
        """Every learned round's metrics as hero.db holds them now; None when it cannot be read."""
        try:
            return self.store.metrics()
        except (sqlite3.Error, OSError, HeroError) as exc:
            log.warning("reading the metrics from hero.db: %s", exc)
            return None

    def close(self) -> None:
        if self._store is not None:
            try:
                self._store.close()
            except sqlite3.Error as exc:
                log.warning("closing hero.db: %s", exc)
            self._store = None


def _failure_line(exc: BaseException, doing: str = "write") -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "full" in text:
        return f"not saved: the disk is full ({text}); free some space and press the key again"
    if "locked" in text or "busy" in text:
        return f"not saved: hero.db is busy ({text}); press the key again"
    if doing == "read":
        return f"hero.db could not be read ({type(exc).__name__}: {text})"
    return f"not saved: hero.db could not be written ({type(exc).__name__}: {text})"


def describe(summary: FeedbackSummary | None, shown: dict[int, str | None] | None = None,
             shown_best: int | None = None) -> str:
    """One or two lines for a person: what hero.db holds, and whether the screen shows the same."""
    if summary is None:
        return "hero.db holds no round yet: there are no labels to lose."
    if summary.submitted:
        text = f"Round {summary.round} is submitted: its {len(summary.labels)} labels are saved in hero.db"
    else:
        best = "no best yet" if summary.best is None else (
            f"best #{summary.best[1] + 1}" if summary.best[0] == summary.round else f"best kept from round {summary.best[0]}")
        count = f"{summary.labeled} label{'' if summary.labeled == 1 else 's'}"
        text = f"{count} of round {summary.round} are saved in hero.db ({summary.good} good, {best})"
    text += f"; {summary.labels_total} in the whole session."
    if shown is not None and not summary.submitted:
        if shown == summary.labels and shown_best == summary.best_id:
            text += " They are the labels on screen."
        else:
            text += " The screen shows other labels: after a restart (r) it shows hero.db's."
    return text
