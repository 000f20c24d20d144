"""`hero-tui report`: one self-contained HTML file of what a session taught.

The page holds the prompt, model and settings; every round's images in the round's order with
their labels and the best marked; each round's best side by side; images of the tuned LoRA and
of the base model from the same noise (drawn by the engine, when it was asked to); and the
per-round plots (reporting.plots). Every image is embedded as a data: URI and a Content
Security Policy forbids the page any other source, so it opens from a disk or an attachment
with no server and no network. Torch-free: the samples come drawn (by `hero-tui report` or the engine
child, for the app's metrics screen), and the app can write the page without them.
"""

from __future__ import annotations

import base64
import html
import io
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from PIL import Image

from hero_engine.errors import HeroError
from hero_engine.reporting import plots
from hero_engine.reporting.extras import require
from hero_engine.reporting.session_record import (
    RecordedImage,
    RecordedRound,
    SessionRecord,
)
from hero_engine.storage.integrity import (
    CHOOSE_ANOTHER_OUT,
    atomic_write_bytes,
    check_output_folder,
    write_failure,
)

ProgressFn = Callable[[str, int, int], None]  # (stage, done, total), as the engine reports its stages
THUMBNAIL_SIDE = 256  # larger images are embedded scaled down (JPEG), so a long session's page stays a few MB
CONTENT_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


@dataclass(frozen=True)
class SampleComparison:
    """Images the tuned LoRA and the base model drew from the same initial noise and step noise, pair by pair."""

    tuned: Sequence[bytes]  # PNG
    base: Sequence[bytes]
    lora_round: int  # the checkpoint the tuned images were drawn with
    seed: int

    @classmethod
    def from_images(cls, tuned: Sequence[Image.Image], base: Sequence[Image.Image], lora_round: int, seed: int) -> SampleComparison:
        return cls([png_bytes(image) for image in tuned], [png_bytes(image) for image in base], lora_round, seed)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def default_report_path(folder: Path) -> Path:
    return Path(folder) / "exports" / f"report-{datetime.now():%Y%m%d-%H%M%S}.html"


def check_writable(path: Path) -> None:
    """Refuse, before any work, a report path whose folder cannot be made or written."""
    path = Path(path)
    if path.is_dir():
        raise HeroError(f"{path} is a folder: give --out a file name ending in .html")
    check_output_folder(path.parent, "the report", path)


def write_report(record: SessionRecord, path: Path, comparison: SampleComparison | None = None,
                 comparison_note: str | None = None, on_progress: ProgressFn | None = None) -> Path:
    """Write the report of ``record`` to ``path`` (atomically) and return it; ``comparison_note`` says why no samples."""
    require("matplotlib", "the report's plots")
    check_writable(path)
    report = on_progress or (lambda stage, done, total: None)
    images = record.images()
    embedded: dict[int, str] = {}
    for done, image in enumerate(images):
        report("images", done, len(images))
        embedded[image.id] = _image_uri(image.path)
    report("images", len(images), len(images))
    report("plots", 0, 1)
    round_plots = plots.round_plot_pngs(record) if record.updated_rounds() else []
    report("plots", 1, 1)
    sections = [
        _header(record),
        _best_strip(record, embedded),
        _comparison(comparison, comparison_note),
        _plots(round_plots),
        *(_round_section(record, round_, embedded) for round_ in record.rounds),
    ]
    page = PAGE.format(title=_text(f"hero: {record.config.prompt}"), policy=CONTENT_POLICY, style=STYLE, body="\n".join(sections))
    try:
        atomic_write_bytes(Path(path), page.encode("utf-8"), shared=True)
    except OSError as exc:
        raise HeroError(f"cannot write the report to {path} ({write_failure(exc)}): {CHOOSE_ANOTHER_OUT}") from None
    return Path(path)


def _text(value: object) -> str:
    return html.escape(str(value), quote=True)


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _image_uri(path: Path) -> str:
    """The image as a data: URI: its PNG as stored, or scaled down to THUMBNAIL_SIDE (JPEG) when larger."""
    try:
        with Image.open(path) as image:
            if max(image.size) <= THUMBNAIL_SIDE:
                return _data_uri(path.read_bytes(), "image/png")
            image = image.convert("RGB")
            image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=88)
            return _data_uri(buffer.getvalue(), "image/jpeg")
    except (OSError, ValueError) as exc:
        raise HeroError(f"{path} cannot be read ({exc}): the session's images are damaged") from None


def _when(stamp: float | None) -> str:
    return "–" if stamp is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


def _header(record: SessionRecord) -> str:
    config = record.config
    images = record.images()
    labeled = [image for image in images if image.label is not None]
    good = sum(image.label == "good" for image in images)
    settings = "".join(f"<tr><th>{_text(name)}</th><td>{_text(value)}</td></tr>" for name, value in config.to_dict().items())
    return f"""<header>
<h1>{_text(config.prompt)}</h1>
<p class="facts">model <b>{_text(config.model)}</b> · {len(record.rounds)} rounds · {len(images)} images ·
{len(labeled)} labeled, {good} good · started {_when(record.created_at)} · session <code>{_text(record.folder)}</code></p>
<details><summary>settings</summary><table class="settings">{settings}</table></details>
</header>"""


def _best_of(record: SessionRecord, round_: RecordedRound) -> RecordedImage | None:
    return record.image(round_.best_image_id)


def _best_strip(record: SessionRecord, embedded: dict[int, str]) -> str:
    figures = []
    for round_ in record.rounds:
        best = _best_of(record, round_)
        if best is None:
            continue
        kept = f" (kept from round {best.round})" if best.round != round_.round else ""
        figures.append(f'<figure class="best-of-round" data-round="{round_.round}" data-image-id="{best.id}">'
                       f'<img src="{embedded[best.id]}" alt="best after round {round_.round}">'
                       f"<figcaption>round {round_.round}{_text(kept)}</figcaption></figure>")
    body = "".join(figures) or '<p class="note">No round has a best image yet.</p>'
    return f'<section id="best"><h2>The best of each round</h2><div class="strip">{body}</div></section>'


def _comparison(comparison: SampleComparison | None, note: str | None) -> str:
    title = "<h2>The tuned LoRA against the base model</h2>"
    if comparison is None:
        return f'<section id="samples">{title}<p class="note">{_text(note or "No samples were drawn.")}</p></section>'
    pairs = "".join(
        f'<div class="pair"><figure class="sample tuned"><img src="{_data_uri(tuned, "image/png")}" alt="tuned {i}">'
        f'<figcaption>tuned</figcaption></figure><figure class="sample base"><img src="{_data_uri(base, "image/png")}" '
        f'alt="base {i}"><figcaption>base</figcaption></figure></div>'
        for i, (tuned, base) in enumerate(zip(comparison.tuned, comparison.base)))
    return (f'<section id="samples">{title}<p class="note">Each pair starts from the same noise (seed {comparison.seed}): '
            f"left the model with the LoRA after round {comparison.lora_round}, right the base model.</p>"
            f'<div class="strip">{pairs}</div></section>')


def _plots(round_plots: list[tuple[plots.RoundPlot | None, bytes]]) -> str:
    title = "<h2>Round by round</h2>"
    if not round_plots:
        return f'<section id="plots">{title}<p class="note">No round has been learned from yet.</p></section>'
    figures = "".join(
        f'<figure class="plot"><img src="{_data_uri(png, "image/png")}" alt="{_text(spec.title if spec else "seconds per stage")}">'
        f"<figcaption>{_text(spec.meaning if spec else plots.SECONDS_MEANING)}</figcaption></figure>" for spec, png in round_plots)
    return f'<section id="plots">{title}<div class="plots">{figures}</div></section>'


def _round_section(record: SessionRecord, round_: RecordedRound, embedded: dict[int, str]) -> str:
    labeled = sum(image.label is not None for image in round_.images)
    good = sum(image.label == "good" for image in round_.images)
    state = ("learned from" if round_.updated_at is not None else "submitted" if round_.submitted_at is not None
             else f"open: {labeled} of {len(round_.images)} labeled")
    best = _best_of(record, round_)
    kept = (f" · best kept from round {best.round} #{best.idx}" if best is not None and best.round != round_.round else "")
    reward = round_.metrics.get("reward_mean")
    reward_text = "" if reward is None or math.isnan(reward) else f" · mean reward {reward:.3f}"
    figures = []
    for image in round_.images:
        is_best = best is not None and image.id == best.id
        classes = f"round-image label-{(image.label or 'none')}" + (" best" if is_best else "")
        figures.append(
            f'<figure class="{classes}" data-image-id="{image.id}" data-round="{image.round}" data-idx="{image.idx}" '
            f'data-label="{_text(image.label_name)}"><img src="{embedded[image.id]}" alt="round {image.round} #{image.idx}">'
            f'<figcaption><span class="label">{_text(image.label_name)}</span>{" <b>★ best</b>" if is_best else ""}'
            f'<span class="idx">#{image.idx}</span></figcaption></figure>')
    return (f'<section class="round" id="round-{round_.round}"><h2>Round {round_.round}</h2>'
            f'<p class="facts">{state} · {good} good of {len(round_.images)}{reward_text}{_text(kept)}</p>'
            f'<div class="grid">{"".join(figures)}</div></section>')


STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 1em 2em; color: #222; background: #fff; }
h1 { margin-bottom: .2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.facts, .note { color: #555; } code { font-size: 90%; }
table.settings { border-collapse: collapse; font-size: 90%; } table.settings th { text-align: left; padding-right: 1em; font-weight: 500; }
.grid, .strip, .plots { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; } figure img { display: block; width: 160px; height: 160px; object-fit: contain; background: #eee; }
.plots figure { width: 470px; } .plots figure img { width: 470px; height: auto; }
.plots figcaption { display: block; color: #555; }
.pair { display: flex; gap: 4px; padding: 4px; border: 1px solid #ddd; }
figcaption { font-size: 85%; display: flex; gap: .5em; justify-content: space-between; }
.round-image { padding: 3px; border: 3px solid #ccc; border-radius: 4px; }
.round-image.label-good { border-color: #2e9d3e; } .round-image.label-good .label { color: #2e9d3e; font-weight: 600; }
.round-image.label-bad { border-color: #bbb; } .round-image.label-bad .label { color: #777; }
.round-image.label-none { border-style: dashed; } .round-image.label-none .label { color: #999; font-style: italic; }
.round-image.best { border-color: #e5a000; box-shadow: 0 0 0 2px #e5a000; }
.idx { color: #999; }
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{policy}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
{body}
</body>
</html>
"""
