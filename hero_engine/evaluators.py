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

from hero_engine.demo import judge
from hero_engine.errors import HeroError


@dataclass(frozen=True)
class Feedback:
    good: list[int]  # batch positions of the good images (the best included when it is in the batch)
    best: int | None  # batch position of the best, or None to keep the previous best
    scores: list[float]  # the evaluator's score of each image, in batch order


class Evaluator:
    """Scores images for one intent; subclasses define ``score``."""

    name = "base"
    description = ""
    prompt = ""  # the prompt the intent is about (the benchmark's default); "" where any prompt will do

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
    return Feedback(good=sorted(good), best=best, scores=list(scores))


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


class FingersEvaluator(Evaluator):
    """Hand anomaly: a hand with exactly five fingers; closer counts are better."""

    name = "hand"
    description = "wants a hand with exactly five fingers (good: a finger count nearer five than the batch median)"
    prompt = "hand"

    def score(self, image: Image.Image) -> float:
        return -abs(judge.count_fingers(image) - 5)

    def is_success(self, image: Image.Image) -> bool:
        return judge.count_fingers(image) == 5


class CountingEvaluator(Evaluator):
    """Counting: exactly three circles, as the prompt asks; closer counts are better."""

    name = "counting"
    description = "wants exactly three circles (good: a count nearer three than the batch median)"
    prompt = "three circles"

    def score(self, image: Image.Image) -> float:
        return -abs(judge.count_blobs(image) - 3)

    def is_success(self, image: Image.Image) -> bool:
        return judge.count_blobs(image) == 3


class AttributeEvaluator(Evaluator):
    """Attribute: a flower in a colour the model seldom gives it unasked; more of that colour is better.

    The paper's blue rose. Yellow, because with guidance 5 the demo model draws
    a blue flower for "a flower" almost never (about 1 in 60, below what HERO
    can build on), and a yellow one about 1 in 7.
    """

    name = "attribute"
    description = "wants a yellow flower (good: more of the flower yellow than the batch median)"
    prompt = "a flower"
    colour = "yellow"

    def score(self, image: Image.Image) -> float:
        return judge.colour_share(image, self.colour)

    def is_success(self, image: Image.Image) -> bool:
        return judge.flower_colour(image) == self.colour


class SpatialEvaluator(Evaluator):
    """Spatial: red left of blue; the further left the red, the better, and a missing colour is worst."""

    name = "spatial"
    description = "wants the red object left of the blue one (good: red further left of blue than the batch median)"
    prompt = "a red circle left of a blue square"
    min_offset = 4.0  # pixels between the two centres, so side by side is not a coin flip

    def score(self, image: Image.Image) -> float:
        offset = judge.horizontal_offset(image, "red", "blue")
        return -1.0 if offset is None else offset / image.width

    def is_success(self, image: Image.Image) -> bool:
        offset = judge.horizontal_offset(image, "red", "blue")
        return offset is not None and offset > self.min_offset


class PersonalEvaluator(Evaluator):
    """Personal taste: one small yellow star on a dark background; each part of the look counts."""

    name = "personal"
    description = "wants one small yellow star on a dark background (good: more of that look than the batch median)"
    prompt = "a small yellow star"

    def score(self, image: Image.Image) -> float:
        look = judge.star_look(image)
        smallness = 1.0 - min(look.area, 4 * judge.SMALL_STAR_AREA) / (4 * judge.SMALL_STAR_AREA)
        parts = (look.dark_background, look.small, look.objects == 1)
        return judge.colour_share(image, "yellow") + sum(map(float, parts)) + 0.5 * smallness

    def is_success(self, image: Image.Image) -> bool:
        look = judge.star_look(image)
        return look.colour == "yellow" and look.small and look.dark_background and look.objects == 1


EVALUATORS: dict[str, Callable[[], Evaluator]] = {
    e.name: e
    for e in (RednessEvaluator, FingersEvaluator, CountingEvaluator, AttributeEvaluator, SpatialEvaluator, PersonalEvaluator)
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
