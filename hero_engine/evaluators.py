"""Simulated evaluators: label a batch like a person with a fixed intent would.

An evaluator sees only the images. It scores each one for its intent, marks the
good ones and picks the best (or keeps the previous best), under the same rules
as a person: the best counts as good, and a round needs one more good image and
one bad image.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from hero_engine.errors import HeroError


@dataclass(frozen=True)
class Feedback:
    good: list[int]  # batch positions of the good images (the best included when it is in the batch)
    best: int | None  # batch position of the best, or None to keep the previous best


class Evaluator:
    """Scores images for one intent; subclasses define ``score``."""

    name = "base"
    description = ""

    def score(self, image: Image.Image) -> float:
        raise NotImplementedError

    def is_success(self, image: Image.Image) -> bool:
        """Whether the image fulfils the intent outright (for success rates)."""
        raise NotImplementedError

    def judge(self, images: Sequence[Image.Image], previous_best: Image.Image | None = None) -> Feedback:
        """Good = scores above the batch median; best = the top score (or the previous best if higher)."""
        scores = [self.score(im) for im in images]
        return feedback_from_scores(scores, None if previous_best is None else self.score(previous_best))


def feedback_from_scores(scores: Sequence[float], previous_best: float | None) -> Feedback:
    """Median split plus the HERO rules, so every round is one the engine accepts."""
    n = len(scores)
    if n < 2:
        raise HeroError("an evaluator needs at least two images")
    order = sorted(range(n), key=lambda i: scores[i], reverse=True)
    median = statistics.median(scores)
    good = [i for i in order if scores[i] > median]
    top = order[0]
    keep_previous = previous_best is not None and previous_best > scores[top]
    best = None if keep_previous else top
    if top not in good:
        good.insert(0, top)
    if len([i for i in good if i != best]) < 1:
        good = order[:2]
    if len(good) >= n:
        good = order[: n - 1]
    return Feedback(good=sorted(good), best=best)


def _rgb(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


class RednessEvaluator(Evaluator):
    """Prefers redder images: works on any model, including random-weight ones."""

    name = "redness"
    description = "prefers redder images (good: redder than the batch median; best: the reddest)"

    def score(self, image: Image.Image) -> float:
        rgb = _rgb(image)
        return float((rgb[..., 0] - (rgb[..., 1] + rgb[..., 2]) / 2).mean())

    def is_success(self, image: Image.Image) -> bool:
        return self.score(image) > 0.1


EVALUATORS: dict[str, Callable[[], Evaluator]] = {
    RednessEvaluator.name: RednessEvaluator,
}


def get_evaluator(name: str) -> Evaluator:
    try:
        return EVALUATORS[name]()
    except KeyError:
        raise HeroError(f"unknown evaluator '{name}': choose one of {', '.join(sorted(EVALUATORS))}") from None


def label_batch(session, evaluator: Evaluator) -> Feedback:
    """Give the session's open round the evaluator's labels and best, as a person would with keys."""
    batch = session.propose()
    images = [Image.open(info.path) for info in batch.images]
    previous = Image.open(batch.previous_best.path) if batch.previous_best else None
    feedback = evaluator.judge(images, previous)
    good = set(feedback.good)
    session.choose_best(batch.images[feedback.best].id if feedback.best is not None else batch.previous_best.id)
    for info in batch.images:
        session.label(info.id, info.idx in good)
    return feedback
