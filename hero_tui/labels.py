"""The labels of the open round as the person gives them: HERO's rules, undo, and the commands that store them.

Every change returns the commands that carry it to hero.db (in the protocol's
form). A change that could not be stored is taken back with ``restore``, so what
this object holds is always what hero.db holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hero_tui.batch import Label, RoundBatch

Command = dict[str, Any]
UNDO_LEVELS = 200


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

    def __init__(self, batch: RoundBatch):
        self.round = batch.round
        self.previous_best = batch.previous_best
        self._position = {item.id: item.idx for item in batch.images}
        self._order = [item.id for item in batch.images]
        self._labels: dict[int, Label] = {item.id: item.label for item in batch.images}
        self.best_id = batch.best_id
        self._undo: list[_Snapshot] = []

    def add_images(self, items) -> None:
        """More of the round's images, as they arrive while the rest are drawn (labels given so far stay)."""
        for item in items:
            if item.id not in self._labels:
                self._position[item.id] = item.idx
                self._labels[item.id] = item.label
        self._order = sorted(self._labels, key=self._position.__getitem__)

    # reading ------------------------------------------------------------------

    def label(self, image_id: int) -> Label:
        return self._labels.get(image_id)

    def is_best(self, image_id: int) -> bool:
        return image_id == self.best_id

    @property
    def good_count(self) -> int:
        return sum(1 for label in self._labels.values() if label == "good")

    @property
    def labeled_count(self) -> int:
        return sum(1 for label in self._labels.values() if label is not None)

    @property
    def good_ids(self) -> list[int]:
        return [i for i in self._order if self._labels[i] == "good"]

    @property
    def labels(self) -> dict[int, Label]:
        """image id -> label, for every image of the round."""
        return dict(self._labels)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    def problem(self, best_id: int | None = None) -> str | None:
        """Why this round cannot be submitted with ``best_id`` (default: the current best), or None."""
        best = self.best_id if best_id is None else best_id
        if best is None:
            return "choose the best image first (press b on it)"
        others = [i for i in self._order if i != best]
        if not any(self._labels[i] == "good" for i in others):
            return "mark at least one good image besides the best (space)"
        if all(self._labels[i] == "good" for i in others):
            return "leave at least one image not good: HERO learns from the contrast"
        return None

    def picker_problem(self) -> str | None:
        """Why the best-picker (round 1 on) cannot open yet: it needs a good and a not-good image."""
        if not self.good_ids:
            return "mark at least one good image first (space)"
        if all(label == "good" for label in self._labels.values()):
            return "leave at least one image not good: HERO learns from the contrast"
        return None

    def counts_line(self) -> str:
        """How many images are good, marked not good, and unlabeled (which count as not good on submit)."""
        bad = sum(1 for label in self._labels.values() if label == "bad")
        unlabeled = len(self._labels) - self.labeled_count
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

    def toggle_good(self, image_id: int) -> list[Command]:
        """Good becomes not good, anything else becomes good."""
        current = self._labels[image_id]
        if current == "good" and image_id == self.best_id:
            raise LabelRefused("this image is the best; press b on another image before marking it not good")
        new: Label = "bad" if current == "good" else "good"
        self._remember([image_id])
        self._labels[image_id] = new
        return [_label_command(image_id, new)]

    def choose_best(self, image_id: int) -> list[Command]:
        """Make an image of this round (or the previous best, to keep it) the best; a new best counts as good."""
        if image_id == self.best_id:
            return []
        keeps_previous = self.previous_best is not None and image_id == self.previous_best.id
        if not keeps_previous and image_id not in self._labels:
            raise LabelRefused("that image is not part of this round")
        self._remember([] if keeps_previous else [image_id], moved_best=True)
        self.best_id = image_id
        if not keeps_previous:
            self._labels[image_id] = "good"
        return [{"cmd": "choose_best", "image_id": image_id}]

    def undo(self) -> tuple[list[Command], list[int]]:
        """Restore the state before the last change; returns the commands and the images it touched."""
        if not self._undo:
            raise LabelRefused("nothing to undo in this round")
        snapshot = self._undo.pop()
        best_after = snapshot.best_id if snapshot.moved_best else self.best_id
        if best_after is not None and snapshot.labels.get(best_after, "good") != "good":
            raise LabelRefused("that would leave the best not good; press b on another image first")
        commands: list[Command] = []
        touched = list(snapshot.labels)
        if snapshot.moved_best and snapshot.best_id != self.best_id:
            touched.extend(i for i in (self.best_id, snapshot.best_id) if i is not None)
            self.best_id = snapshot.best_id
            commands.append({"cmd": "choose_best", "image_id": snapshot.best_id})
        for image_id, label in snapshot.labels.items():
            if self._labels[image_id] != label:
                self._labels[image_id] = label
                commands.append(_label_command(image_id, label))
        return commands, touched

    def state(self) -> tuple[dict[int, Label], int | None, list[_Snapshot]]:
        """Everything a change may touch, for ``restore`` when the change is not stored."""
        return dict(self._labels), self.best_id, list(self._undo)

    def restore(self, state: tuple[dict[int, Label], int | None, list[_Snapshot]]) -> None:
        labels, self.best_id, undo = state
        self._labels, self._undo = dict(labels), list(undo)

    def _remember(self, image_ids: list[int], moved_best: bool = False) -> None:
        self._undo.append(_Snapshot({i: self._labels[i] for i in image_ids}, moved_best, self.best_id))
        del self._undo[:-UNDO_LEVELS]


def _label_command(image_id: int, label: Label) -> Command:
    return {"cmd": "label", "image_id": image_id, "good": None if label is None else label == "good"}
