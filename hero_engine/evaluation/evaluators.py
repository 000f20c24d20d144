"""Simulated evaluators: label a batch like a person with a fixed intent would.

An evaluator sees only the images. It scores each one for its intent, marks the
good ones and picks the best (or keeps the previous best), under the same rules
as a person: the best counts as good, and a round needs one more good image and
one bad image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from hero_engine.errors import HeroError
from hero_engine.evaluation import judge


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
        """HERO's rule with this intent: the best first, then every image as good as the best."""
        scores = [self.score(im) for im in images]
        success = [self.is_success(im) for im in images]
        previous = None if previous_best is None else (self.is_success(previous_best), self.score(previous_best))
        return feedback_from_scores(scores, success, previous)


def feedback_from_scores(scores: Sequence[float], success: Sequence[bool], previous_best: tuple[bool, float] | None) -> Feedback:
    """Labels a person with this intent would give, within the rules the engine enforces.

    The best is the image that fulfils the intent with the top score (the previous
    best is kept when it ranks higher). Good is every image as good as the best:
    when the best fulfils the intent, every image that does; until then, images
    scoring as high as it. A round needs one good image besides the best and one
    bad one, so the nearest miss is marked good, or the weakest success bad, when
    the batch leaves no other choice.
    """
    n = len(scores)
    if n < 2 or len(success) != n:
        raise HeroError("an evaluator needs at least two images, each with a score and a verdict")
    rank = [(bool(success[i]), scores[i]) for i in range(n)]
    order = sorted(range(n), key=lambda i: rank[i], reverse=True)
    keep_previous = previous_best is not None and previous_best > rank[order[0]]
    best = None if keep_previous else order[0]
    best_success, best_score = previous_best if keep_previous else rank[order[0]]
    good = [i for i in order if success[i]] if best_success else [i for i in order if scores[i] >= best_score]
    if best is not None and best not in good:
        good.insert(0, best)
    needed = 1 if best is None else 2
    if len(good) < needed:
        good = order[:needed]
    if len(good) >= n:
        good = order[: n - 1]
    return Feedback(good=sorted(good), best=best, scores=list(scores))


def _rgb(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


class RednessEvaluator(Evaluator):
    """Prefers redder images: works on any model, including random-weight ones."""

    name = "redness"
    description = "prefers redder images (good: red enough, or the reddest while none is; best: the reddest)"

    def score(self, image: Image.Image) -> float:
        rgb = _rgb(image)
        return float((rgb[..., 0] - (rgb[..., 1] + rgb[..., 2]) / 2).mean())

    def is_success(self, image: Image.Image) -> bool:
        return self.score(image) > 0.1


class FingersEvaluator(Evaluator):
    """Hand anomaly: a hand with exactly five fingers; closer counts are better."""

    name = "hand"
    description = "wants a hand with exactly five fingers (good: five fingers, or the nearest count while none has five)"
    prompt = "hand"

    def score(self, image: Image.Image) -> float:
        return -abs(judge.count_fingers(image) - 5)

    def is_success(self, image: Image.Image) -> bool:
        return judge.count_fingers(image) == 5


class CountingEvaluator(Evaluator):
    """Counting: exactly three circles, as the prompt asks; closer counts are better."""

    name = "counting"
    description = "wants exactly three circles (good: three, or the nearest count while none has three)"
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
    description = "wants a yellow flower (good: a yellow flower, or the yellowest while none is)"
    prompt = "a flower"
    colour = "yellow"

    def score(self, image: Image.Image) -> float:
        return judge.colour_share(image, self.colour)

    def is_success(self, image: Image.Image) -> bool:
        return judge.flower_colour(image) == self.colour


class SpatialEvaluator(Evaluator):
    """Spatial: the yellow object left of the blue one, as the prompt says; further left is better, a missing colour worst.

    Yellow and blue, because with guidance 5 the demo model draws both colours
    for this prompt about a third of the time and then puts them either way
    round about equally often: the relation, not the colours, is what fails.
    (For "a red circle left of a blue square" it draws both colours 1 time in 6
    and the relation right about 1 time in 8, under 5% in all.)
    """

    name = "spatial"
    description = "wants the yellow object left of the blue one (good: yellow clearly left of blue, or the nearest to it while none is)"
    prompt = "a yellow circle left of a blue square"
    left, right = "yellow", "blue"
    min_offset = 4.0  # pixels between the two centres, so side by side is not a coin flip

    def score(self, image: Image.Image) -> float:
        offset = judge.horizontal_offset(image, self.left, self.right)
        return -1.0 if offset is None else offset / image.width

    def is_success(self, image: Image.Image) -> bool:
        offset = judge.horizontal_offset(image, self.left, self.right)
        return offset is not None and offset > self.min_offset


class PersonalEvaluator(Evaluator):
    """Personal taste: one small yellow star on a dark background; each part of the look counts."""

    name = "personal"
    description = "wants one small yellow star on a dark background (good: that look, or the nearest to it while none has it)"
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
