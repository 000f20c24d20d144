"""HERO's feedback rules (hero_engine.feedback_rules) and every writer of feedback following them alike.

The same key presses go to the app's labels (hero_tui.labels), to the store as the engine
writes (storage.labels.record_feedback, which HeroSession.label and choose_best call), and to
the tests' fake engine over the protocol; each must refuse the same presses, end with the
same labels and best, and answer a submit the same way. Change a rule in feedback_rules and
all three follow (or, were one of them to keep a copy of a rule, this test tells them apart).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tui_support import fake_engine, make_session

from hero_engine import feedback_rules
from hero_engine.feedback_rules import (
    FeedbackChange,
    FeedbackRefused,
    RoundFeedback,
    apply,
    submit_problem,
)
from hero_engine.storage.labels import read_round_feedback, record_feedback
from hero_engine.storage.store import SessionStore
from hero_tui.batch import ImageItem, RoundBatch
from hero_tui.labels import LabelRefused, RoundLabels

# (presses, refused presses, labels by position after them, the submit's problem); a press is (what, position)
SCENARIOS = {
    "no best yet": ([("good", 1)], [], ["unset", "good", "unset", "unset"], feedback_rules.CHOOSE_BEST),
    "only the best is good": ([("best", 0)], [], ["good", "unset", "unset", "unset"], feedback_rules.GOOD_BESIDES_BEST),
    "enough to submit": ([("good", 1), ("best", 0), ("bad", 2)], [], ["good", "good", "bad", "unset"], None),
    "all good": ([("good", 1), ("good", 2), ("good", 3), ("best", 0)], [], ["good"] * 4, feedback_rules.NEED_CONTRAST),
    "the best stays good": ([("best", 0), ("bad", 0), ("good", 1)], [1], ["good", "good", "unset", "unset"], None),
    "a new best counts as good": ([("bad", 2), ("best", 2), ("good", 1)], [], ["unset", "good", "good", "unset"], None),
}
BEST = {"no best yet": None, "only the best is good": 0, "enough to submit": 0, "all good": 0,
        "the best stays good": 0, "a new best counts as good": 2}


def shown(label) -> str:
    return "unset" if label is None else label


def through_the_app(presses) -> tuple[list[int], list[str], int | None, str | None]:
    items = tuple(ImageItem(100 + i, 0, i, Path(f"/x/{i}.png"), None, False) for i in range(4))
    labels = RoundLabels(RoundBatch(0, "p", False, None, None, items))
    refused = []
    for step, (what, idx) in enumerate(presses):
        image_id = 100 + idx
        try:
            if what == "best":
                labels.choose_best(image_id)
            elif labels.label(image_id) != what:  # space toggles: good <-> not good (unset goes to good first)
                if what == "bad" and labels.label(image_id) is None:
                    labels.toggle_good(image_id)
                labels.toggle_good(image_id)
        except LabelRefused:
            refused.append(step)
    best = None if labels.best_id is None else labels.best_id - 100
    problem = labels.problem()
    problem = None if problem is None else next(p for p in SUBMIT_PROBLEMS if problem.startswith(p))
    return refused, [shown(labels.label(100 + i)) for i in range(4)], best, problem


def through_the_store(folder: Path, presses) -> tuple[list[int], list[str], int | None, str | None]:
    make_session(folder, batch_size=4)
    store = SessionStore(folder)
    store.open_round(0, 4)
    store.add_images(0, [(i, f"rounds/0000/{i:03d}.png") for i in range(4)])
    ids = [image.id for image in store.images(0)]
    refused = []
    for step, (what, idx) in enumerate(presses):
        change = FeedbackChange("best", ids[idx]) if what == "best" else FeedbackChange("label", ids[idx], what)
        try:
            record_feedback(store, 0, [change])
        except FeedbackRefused:
            refused.append(step)
    feedback = read_round_feedback(store, 0)
    best = None if feedback.best_id is None else ids.index(feedback.best_id)
    result = refused, [shown(image.label) for image in store.images(0)], best, submit_problem(feedback)
    store.close()
    return result


def through_the_fake_engine(folder: Path, presses) -> tuple[list[int], list[str], int | None, str | None]:
    make_session(folder, batch_size=4)
    process = subprocess.Popen(fake_engine(folder), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    process.stdin.write(json.dumps({"cmd": "propose", "id": 0}) + "\n")
    process.stdin.flush()
    events = _events_until(process, "batch_ready")
    ids = [image["id"] for image in events[-1]["batch"]["images"]]
    commands = [{"cmd": "choose_best", "image_id": ids[idx], "id": step + 1} if what == "best" else
                {"cmd": "label", "image_id": ids[idx], "good": what == "good", "id": step + 1}
                for step, (what, idx) in enumerate(presses)]
    commands += [{"cmd": "submit", "id": 99}, {"cmd": "propose", "id": 100}]
    process.stdin.write("".join(json.dumps(c) + "\n" for c in commands))
    process.stdin.flush()
    events = _events_until(process, "batch_ready")  # the answer to the last propose: every command before it is done
    process.communicate(json.dumps({"cmd": "shutdown"}) + "\n", timeout=60)
    refused = sorted(e["reply_to"] - 1 for e in events if e.get("event") == "error" and e.get("reply_to", 99) < 99)
    submit = next(e for e in events if e.get("reply_to") == 99)
    problem = None if submit["event"] == "submitted" else submit["message"].split("cannot be submitted yet: ", 1)[1]
    batch = next(e for e in events if e.get("event") == "batch_ready")["batch"]
    labels = [shown(image["label"]) for image in batch["images"]]
    if problem is None:  # the submit counted the unlabeled ones as not good; compare what was labeled before it
        labels = _labels_before_submit(folder)
    best = None if batch["best_id"] is None else ids.index(batch["best_id"])
    return refused, labels, best, problem


def _events_until(process, event: str) -> list[dict]:
    events = []
    while True:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"the fake engine stopped before {event}")
        events.append(json.loads(line))
        if events[-1].get("event") == event:
            return events


def _labels_before_submit(folder: Path) -> list[str]:
    """The last label given to each image of round 0 before the submit, from the store's audit trail."""
    import sqlite3

    with sqlite3.connect(folder / "hero.db") as db:
        submitted = db.execute("SELECT submitted_at FROM rounds WHERE round = 0").fetchone()[0]
        labels = {}
        for idx, label in db.execute(
            "SELECT i.idx, e.label FROM label_events e JOIN images i ON i.id = e.image_id "
            "WHERE e.at < ? AND (e.label IS NULL OR e.label IN ('good', 'bad')) ORDER BY e.id", (submitted,)):
            labels[idx] = label
    return [shown(labels.get(i)) for i in range(4)]


SUBMIT_PROBLEMS = (feedback_rules.CHOOSE_BEST, feedback_rules.GOOD_BESIDES_BEST, feedback_rules.NEED_CONTRAST)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_app_the_store_and_the_fake_engine_apply_the_same_rules(name, tmp_path):
    """Guards the one place HERO's rules live: the same presses are refused, leave the same labels and best,
    and get the same answer to a submit in the app, in the store the engine writes through, and in the fake engine."""
    presses, refused, labels, problem = SCENARIOS[name]
    expected = (refused, labels, BEST[name], problem)
    assert through_the_app(presses) == expected
    assert through_the_store(tmp_path / "store", presses) == expected
    assert through_the_fake_engine(tmp_path / "fake", presses) == expected


def test_keeping_the_previous_best_writes_no_label():
    """Guards the kept best: choosing the previous round's best changes no label of this round and needs none."""
    feedback = RoundFeedback(1, {10: None, 11: "good", 12: "bad"}, previous_best_id=3)
    assert apply(feedback, FeedbackChange("best", 3)) == []
    assert feedback.best_id == 3 and feedback.labels == {10: None, 11: "good", 12: "bad"}
    assert submit_problem(feedback) is None


def test_a_refused_change_leaves_the_round_as_it_was():
    """Guards apply's all-or-nothing: a refused change (unknown image, not a label, the best made bad) changes nothing."""
    feedback = RoundFeedback(0, {1: "good", 2: None}, best_id=1)
    for change in (FeedbackChange("label", 9, "good"), FeedbackChange("label", 2, "great"),
                   FeedbackChange("label", 1, "bad"), FeedbackChange("best", 9)):
        with pytest.raises(FeedbackRefused):
            apply(feedback, change)
        assert feedback == RoundFeedback(0, {1: "good", 2: None}, best_id=1)


def test_a_round_is_submitted_only_when_whole():
    """Guards streaming: images still coming block the submit, whatever the labels."""
    feedback = RoundFeedback(0, {1: "good", 2: "bad"}, best_id=1)
    assert submit_problem(feedback, coming=2, size=4) == "2 of 4 images still coming"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
