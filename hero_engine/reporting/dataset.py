"""`hero-tui export --format dataset`: a session's feedback as a dataset, one Parquet row per image, with a dataset card.

The folder it writes::

    README.md                              the dataset card: columns, the base model's licence, how it was collected
    data/train-00000-of-00001.parquet      one row per image, in round and batch order

The image column is a struct of the PNG's bytes and its path in the session, the layout
Hugging Face ``datasets`` gives its Image feature; the schema's metadata names the features,
so ``datasets.load_dataset("parquet", data_files=...)`` decodes the images, and pandas reads
the file as it is. pyarrow comes with the optional extra (``hero[report]``). Torch-free.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from hero_engine.config import DEFAULT_HUB_MODEL, HeroConfig
from hero_engine.errors import HeroError
from hero_engine.reporting.extras import require
from hero_engine.reporting.session_record import (
    RecordedImage,
    SessionRecord,
    lora_round,
    noise_source,
)
from hero_engine.storage.integrity import (
    CHOOSE_ANOTHER_OUT,
    atomic_write_bytes,
    check_output_folder,
    write_failure,
)

ProgressFn = Callable[[str, int, int], None]
DATA_FILE = Path("data") / "train-00000-of-00001.parquet"
CARD_FILE = "README.md"
CARD_MARK = "<!-- written by hero-tui export --format dataset -->"  # a folder holding it may be written over
ROWS_PER_GROUP = 64  # images per Parquet row group: a long session is written, and read back, a group at a time

COLUMNS = {  # name: what it means (the card's table)
    "prompt": "the session's prompt",
    "round": "the round the image was drawn in (0, 1, ...)",
    "index": "its position in the round's batch",
    "image_id": "its id in the session's hero.db",
    "label": '"good", "not good" (labeled not good, or left unmarked when the round was submitted) or "unlabeled" (the open round)',
    "best": "true if a round chose it as its best image",
    "image": "the image: a struct of the PNG's bytes and its path in the session folder",
    "seed": "the session's seed: the image's initial noise is drawn from (seed, round) and its batch position",
    "noise_source": "where the round's initial noise came from: plain Gaussian noise, or guided by the previous round's best and good images",
    "model": "the base model (a Hugging Face id, a local path, or hero's built-in demo or tiny model)",
    "lora_round": "the round whose update the LoRA it was drawn with came from (null: the base model, before any update)",
    "labeled_at": "when its label was given (UTC; null while unlabeled)",
}


def check_out_folder(out: Path) -> None:
    """Refuse, before any work, a folder that is a file, holds other things, or cannot be written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise HeroError(f"{out} is a file: give --out a folder for the dataset")
    if out.is_dir() and any(out.iterdir()) and not _holds_a_dataset(out):
        raise HeroError(f"{out} holds other files: give --out an empty or new folder")
    check_output_folder(out / DATA_FILE.parent, "the dataset", out)


def _holds_a_dataset(out: Path) -> bool:
    card = out / CARD_FILE
    try:
        return card.is_file() and CARD_MARK in card.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False


def schema():
    pa = require("pyarrow", "the dataset")
    fields = [
        pa.field("prompt", pa.string()), pa.field("round", pa.int32()), pa.field("index", pa.int32()),
        pa.field("image_id", pa.int64()), pa.field("label", pa.string()), pa.field("best", pa.bool_()),
        pa.field("image", pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])),
        pa.field("seed", pa.int64()), pa.field("noise_source", pa.string()), pa.field("model", pa.string()),
        pa.field("lora_round", pa.int32()), pa.field("labeled_at", pa.timestamp("us", tz="UTC")),
    ]
    features = {field.name: _feature(field.name, field.type) for field in fields}
    return pa.schema(fields, metadata={"huggingface": json.dumps({"info": {"features": features}})})


def _feature(name: str, type_) -> dict:
    """The column's type as ``datasets`` names it in a Parquet file's metadata."""
    if name == "image":
        return {"_type": "Image"}
    names = {"string": "string", "int32": "int32", "int64": "int64", "bool": "bool", "timestamp[us, tz=UTC]": "timestamp[us, tz=UTC]"}
    return {"dtype": names[str(type_)], "_type": "Value"}


def row(record: SessionRecord, image: RecordedImage) -> dict:
    config = record.config
    try:
        png = image.path.read_bytes()
    except OSError as exc:
        raise HeroError(f"{image.path} cannot be read ({exc.strerror or exc}): the session's images are damaged") from None
    return {
        "prompt": config.prompt, "round": image.round, "index": image.idx, "image_id": image.id,
        "label": image.label_name, "best": image.is_best,
        "image": {"bytes": png, "path": str(image.path.relative_to(record.folder))},
        "seed": config.seed, "noise_source": noise_source(config, image.round), "model": config.model,
        "lora_round": lora_round(image.round),
        "labeled_at": None if image.labeled_at is None else datetime.fromtimestamp(image.labeled_at, timezone.utc),
    }


def write_dataset(record: SessionRecord, out: Path, on_progress: ProgressFn | None = None) -> Path:
    """Write ``record``'s images and labels to ``out`` as Parquet plus a dataset card; return the Parquet file."""
    pa = require("pyarrow", "the dataset")
    parquet = require("pyarrow.parquet", "the dataset")
    out = Path(out)
    check_out_folder(out)
    report = on_progress or (lambda stage, done, total: None)
    images = record.images()
    target = out / DATA_FILE
    tmp = target.with_name(f".{target.name}.tmp")
    table_schema = schema()
    try:
        with parquet.ParquetWriter(tmp, table_schema) as writer:
            for start in range(0, len(images), ROWS_PER_GROUP):
                report("dataset", start, len(images))
                rows = [row(record, image) for image in images[start:start + ROWS_PER_GROUP]]
                writer.write_table(pa.Table.from_pylist(rows, schema=table_schema))
        os.replace(tmp, target)
        atomic_write_bytes(out / CARD_FILE, dataset_card(record).encode("utf-8"), shared=True)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise HeroError(f"cannot write the dataset to {out} ({write_failure(exc)}): {CHOOSE_ANOTHER_OUT}") from None
    except HeroError:
        tmp.unlink(missing_ok=True)
        raise
    report("dataset", len(images), len(images))
    return target


def licence_note(model: str) -> str:
    """What the base model's licence asks of images made with it, as far as hero knows the model."""
    if model == "demo":
        return ("hero's built-in demo model, trained from scratch by hero on drawings it makes itself; "
                "it is distributed with hero under hero's licence (Apache-2.0).")
    if model == "tiny":
        return "hero's tiny test model: random weights, no training data; the images are noise-like test pictures."
    if model == DEFAULT_HUB_MODEL or "stable-diffusion-v1-5" in model or "stable-diffusion-v1" in model:
        return (f"`{model}` is released under the CreativeML OpenRAIL-M licence, whose use restrictions apply to "
                "images made with it and to models trained on them: read it on the model's card before sharing.")
    return f"`{model}`: the licence on that model's card applies to images made with it; read it before sharing this dataset."


def dataset_card(record: SessionRecord) -> str:
    config: HeroConfig = record.config
    images = record.images()
    good = sum(image.label == "good" for image in images)
    unlabeled = sum(image.label is None for image in images)
    columns = "\n".join(f"| `{name}` | {meaning} |" for name, meaning in COLUMNS.items())
    return f"""---
configs:
- config_name: default
  data_files: {DATA_FILE.as_posix()}
task_categories:
- text-to-image
tags:
- human-feedback
- hero
---
{CARD_MARK}
# One person's feedback on "{config.prompt}"

{len(images)} images in {len(record.rounds)} rounds, {good} labeled good, {unlabeled} unlabeled, from one session of
hero (HERO: "Human-Feedback-Efficient Reinforcement Learning for Online Diffusion Model Finetuning", ICLR 2025) on the model `{config.model}`.

## How it was collected

Each round, hero drew a batch of {config.batch_size} images for the prompt with the model and its LoRA as tuned so far
(`lora_round`). One person marked the images that show what they want as good and chose the best of the round (or kept
the previous round's); the images left unmarked when the round was submitted are "not good". After each round hero
trained a feedback encoder on the labels, turned them into rewards and updated the LoRA with PPO, and drew the next
round from noise guided by the best and good images' noise (`noise_source`). Labels can be undone while a round is
open, so an image's label is the last one given. Settings: {config.steps} denoising steps, guidance {config.guidance},
seed {config.seed}, LoRA rank {config.lora_rank}.

## Columns

| column | meaning |
|---|---|
{columns}

Read it with pandas (`pandas.read_parquet("{DATA_FILE.as_posix()}")`) or with Hugging Face datasets
(`datasets.load_dataset("parquet", data_files="{DATA_FILE.as_posix()}")`, which decodes `image` to a PIL image).

## Licence of the base model

{licence_note(config.model)} The labels are the person's who gave them: ask them before publishing.
"""
