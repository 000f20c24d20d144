"""`hero-tui export SESSION --format dataset`: Parquet read back with pyarrow, pandas and (when installed) Hugging Face
datasets, row for row against hero.db; the dataset card; one-line errors. The session is real (report_support): two
rounds learned on the tiny model and an open round with labels given and undone."""

from __future__ import annotations

import io
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from PIL import Image
from report_support import db_rows, invoke, labeled_session

pyarrow_parquet = pytest.importorskip("pyarrow.parquet", reason='the dataset needs the report extra: pip install -e ".[report]"')

from hero_engine.reporting import dataset  # noqa: E402

LABEL_NAMES = {"good": "good", "bad": "not good", None: "unlabeled"}


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Path:
    return labeled_session(tmp_path_factory.mktemp("dataset") / "session")


@pytest.fixture(scope="module")
def exported(session, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out") / "feedback"
    result = invoke("export", session, "--format", "dataset", "--out", out)
    assert result.exit_code == 0, result.output
    assert str(out / dataset.DATA_FILE) in result.stdout
    return out


def expected_rows(session: Path) -> list[dict]:
    """What hero.db says each image's row must hold, in round and batch order."""
    rows = db_rows(session, "SELECT id, round, idx, label, is_best, path, labeled_at FROM images ORDER BY round, idx")
    return [{
        "image_id": id_, "round": round_, "index": idx, "label": LABEL_NAMES[label], "best": bool(is_best),
        "png": (session / path).read_bytes(), "path": path,
        "lora_round": None if round_ == 0 else round_ - 1,
        "labeled_at": None if label is None else datetime.fromtimestamp(labeled_at, timezone.utc),
    } for id_, round_, idx, label, is_best, path, labeled_at in rows]


def test_the_parquet_file_matches_hero_db_row_for_row(session, exported):
    """Guards every column against hero.db: several rounds, an open round with an undone label (unlabeled, no time),
    the best that moved, the PNG bytes as stored, and the LoRA round each image was drawn with."""
    table = pyarrow_parquet.read_table(exported / dataset.DATA_FILE)
    assert table.column_names == list(dataset.COLUMNS)
    rows = table.to_pylist()
    expected = expected_rows(session)
    assert len(rows) == len(expected) == 18
    assert {row["round"] for row in rows} == {0, 1, 2}
    for row, want in zip(rows, expected):
        assert row["image"] == {"bytes": want["png"], "path": want["path"]}
        assert {key: row[key] for key in ("image_id", "round", "index", "label", "best", "lora_round", "labeled_at")} == \
            {key: want[key] for key in ("image_id", "round", "index", "label", "best", "lora_round", "labeled_at")}
        assert (row["prompt"], row["model"], row["seed"]) == ("a red hand", "tiny", 0)
    open_round = [row["label"] for row in rows if row["round"] == 2]
    assert open_round == ["unlabeled", "good", "good", "unlabeled", "unlabeled", "unlabeled"]  # image 0's label was undone
    assert [row["noise_source"].split(":")[0] for row in rows[::6]] == ["plain Gaussian noise, seeded by (seed 0, round 0)",
                                                                         "feedback-guided", "feedback-guided"]


def test_pandas_reads_it_and_the_images_decode(session, exported):
    pandas = pytest.importorskip("pandas", reason="pandas is not installed")
    frame = pandas.read_parquet(exported / dataset.DATA_FILE)
    assert len(frame) == 18 and list(frame["label"]).count("good") == sum(
        1 for (label,) in db_rows(session, "SELECT label FROM images") if label == "good")
    with Image.open(io.BytesIO(frame["image"].iloc[0]["bytes"])) as image:
        assert image.format == "PNG" and image.size[0] > 0


def test_hugging_face_datasets_loads_it_with_images_decoded(exported):
    datasets = pytest.importorskip("datasets", reason="Hugging Face datasets is not installed")
    loaded = datasets.load_dataset("parquet", data_files=str(exported / dataset.DATA_FILE), split="train")
    assert len(loaded) == 18 and loaded.features["image"].__class__.__name__ == "Image"
    assert loaded[13]["label"] == "good" and loaded[12]["labeled_at"] is None
    assert loaded[0]["image"].size[0] > 0  # a PIL image


def test_the_dataset_card_names_every_column_and_the_licence(exported):
    card = (exported / dataset.CARD_FILE).read_text(encoding="utf-8")
    assert card.startswith("---\n") and f"data_files: {dataset.DATA_FILE.as_posix()}" in card
    assert all(f"| `{name}` |" in card for name in dataset.COLUMNS)
    assert "## Licence of the base model" in card and "random weights" in card
    assert "## How it was collected" in card and "18 images in 3 rounds" in card


def test_exporting_again_replaces_the_dataset(session, exported, tmp_path):
    again = tmp_path / "again"
    shutil.copytree(exported, again)
    result = invoke("export", session, "--format", "dataset", "--out", again)
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(again).as_posix() for p in again.rglob("*") if p.is_file()) == \
        ["README.md", dataset.DATA_FILE.as_posix()]


def assert_one_line_error(result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_a_folder_holding_other_files_is_refused_and_left_alone(session, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    assert_one_line_error(invoke("export", session, "--format", "dataset", "--out", tmp_path), "holds other files")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_an_unwritable_folder(session, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert_one_line_error(invoke("export", session, "--format", "dataset", "--out", blocker / "ds"), "cannot write the dataset")


def test_not_a_session_and_no_rounds_yet(tmp_path):
    from hero_engine.config import HeroConfig
    from hero_engine.storage.store import SessionStore

    assert_one_line_error(invoke("export", tmp_path, "--format", "dataset", "--out", tmp_path / "ds"), "is not a hero session")
    SessionStore.create(tmp_path / "empty", HeroConfig(prompt="a red hand", model="tiny")).close()
    assert_one_line_error(invoke("export", tmp_path / "empty", "--format", "dataset", "--out", tmp_path / "ds"), "has no rounds yet")


def test_without_the_report_extra_the_line_names_the_install(session, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    result = invoke("export", session, "--format", "dataset", "--out", tmp_path / "ds")
    assert_one_line_error(result, 'pip install "hero[report]"')
    assert not (tmp_path / "ds").exists()
