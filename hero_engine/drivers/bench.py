"""The feedback-efficiency benchmark: success rate against labels used, per task and method.

For each task (a simulated evaluator with its own prompt and intent), each
method runs on the same label budget over several seeds:

    hero         the full method
    plain-noise  HERO without feedback-guided noise
    binary       HERO's loop with 0/1 rewards from the raw labels (DDPO on human labels)
    untuned      the base model, no feedback

Every ``eval_every`` rounds (and after the last) the tuned model draws held-out
images (a seed no round used) from plain noise (does the tuning transfer?) and
from the refined noise, and the task's judge says which fulfil the intent. The
zero-label point is the base model on the same held-out noise, so it is measured
once per task and seed and shared by every method (it is the untuned result).
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import statistics
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from hero_engine.algorithm import rewards
from hero_engine.config import HeroConfig
from hero_engine.errors import HeroError
from hero_engine.evaluation.evaluators import (
    Evaluator,
    Feedback,
    get_evaluator,
    label_batch,
)
from hero_engine.reporting import plots
from hero_engine.session.hero_session import HeroSession
from hero_engine.storage.integrity import check_output_folder

log = logging.getLogger(__name__)

METHODS: dict[str, dict | None] = {
    "hero": {},
    "plain-noise": {"guided_noise": False},
    "binary": {"reward": "binary"},
    "untuned": None,
}
HELD_OUT_SEED = 10_007  # held-out draws use this plus the run's seed; no training round draws from it

# Every task and method runs with the model's own defaults (on the demo model: config.DEMO_SCALE);
# the benchmark only sets how many images go through the UNet at once while sampling, which changes
# speed alone (the policy update's passes take train_batch's default: sized from free GPU memory).
BENCH_ENGINE = {"sample_batch": 32}
FULL = {"seeds": 3, "budget": 128, "batch": 16, "eval_images": 24, "eval_every": 2, "engine": BENCH_ENGINE}
QUICK = {"seeds": 1, "budget": 32, "batch": 16, "eval_images": 16, "eval_every": 1, "engine": BENCH_ENGINE}


@dataclass
class BenchSettings:
    tasks: list[str]
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    seeds: int = 3
    budget: int = 256  # labels per run
    batch: int = 32
    eval_images: int = 64
    eval_every: int = 1  # rounds between held-out measurements; the last round is always measured
    target: float = 0.5  # success rate whose label cost is reported
    model: str = "demo"
    engine: dict = field(default_factory=dict)  # HeroConfig overrides applied to every task and method alike
    jobs: int = 1  # (task, seed) pairs run at once, each in its own process: speed alone, the same results
    device: str | None = None  # None: CUDA where there is a GPU, else the CPU (as a session chooses)
    dtype: str | None = None  # None: the device's default precision

    @property
    def rounds(self) -> int:
        return self.budget // self.batch

    def validate(self) -> None:
        for name in ("seeds", "budget", "batch", "eval_images", "eval_every", "jobs"):
            if getattr(self, name) < 1:
                raise HeroError(f"--{name.replace('_', '-')} must be at least 1")
        if self.budget % self.batch:
            whole = [n * self.batch for n in (self.budget // self.batch, self.budget // self.batch + 1) if n > 0]
            raise HeroError(f"--budget {self.budget} is not a whole number of rounds of --batch {self.batch}: "
                            f"give {' or '.join(map(str, whole))}")
        if not self.tasks or not self.methods:
            raise HeroError("name at least one task and one method")
        if not 0 < self.target <= 1:
            raise HeroError("--target is a success rate: a number in (0, 1]")
        for task in self.tasks:
            get_evaluator(task)
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise HeroError(f"unknown method(s) {', '.join(unknown)}: choose from {', '.join(METHODS)}")


@dataclass
class Point:
    labels: int
    success_plain: float
    success_refined: float | None


@dataclass
class Run:
    task: str
    method: str
    seed: int
    points: list[Point]
    agreement: list[float] = field(default_factory=list)  # each round's reward_label_agreement (does the reward follow the labels?)
    encoder_restarts: int | None = None  # rounds whose encoder stalled at the triplet margin and was trained again (None: not counted)
    agreement_unseen: list[float | None] = field(default_factory=list)  # each round's agreement from the encoder before that round's labels
    encoder_refits: int | None = None  # rounds whose rewards ordered the labels below learner.AGREEMENT_FLOOR, so the encoder trained again (None: not counted)
    # Each round's rank correlation of the rewards with the judge's graded score: over the whole round, and over its
    # misses alone (the images not marked good), which no good/bad label orders. None where one side is constant.
    score_correlation: list[float | None] = field(default_factory=list)
    miss_correlation: list[float | None] = field(default_factory=list)


def success_rate(evaluator: Evaluator, images: list) -> float:
    return sum(evaluator.is_success(im) for im in images) / len(images)


def held_out_seed(seed: int) -> int:
    return HELD_OUT_SEED + seed


def run_config(task: str, method: str, seed: int, settings: BenchSettings) -> HeroConfig:
    evaluator = get_evaluator(task)
    config = HeroConfig(prompt=evaluator.prompt or "an image", model=settings.model, batch_size=settings.batch, seed=seed)
    return config.replace(**settings.engine, **(METHODS[method] or {}))


def create_session(folder: Path, task: str, method: str, seed: int, settings: BenchSettings) -> HeroSession:
    """A new session for one run. The settings the run sets itself (its round size, ``settings.engine``, the
    method's ablation) are passed as given, so the model's own defaults never replace one that equals the paper's."""
    given = {"batch_size", *settings.engine, *(METHODS[method] or {})}
    return HeroSession.create(folder, run_config(task, method, seed, settings), settings.device, settings.dtype, given)


def base_point(task: str, seed: int, settings: BenchSettings, workdir: Path) -> Point:
    """Success of the untuned model on the held-out noise of ``seed``: every method's zero-label point."""
    evaluator = get_evaluator(task)
    with create_session(workdir / f"{task}-untuned-{seed}", task, "untuned", seed, settings) as session:
        return Point(0, success_rate(evaluator, held_out_images(session, seed, settings)), None)


def held_out_images(session: HeroSession, seed: int, settings: BenchSettings) -> list:
    """The session's images from the held-out plain noise of ``seed`` (the same noise and step noise for every model)."""
    return session.sample(None, settings.eval_images, seed=held_out_seed(seed))


def run_one(task: str, method: str, seed: int, settings: BenchSettings, workdir: Path, base: Point,
            on_round: Callable[[str], None] | None = None) -> Run:
    """One method on one task and seed: success after 0 labels (``base``) and at every measured round."""
    evaluator = get_evaluator(task)
    points = [base]
    agreement: list[float] = []
    unseen: list[float | None] = []
    score_correlation: list[float | None] = []
    miss_correlation: list[float | None] = []
    restarts = refits = 0
    if METHODS[method] is None:
        return Run(task, method, seed, points)
    with create_session(workdir / f"{task}-{method}-{seed}", task, method, seed, settings) as session:
        for round_ in range(settings.rounds):
            last = round_ == settings.rounds - 1
            feedback = label_batch(session, evaluator)
            session.submit()
            report = session.update(sample_next=not last)
            whole, misses = (None if math.isnan(c) else c for c in reward_grading(report.rewards, feedback))
            score_correlation.append(whole)
            miss_correlation.append(misses)
            agreement.append(report.metrics["reward_label_agreement"])
            unseen_agreement = report.metrics["reward_label_agreement_unseen"]
            unseen.append(None if math.isnan(unseen_agreement) else unseen_agreement)  # None: binary rewards use no encoder
            restarts += int(report.metrics.get("encoder_restarted", 0))
            refits += int(report.metrics.get("encoder_refit_features", 0))
            if not (last or (round_ + 1) % settings.eval_every == 0):
                continue
            held_out = held_out_seed(seed)
            plain = session.sample(None, settings.eval_images, seed=held_out)
            refined = session.sample(None, settings.eval_images, use_refined_noise=True, seed=held_out)
            points.append(Point(report.labels_total, success_rate(evaluator, plain), success_rate(evaluator, refined)))
            if on_round:
                on_round(f"{task} {method} seed {seed}, {report.labels_total} labels: "
                         f"success {points[-1].success_plain:.2f} plain, {points[-1].success_refined:.2f} refined")
    return Run(task, method, seed, points, agreement, restarts, unseen, refits, score_correlation, miss_correlation)


def reward_grading(round_rewards: list[float], feedback: Feedback) -> tuple[float, float]:
    """How a round's rewards rank its images against the judge's graded score: (all of them, the misses alone).

    The misses are the images not marked good; a reward that only repeats the labels does not rank them (NaN).
    """
    given, scores = torch.tensor(round_rewards, dtype=torch.float64), torch.tensor(feedback.scores, dtype=torch.float64)
    misses = torch.ones(len(scores), dtype=torch.bool)
    misses[feedback.good] = False
    return rewards.rank_correlation(given, scores), rewards.rank_correlation(given[misses], scores[misses])


def run_benchmark(settings: BenchSettings, out: Path, on_round: Callable[[str], None] | None = None) -> list[Run]:
    """Every method on every task and seed; with ``settings.jobs`` above 1, the (task, seed) pairs run in parallel."""
    settings.validate()
    check_output_folder(out, "the results", out / "results.json")
    pairs = [(task, seed) for task in settings.tasks for seed in range(settings.seeds)]
    runs: list[Run] = []

    def keep(new: list[Run]) -> None:
        runs.extend(new)
        runs.sort(key=lambda r: (settings.tasks.index(r.task), r.seed, settings.methods.index(r.method)))
        save_results(out / "results.json", settings, runs)

    with tempfile.TemporaryDirectory(prefix="hero-bench-") as tmp:
        if settings.jobs == 1:
            for task, seed in pairs:
                base = base_point(task, seed, settings, Path(tmp))
                for method in settings.methods:
                    keep([run_one(task, method, seed, settings, Path(tmp), base, on_round)])
            return runs
        # spawned, not forked: torch's thread pools do not survive a fork; each process gets its share of the cores
        threads = max(1, (os.cpu_count() or 1) // settings.jobs)
        with ProcessPoolExecutor(settings.jobs, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_limit_threads, initargs=(threads,)) as pool:
            futures = {pool.submit(run_pair, task, seed, settings, Path(tmp)): (task, seed) for task, seed in pairs}
            for future in as_completed(futures):
                keep(future.result())
                if on_round:
                    task, seed = futures[future]
                    on_round(f"{task} seed {seed}: " + ", ".join(
                        f"{r.method} {r.points[-1].success_plain:.2f}" for r in runs if (r.task, r.seed) == (task, seed)))
    return runs


def run_pair(task: str, seed: int, settings: BenchSettings, workdir: Path) -> list[Run]:
    """Every method on one task and seed, from the same zero-label point."""
    base = base_point(task, seed, settings, workdir)
    return [run_one(task, method, seed, settings, workdir, base) for method in settings.methods]


def _limit_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def save_results(path: Path, settings: BenchSettings, runs: list[Run]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"settings": asdict(settings), "runs": [asdict(r) for r in runs]}, indent=1))
    tmp.replace(path)


def load_results(path: Path) -> tuple[BenchSettings, list[Run]]:
    data = json.loads(Path(path).read_text())
    runs = [Run(r["task"], r["method"], r["seed"], [Point(**p) for p in r["points"]], r.get("agreement", []), r.get("encoder_restarts"),
                r.get("agreement_unseen", []), r.get("encoder_refits"), r.get("score_correlation", []), r.get("miss_correlation", []))
            for r in data["runs"]]
    return BenchSettings(**data["settings"]), runs


@dataclass
class LabelCost:
    """Labels needed to reach the target success rate."""

    mean: float | None  # over the seeds that reached it; None if none did
    reached: int  # seeds that reached it


@dataclass
class Summary:
    task: str
    method: str
    success_plain: tuple[float, float]  # mean, std over seeds, at the end of the budget
    success_refined: tuple[float, float] | None
    to_target_plain: LabelCost
    to_target_refined: LabelCost
    seeds: int
    agreement: tuple[float, float] | None = None  # lowest and mean reward_label_agreement over every round of every seed
    grading: tuple[float, float] | None = None  # mean rank correlation of rewards with the judge's score: whole rounds, misses alone


def success_curve(run: Run, noise: str) -> list[tuple[int, float]]:
    """(labels, success) of a run from ``plain`` or ``refined`` noise; zero labels is the base model either way."""
    if noise not in ("plain", "refined"):
        raise ValueError(noise)
    curve = []
    for point in run.points:
        value = point.success_refined if noise == "refined" else point.success_plain
        if point.labels == 0 and value is None:
            value = point.success_plain
        if value is not None:
            curve.append((point.labels, value))
    return curve


def labels_to_reach(run: Run, target: float, noise: str = "plain") -> int | None:
    return next((labels for labels, success in success_curve(run, noise) if success >= target), None)


def summarize(runs: list[Run], target: float) -> list[Summary]:
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.task, run.method), []).append(run)
    summaries = []
    for (task, method), group in groups.items():
        plain = [r.points[-1].success_plain for r in group]
        refined = [r.points[-1].success_refined for r in group if r.points[-1].success_refined is not None]
        agreement = [a for r in group for a in r.agreement if not math.isnan(a)]  # NaN: a round without a bad image
        whole = [c for r in group for c in r.score_correlation if c is not None]
        misses = [c for r in group for c in r.miss_correlation if c is not None]
        summaries.append(Summary(
            task, method, _mean_std(plain), _mean_std(refined) if refined else None,
            _label_cost(group, target, "plain"), _label_cost(group, target, "refined"), len(group),
            (min(agreement), statistics.mean(agreement)) if agreement else None,
            (statistics.mean(whole), statistics.mean(misses) if misses else math.nan) if whole else None,
        ))
    return summaries


def _label_cost(group: list[Run], target: float, noise: str) -> LabelCost:
    costs = [c for c in (labels_to_reach(r, target, noise) for r in group) if c is not None]
    return LabelCost(statistics.mean(costs) if costs else None, len(costs))


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.pstdev(values) if len(values) > 1 else 0.0


def plot(runs: list[Run], path: Path) -> None:
    """Success rate against labels used, one panel per task, mean and standard error over seeds (reporting.plots)."""
    curves: dict[str, dict[str, dict[str, list]]] = {}
    for run in runs:
        by_noise = curves.setdefault(run.task, {}).setdefault(run.method, {"plain": [], "refined": []})
        for noise in by_noise:
            by_noise[noise].append(success_curve(run, noise))
    max_labels = max((p.labels for r in runs for p in r.points), default=0) or 1
    png = plots.bench_figure_png(curves, max_labels)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(png)
    tmp.replace(path)
