"""RoundLabels: HERO's submit rules, undo, and the changes each key press commits to hero.db."""

from pathlib import Path

import pytest

from hero_engine.feedback_rules import FeedbackChange
from hero_tui.batch import ImageItem, RoundBatch
from hero_tui.labels import LabelRefused, RoundLabels


def batch(n: int = 4, round_: int = 0, previous_best: ImageItem | None = None) -> RoundBatch:
    images = tuple(ImageItem(100 + i, round_, i, Path(f"/x/{i}.png"), None, False) for i in range(n))
    return RoundBatch(round_, "p", False, None, previous_best, images)


def test_toggle_good_cycles_and_sends_label_changes():
    labels = RoundLabels(batch())
    assert labels.toggle_good(100) == [FeedbackChange("label", 100, "good")]
    assert labels.toggle_good(100) == [FeedbackChange("label", 100, "bad")]
    assert labels.label(100) == "bad"
    assert labels.toggle_good(100) == [FeedbackChange("label", 100, "good")]


def test_best_counts_as_good_and_cannot_be_toggled_off():
    labels = RoundLabels(batch())
    assert labels.choose_best(101) == [FeedbackChange("best", 101)]
    assert labels.label(101) == "good"
    with pytest.raises(LabelRefused, match="best"):
        labels.toggle_good(101)


@pytest.mark.parametrize(
    "good, best, problem",
    [
        ([], None, "best"),
        ([], 100, "besides the best"),
        ([101, 102, 103], 100, "not good"),
        ([101], 100, None),
    ],
)
def test_submit_rules(good, best, problem):
    labels = RoundLabels(batch())
    for image_id in good:
        labels.toggle_good(image_id)
    if best is not None:
        labels.choose_best(best)
    found = labels.problem()
    assert (found is None) if problem is None else (problem in found)


def test_undo_several_levels_restores_labels_and_best():
    labels = RoundLabels(batch())
    labels.toggle_good(100)
    labels.choose_best(101)
    labels.choose_best(102)
    changes, touched = labels.undo()  # back to best 101; 102 unlabeled again
    assert changes == [FeedbackChange("best", 101), FeedbackChange("label", 102, None)]
    assert labels.best_id == 101 and labels.label(102) is None and set(touched) >= {101, 102}
    changes, _ = labels.undo()  # the first best is cleared; 101 unlabeled again
    assert changes == [FeedbackChange("best", None), FeedbackChange("label", 101, None)]
    assert labels.best_id is None
    changes, _ = labels.undo()
    assert changes == [FeedbackChange("label", 100, None)]
    with pytest.raises(LabelRefused, match="nothing to undo"):
        labels.undo()


def test_keeping_the_previous_best_counts_every_good_image_of_the_round():
    previous = ImageItem(7, 0, 3, Path("/x/prev.png"), "good", True)
    labels = RoundLabels(batch(round_=1, previous_best=previous))
    assert labels.picker_problem() is not None
    labels.toggle_good(100)
    assert labels.picker_problem() is None
    assert labels.problem(best_id=100) is not None  # the only good image cannot also be the best
    assert labels.problem(best_id=7) is None
    assert labels.choose_best(7) == [FeedbackChange("best", 7)]
    assert labels.label(100) == "good"
