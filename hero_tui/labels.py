"""The labels of the open round as the person gives them: HERO's rules applied as keys are pressed, and undo.

The rules are hero_engine.feedback_rules, the same the store applies when it commits:
every change returns the store's own change objects (FeedbackChange), which the app
commits to hero.db as they are. A change that could not be stored is taken back with
``restore``, so what this object holds is always what hero.db holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hero_engine import feedback_rules
from hero_engine.feedback_rules import FeedbackChange, FeedbackRefused, RoundFeedback
from hero_tui.batch import Label, RoundBatch

UNDO_LEVELS = 200
# The keys hints name when the app passes none (tests of the rules and of the controller): the app's own keys, which
# tests/test_app_commands.py holds equal to its bindings. The app passes keys.key_names, remapped keys included.
DEFAULT_KEYS = {"good": "space", "best": "b", "submit": "s", "help": "?", "restart_engine": "r", "quit": "q", "export": "e"}
# The keys that settle each problem, added where the app says it (the rules name no keys); keys.key_names fill them.
KEY_HINTS = {
    feedback_rules.CHOOSE_BEST: " (press {best} on it)",
    feedback_rules.GOOD_BESIDES_BEST: " ({good})",
    feedback_rules.NEED_GOOD: " ({good})",
    feedback_rules.BEST_STAYS_GOOD: " (press {best} on another image)",
}


class LabelRefused(Exception):
    """A change HERO's rules or the engine would not accept; the message says why, in one line."""


@dataclass(frozen=True)
class _Snapshot:
    """Labels of the images a change touched, and the best if the change moved it, as they were before it."""

    labels: dict[int, Label]
    moved_best: bool
    best_id: int | None


class RoundLabels:
    """Labels and best of one round, with several levels of undo."""

    def __init__(self, batch: RoundBatch, keys: Mapping[str, str] | None = None):
        """``keys``: each binding id's key as the problems' hints name it (keys.key_names; default: the app's own)."""
        self._keys = dict(keys) if keys is not None else DEFAULT_KEYS
        self.round = batch.round
        self.previous_best = batch.previous_best
        self._position = {item.id: item.idx for item in batch.images}
        self._feedback = RoundFeedback(
            batch.round, {item.id: item.label for item in batch.images}, batch.best_id,
            None if batch.previous_best is None else batch.previous_best.id,
        )
        self._undo: list[_Snapshot] = []

    def add_images(self, items) -> None:
        """More of the round's images, as they arrive while the rest are drawn (labels given so far stay)."""
        labels = self._feedback.labels
        for item in items:
            if item.id not in labels:
                self._position[item.id] = item.idx
                labels[item.id] = item.label
        self._feedback.labels = dict(sorted(labels.items(), key=lambda entry: self._position[entry[0]]))

    # reading ------------------------------------------------------------------

    @property
    def best_id(self) -> int | None:
        return self._feedback.best_id

    def label(self, image_id: int) -> Label:
        return self._feedback.labels.get(image_id)

    def is_best(self, image_id: int) -> bool:
        return image_id == self.best_id

    @property
    def good_count(self) -> int:
        return sum(1 for label in self._feedback.labels.values() if label == "good")

    @property
    def labeled_count(self) -> int:
        return sum(1 for label in self._feedback.labels.values() if label is not None)

    @property
    def labels(self) -> dict[int, Label]:
        """image id -> label, for every image of the round."""
        return dict(self._feedback.labels)

    def problem(self, best_id: int | None = None) -> str | None:
        """Why this round cannot be submitted with ``best_id`` (default: the current best), or None."""
        return self._with_keys(feedback_rules.submit_problem(self._feedback, best_id))

    def picker_problem(self) -> str | None:
        """Why the best-picker (round 1 on) cannot open yet: it needs a good and a not-good image."""
        return self._with_keys(feedback_rules.picker_problem(self._feedback))

    def counts_line(self) -> str:
        """How many images are good, marked not good, and unlabeled (which count as not good on submit)."""
        labels = self._feedback.labels.values()
        bad = sum(1 for label in labels if label == "bad")
        unlabeled = len(labels) - self.labeled_count
        return (f"{self.good_count} good · {bad} marked not good · "
                f"{unlabeled} unlabeled {'counts' if unlabeled == 1 else 'count'} as not good")

    def best_line(self) -> str:
        """Which image is the best, as a person reads it."""
        if self.best_id is None:
            return "no best chosen"
        if self.previous_best is not None and self.best_id == self.previous_best.id:
            return f"best: kept from round {self.previous_best.round} (image {self.previous_best.number})"
        return f"best: image {self._position[self.best_id] + 1}"

    # changing -------------------------------------------------------------------

    def toggle_good(self, image_id: int) -> list[FeedbackChange]:
        """Good becomes not good, anything else becomes good."""
        new: Label = "bad" if self.label(image_id) == "good" else "good"
        return self._change([FeedbackChange("label", image_id, new)], [image_id])

    def choose_best(self, image_id: int) -> list[FeedbackChange]:
        """Make an image of this round (or the previous best, to keep it) the best; a new best counts as good."""
        if image_id == self.best_id:
            return []
        touched = [image_id] if image_id in self._feedback.labels else []
        return self._change([FeedbackChange("best", image_id)], touched, moved_best=True)

    def undo(self) -> tuple[list[FeedbackChange], list[int]]:
        """Restore the state before the last change; returns the changes and the images it touched."""
        if not self._undo:
            raise LabelRefused("nothing to undo in this round")
        snapshot = self._undo[-1]
        changes: list[FeedbackChange] = []
        touched = list(snapshot.labels)
        if snapshot.moved_best and snapshot.best_id != self.best_id:
            touched.extend(i for i in (self.best_id, snapshot.best_id) if i is not None)
            changes.append(FeedbackChange("best", snapshot.best_id))
        changes.extend(FeedbackChange("label", image_id, label) for image_id, label in snapshot.labels.items()
                       if self._feedback.labels[image_id] != label)
        self._feedback = self._applied(changes)
        self._undo.pop()
        return changes, touched

    def submitted(self) -> list[int]:
        """The round as submitted: its unlabeled images now count as not good, as hero.db holds them, and nothing is
        left to undo. Returns the images that changed."""
        unlabeled = [image_id for image_id, label in self._feedback.labels.items() if label is None]
        for image_id in unlabeled:
            self._feedback.labels[image_id] = "bad"
        self._undo.clear()
        return unlabeled

    def state(self) -> tuple[RoundFeedback, list[_Snapshot]]:
        """Everything a change may touch, for ``restore`` when the change is not stored."""
        return self._feedback.copy(), list(self._undo)

    def restore(self, state: tuple[RoundFeedback, list[_Snapshot]]) -> None:
        feedback, undo = state
        self._feedback, self._undo = feedback.copy(), list(undo)

    def _change(self, changes: list[FeedbackChange], touched: list[int], moved_best: bool = False) -> list[FeedbackChange]:
        """Apply ``changes`` under HERO's rules, remembering the labels of ``touched`` (and the best) for undo."""
        snapshot = _Snapshot({i: self._feedback.labels[i] for i in touched}, moved_best, self.best_id)
        self._feedback = self._applied(changes)
        self._undo.append(snapshot)
        del self._undo[:-UNDO_LEVELS]
        return changes

    def _applied(self, changes: list[FeedbackChange]) -> RoundFeedback:
        """The round's feedback after ``changes`` under HERO's rules (this one unchanged); LabelRefused says why not."""
        trial = self._feedback.copy()
        try:
            for change in changes:
                feedback_rules.apply(trial, change)
        except FeedbackRefused as refusal:
            raise LabelRefused(self._with_keys(str(refusal))) from None
        return trial

    def _with_keys(self, problem: str | None) -> str | None:
        return None if problem is None else problem + KEY_HINTS.get(problem, "").format(**self._keys)
