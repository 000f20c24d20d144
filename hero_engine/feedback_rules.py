"""HERO's feedback rules, written once: what a label and a best may be, and when a round's feedback is enough.

A person gives each image of the open round a label (good, not good, or none yet) and
chooses one best: an image of the round, or from round 1 on the previous round's best,
kept. The best always counts as good. A round can be submitted once it is whole, has a
best, at least one good image besides the best and at least one that is not good: HERO
learns from the contrast.

Everything that changes feedback applies these rules to a ``RoundFeedback`` through
``apply``: the app as keys are pressed (hero_tui.labels), the store as it commits a
press (storage.labels.record_feedback), so the session, the worker, the evaluators
and the tests' fake engine, which all write through the store. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hero_engine.errors import HeroError

Label = Literal["good", "bad"] | None
LABELS = ("good", "bad", None)

CHOOSE_BEST = "choose the best image first"
GOOD_BESIDES_BEST = "mark at least one good image besides the best"
NEED_CONTRAST = "leave at least one image not good: HERO learns from the contrast"
NEED_GOOD = "mark at least one good image first"
BEST_STAYS_GOOD = "that image is the best, and the best must stay good: choose another best first"


class FeedbackRefused(HeroError):
    """A change HERO's rules (or the round's state) do not allow; the message says why, in one line."""


@dataclass(frozen=True)
class FeedbackChange:
    """One change of the open round's feedback: ``label`` of ``image_id`` ('good', 'bad' or None to clear it),
    or with kind 'best' ``image_id`` becomes the round's best (None clears the round's best)."""

    kind: Literal["label", "best"]
    image_id: int | None
    label: Label = None


@dataclass
class RoundFeedback:
    """The open round's feedback: every stored image's label, the best, and the previous round's best (kept by choosing it)."""

    round: int
    labels: dict[int, Label] = field(default_factory=dict)  # image id -> label, for the images stored so far
    best_id: int | None = None
    previous_best_id: int | None = None

    def copy(self) -> RoundFeedback:
        return RoundFeedback(self.round, dict(self.labels), self.best_id, self.previous_best_id)


def label_of(good: bool | None) -> Label:
    """The label a yes/no/unset answer stands for (the protocol's ``good``: true, false or null)."""
    return None if good is None else ("good" if good else "bad")


def apply(feedback: RoundFeedback, change: FeedbackChange) -> list[tuple[int, Label]]:
    """Apply one change to ``feedback`` in place, or raise FeedbackRefused and leave it as it was.

    Returns the labels the change wrote, (image id, label) each: a label change writes its
    label; a new best of this round is labeled good if it was not; keeping the previous
    best or clearing the best writes none.
    """
    if change.kind == "label":
        if change.label not in LABELS:
            raise FeedbackRefused(f"{change.label!r} is not a label: good, bad or none")
        _check_in_round(feedback, change.image_id)
        if change.image_id == feedback.best_id and change.label != "good":
            raise FeedbackRefused(BEST_STAYS_GOOD)
        feedback.labels[change.image_id] = change.label
        return [(change.image_id, change.label)]
    if change.kind == "best":
        if change.image_id is None or change.image_id == feedback.previous_best_id:
            feedback.best_id = change.image_id
            return []
        _check_in_round(feedback, change.image_id)
        feedback.best_id = change.image_id
        if feedback.labels[change.image_id] == "good":
            return []
        feedback.labels[change.image_id] = "good"  # the best always counts as good
        return [(change.image_id, "good")]
    raise FeedbackRefused(f"unknown feedback change {change.kind!r}")


def submit_problem(feedback: RoundFeedback, best_id: int | None = None, coming: int = 0, size: int | None = None) -> str | None:
    """Why the round cannot be submitted (with ``best_id`` as its best; default: its own), or None when it can."""
    if coming:
        return f"{coming} of {size} images still coming"
    best = feedback.best_id if best_id is None else best_id
    if best is None:
        return CHOOSE_BEST
    others = [label for image_id, label in feedback.labels.items() if image_id != best]
    if not any(label == "good" for label in others):
        return GOOD_BESIDES_BEST
    if all(label == "good" for label in others):
        return NEED_CONTRAST
    return None


def picker_problem(feedback: RoundFeedback) -> str | None:
    """Why a best cannot be chosen among the good images yet (from round 1 on), or None: it needs a good and a not-good image."""
    labels = feedback.labels.values()
    if not any(label == "good" for label in labels):
        return NEED_GOOD
    if all(label == "good" for label in labels):
        return NEED_CONTRAST
    return None


def _check_in_round(feedback: RoundFeedback, image_id: int | None) -> None:
    if image_id not in feedback.labels:
        raise FeedbackRefused(f"image {image_id} is not one of round {feedback.round}'s images")
