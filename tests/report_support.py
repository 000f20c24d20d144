"""A session for the report and dataset tests: two rounds learned on the tiny model by `hero-tui run`, and an open
third round with labels given, undone and a best chosen, as the app records them (storage.labels.record_feedback)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from hero_engine.feedback_rules import FeedbackChange
from hero_engine.storage.labels import open_for_labels, record_feedback
from hero_tui.cli import app

TINY = ["--model", "tiny", "--batch", "6", "--steps", "6", "--train-timesteps", "3", "--encoder-epochs", "8", "--encoder-triplets", "8"]
runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})


def labeled_session(folder: Path) -> Path:
    result = invoke("run", "--prompt", "a red hand", *TINY, "--rounds", "2", "--session", folder)
    assert result.exit_code == 0, result.output
    store = open_for_labels(folder)
    try:
        ids = [image.id for image in store.images(2)]
        for change in (FeedbackChange("label", ids[0], "good"), FeedbackChange("label", ids[1], "good"),
                       FeedbackChange("label", ids[2], "bad"), FeedbackChange("best", ids[1]),
                       FeedbackChange("label", ids[0], None), FeedbackChange("best", None), FeedbackChange("best", ids[2])):
            record_feedback(store, 2, [change])
    finally:
        store.close()
    return folder


def db_rows(folder: Path, sql: str, *args) -> list[tuple]:
    db = sqlite3.connect(folder / "hero.db")
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()
