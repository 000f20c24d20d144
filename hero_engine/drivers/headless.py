"""HERO without a person: a simulated evaluator labels every round; plus export and sampling.

The CLI's `run`, `export` and `sample` commands drive these functions. They
report through callbacks and print nothing, so any front end can show them.
"""

from __future__ import annotations

import io
import logging
import math
import statistics
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from PIL import Image

from hero_engine.config import HeroConfig
from hero_engine.errors import HeroError
from hero_engine.evaluation.evaluators import Evaluator, label_batch
from hero_engine.reporting.html_report import SampleComparison
from hero_engine.session.hero_session import Batch, HeroSession, ProgressFn
from hero_engine.storage.integrity import (
    CHOOSE_ANOTHER_OUT,
    atomic_write_bytes,
    check_output_folder,
    write_failure,
)

log = logging.getLogger(__name__)

NoticeFn = Callable[[str], None]


@dataclass(frozen=True)
class RoundResult:
    round: int
    labels_total: int
    good: int
    mean_reward: float
    reward_agreement: float  # share of (good, bad) pairs the rewards order as labeled; NaN without pairs
    reward_agreement_unseen: float  # the same from the encoder before it trained on this round; NaN for binary rewards
    evaluator_score: float  # mean evaluator score of the batch that was labeled
    seconds: dict[str, float]


class _NoticeRelay:
    """Passes each notice the session records (e.g. a checkpoint fallback) to the callback once."""

    def __init__(self, session: HeroSession, on_notice: NoticeFn | None):
        self._session = session
        self._on_notice = on_notice
        self._seen = len(session.notices)

    def flush(self) -> None:
        fresh = self._session.notices[self._seen:]
        self._seen += len(fresh)
        if self._on_notice:
            for message in fresh:
                self._on_notice(message)


def open_session(
    folder: Path, config: HeroConfig | None, device: str | None = None, dtype: str | None = None, memory: dict | None = None,
    given: Collection[str] = (), on_progress: ProgressFn | None = None,
) -> HeroSession:
    """Create a session in ``folder`` from ``config`` (``given``: the settings the person set), or open the one there
    (with ``memory`` settings) when ``config`` is None. ``on_progress`` hears a new session's model loading."""
    if config is None:
        return HeroSession.open(folder, device, dtype, memory)
    return HeroSession.create(folder, config, device, dtype, given, on_progress)


def run_rounds(
    session: HeroSession,
    evaluator: Evaluator,
    rounds: int,
    on_progress: ProgressFn | None = None,
    on_notice: NoticeFn | None = None,
) -> Iterator[RoundResult]:
    """Label, submit and update ``rounds`` rounds, yielding each round's result as it finishes.

    A round already submitted (its update was interrupted) is updated with its stored labels.
    """
    notices = _NoticeRelay(session, on_notice)
    try:
        for _ in range(rounds):
            yield _run_round(session, evaluator, on_progress, notices)
    finally:
        notices.flush()


def _run_round(session: HeroSession, evaluator: Evaluator, on_progress: ProgressFn | None, notices: _NoticeRelay) -> RoundResult:
    started = time.perf_counter()
    batch = session.propose(on_progress)
    seconds = {"propose": time.perf_counter() - started}
    notices.flush()
    started = time.perf_counter()
    if batch.submitted:  # labeled before an interruption: score the stored images
        score = batch_score(evaluator, batch)
    else:
        score = statistics.fmean(label_batch(session, evaluator).scores)
        session.submit()
    session.store.put_metrics(batch.round, {"evaluator_score": score})
    seconds["label"] = time.perf_counter() - started
    report = session.update(on_progress)
    notices.flush()
    return RoundResult(
        round=report.round,
        labels_total=report.labels_total,
        good=report.good,
        mean_reward=report.mean_reward,
        reward_agreement=report.metrics.get("reward_label_agreement", float("nan")),
        reward_agreement_unseen=report.metrics.get("reward_label_agreement_unseen", float("nan")),
        evaluator_score=score,
        seconds={**seconds, **report.seconds},
    )


def batch_score(evaluator: Evaluator, batch: Batch) -> float:
    scores = []
    for info in batch.images:
        with Image.open(info.path) as image:
            scores.append(evaluator.score(image))
    return statistics.fmean(scores)


def export_lora(
    session: HeroSession, out: Path | None = None, on_notice: NoticeFn | None = None, format: str = "both"
) -> list[Path]:
    """Write the tuned LoRA (diffusers, kohya or both) to ``out`` (default: <session>/exports/); return the files."""
    notices = _NoticeRelay(session, on_notice)
    try:
        return session.export_files(out or session.folder / "exports", format)
    finally:
        notices.flush()


def sample_grid(
    session: HeroSession,
    n: int,
    out: Path | None = None,
    prompt: str | None = None,
    refined_noise: bool = False,
    seed: int | None = None,
    on_notice: NoticeFn | None = None,
    on_progress: ProgressFn | None = None,
) -> Path:
    """Draw ``n`` images from the tuned model and save them as one grid image (PNG by default); return its path.
    ``on_progress`` hears the model's loading (and download), then the sampling."""
    target = _samples_path(session.folder, out)
    notices = _NoticeRelay(session, on_notice)
    try:
        images = session.sample(prompt, n, use_refined_noise=refined_noise, seed=seed, on_progress=on_progress)
    finally:
        notices.flush()
    grid = io.BytesIO()
    try:
        image_grid(images).save(grid, format=Image.registered_extensions()[target.suffix.lower()])
        atomic_write_bytes(target, grid.getvalue(), shared=True)
    except (OSError, ValueError) as exc:  # ValueError: a format that cannot hold RGB images (Pillow's own words)
        raise HeroError(f"cannot write the samples to {target} ({write_failure(exc)}): {CHOOSE_ANOTHER_OUT}") from None
    log.info("saved %d samples to %s", len(images), target)
    return target


def _samples_path(folder: Path, out: Path | None) -> Path:
    """Where ``sample_grid`` writes (default: <session>/exports/samples-<time>.png), refused before any work where it cannot."""
    target = Path(out) if out else Path(folder) / "exports" / f"samples-{datetime.now():%Y%m%d-%H%M%S}.png"
    if target.is_dir():
        raise HeroError(f"{target} is a folder: give --out a file name ending in .png")
    if Image.registered_extensions().get(target.suffix.lower()) not in Image.SAVE:
        unknown = f"'{target.suffix}' is no image format Pillow writes" if target.suffix else "the name has no image extension"
        raise HeroError(f"cannot write the samples to {target}: {unknown}; give --out a name ending in .png")
    check_output_folder(target.parent, "the samples", target)
    return target


def draw_comparison(session: HeroSession, n: int, seed: int | None = None, on_notice: NoticeFn | None = None,
                    on_progress: ProgressFn | None = None) -> SampleComparison:
    """``n`` images from the tuned LoRA and ``n`` from the base model, pair by pair from the same noise;
    ``on_progress`` hears the model's loading (and download), then the sampling."""
    seed = session.config.seed if seed is None else seed
    notices = _NoticeRelay(session, on_notice)
    try:
        round_, tuned, base = session.sample_against_base(n, seed, on_progress)
    finally:
        notices.flush()
    return SampleComparison.from_images(tuned, base, round_, seed)


def image_grid(images: Sequence[Image.Image]) -> Image.Image:
    """Tile equally sized images row by row into a near-square grid."""
    columns = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    width, height = images[0].size
    grid = Image.new("RGB", (columns * width, rows * height))
    for position, image in enumerate(images):
        row, column = divmod(position, columns)
        grid.paste(image.convert("RGB"), (column * width, row * height))
    return grid
