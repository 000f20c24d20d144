"""The feedback-efficiency benchmark: success rate against labels used, per task and method.

For each task (a simulated evaluator with its own prompt and intent), each
method runs on the same label budget over several seeds:

    hero         the full method
    plain-noise  HERO without feedback-guided noise
    binary       HERO's loop with 0/1 rewards from the raw labels (DDPO on human labels)
    untuned      the base model, no feedback

After every round the tuned model draws held-out images (a seed no round used)
from plain noise (does the tuning transfer?) and from the refined noise, and
the task's judge says which fulfil the intent.
"""

from __future__ import annotations

import json
import logging
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hero_engine.config import HeroConfig
from hero_engine.errors import HeroError
from hero_engine.evaluators import Evaluator, get_evaluator, label_batch
from hero_engine.session import HeroSession

log = logging.getLogger(__name__)

METHODS: dict[str, dict | None] = {
    "hero": {},
    "plain-noise": {"guided_noise": False},
    "binary": {"reward": "binary"},
    "untuned": None,
}
HELD_OUT_SEED = 10_007  # no training round draws from this seed

# Engine settings shared by every task and method alike, sized for the small demo model on a CPU:
# 20 DDIM steps (its 64-pixel images settle in fewer steps than SD's) and 100 encoder steps a round
# (its 16x16 latents need far fewer than SD1.5's 64x64). Everything else keeps the paper's defaults.
_BENCH_ENGINE = {"steps": 20, "encoder_epochs": 100, "sample_batch": 32}
FULL = {"seeds": 3, "budget": 128, "batch": 16, "eval_images": 48, "engine": _BENCH_ENGINE}
QUICK = {"seeds": 1, "budget": 32, "batch": 16, "eval_images": 16, "engine": _BENCH_ENGINE}


@dataclass
class BenchSettings:
    tasks: list[str]
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    seeds: int = 3
    budget: int = 256  # labels per run
    batch: int = 32
    eval_images: int = 64
    target: float = 0.5  # success rate whose label cost is reported
    model: str = "demo"
    engine: dict = field(default_factory=dict)  # HeroConfig overrides applied to every task and method alike

    @property
    def rounds(self) -> int:
        return max(1, self.budget // self.batch)


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


def success_rate(evaluator: Evaluator, images: list) -> float:
    return sum(evaluator.is_success(im) for im in images) / len(images)


def run_one(task: str, method: str, seed: int, settings: BenchSettings, workdir: Path,
            on_round: Callable[[str], None] | None = None) -> Run:
    """One method on one task and seed: success after 0, B, 2B, ... labels."""
    evaluator = get_evaluator(task)
    overrides = METHODS[method]
    config = HeroConfig(prompt=evaluator.prompt or "an image", model=settings.model, batch_size=settings.batch, seed=seed)
    config = config.replace(**settings.engine, **(overrides or {}))
    points = []
    with HeroSession.create(workdir / f"{task}-{method}-{seed}", config) as session:
        held_out = session.sample(None, settings.eval_images, seed=HELD_OUT_SEED)
        points.append(Point(0, success_rate(evaluator, held_out), None))
        if overrides is None:
            return Run(task, method, seed, points)
        for round_ in range(settings.rounds):
            label_batch(session, evaluator)
            session.submit()
            report = session.update()
            plain = session.sample(None, settings.eval_images, seed=HELD_OUT_SEED)
            refined = session.sample(None, settings.eval_images, use_refined_noise=True, seed=HELD_OUT_SEED)
            points.append(Point(report.labels_total, success_rate(evaluator, plain), success_rate(evaluator, refined)))
            if on_round:
                on_round(f"{task} {method} seed {seed} round {round_}: success {points[-1].success_plain:.2f}")
    return Run(task, method, seed, points)


def run_benchmark(settings: BenchSettings, out: Path, on_round: Callable[[str], None] | None = None) -> list[Run]:
    for task in settings.tasks:
        get_evaluator(task)  # fail on an unknown task before any work
    unknown = sorted(set(settings.methods) - set(METHODS))
    if unknown:
        raise HeroError(f"unknown method(s) {', '.join(unknown)}: choose from {', '.join(METHODS)}")
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    with tempfile.TemporaryDirectory(prefix="hero-bench-") as tmp:
        for task in settings.tasks:
            for method in settings.methods:
                for seed in range(settings.seeds):
                    runs.append(run_one(task, method, seed, settings, Path(tmp), on_round))
                    save_results(out / "results.json", settings, runs)
    return runs


def save_results(path: Path, settings: BenchSettings, runs: list[Run]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"settings": asdict(settings), "runs": [asdict(r) for r in runs]}, indent=1))
    tmp.replace(path)


def load_results(path: Path) -> tuple[BenchSettings, list[Run]]:
    data = json.loads(Path(path).read_text())
    runs = [Run(r["task"], r["method"], r["seed"], [Point(**p) for p in r["points"]]) for r in data["runs"]]
    return BenchSettings(**data["settings"]), runs


@dataclass
class Summary:
    task: str
    method: str
    success_plain: tuple[float, float]  # mean, std over seeds, at the end of the budget
    success_refined: tuple[float, float] | None
    labels_to_target: float | None  # mean over seeds that reached the target; None if none did
    reached: int  # seeds that reached the target
    seeds: int


def labels_to_reach(run: Run, target: float) -> int | None:
    for point in run.points:
        if point.success_plain >= target:
            return point.labels
    return None


def summarize(runs: list[Run], target: float) -> list[Summary]:
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.task, run.method), []).append(run)
    summaries = []
    for (task, method), group in groups.items():
        plain = [r.points[-1].success_plain for r in group]
        refined = [r.points[-1].success_refined for r in group if r.points[-1].success_refined is not None]
        costs = [c for c in (labels_to_reach(r, target) for r in group) if c is not None]
        summaries.append(Summary(
            task, method, _mean_std(plain), _mean_std(refined) if refined else None,
            statistics.mean(costs) if costs else None, len(costs), len(group),
        ))
    return summaries


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.pstdev(values) if len(values) > 1 else 0.0


def plot(runs: list[Run], path: Path, size: tuple[int, int] = (360, 260)) -> None:
    """Success rate (plain noise, mean over seeds) against labels used: one panel per task, one line per method."""
    from PIL import Image, ImageDraw

    colours = {"hero": (220, 50, 50), "plain-noise": (240, 160, 30), "binary": (50, 110, 220), "untuned": (120, 120, 120)}
    tasks = list(dict.fromkeys(r.task for r in runs))
    width, height = size
    canvas = Image.new("RGB", (width * len(tasks), height + 30), "white")
    draw = ImageDraw.Draw(canvas)
    max_labels = max(p.labels for r in runs for p in r.points) or 1
    for panel, task in enumerate(tasks):
        left, top, right, bottom = panel * width + 40, 20, panel * width + width - 10, height - 20
        draw.rectangle((left, top, right, bottom), outline=(0, 0, 0))
        draw.text((left, 4), task, fill=(0, 0, 0))
        draw.text((left - 30, top - 5), "1.0", fill=(0, 0, 0))
        draw.text((left - 30, bottom - 5), "0.0", fill=(0, 0, 0))
        draw.text((right - 30, bottom + 4), str(max_labels), fill=(0, 0, 0))
        for method, colour in colours.items():
            group = [r for r in runs if r.task == task and r.method == method]
            if not group:
                continue
            steps = min(len(r.points) for r in group)
            xy = []
            for i in range(steps):
                labels = group[0].points[i].labels
                mean = statistics.mean(r.points[i].success_plain for r in group)
                xy.append((left + (right - left) * labels / max_labels, bottom - (bottom - top) * mean))
            if method == "untuned":
                xy = [(left, xy[0][1]), (right, xy[0][1])]
            if len(xy) > 1:
                draw.line(xy, fill=colour, width=2)
            else:
                draw.ellipse((xy[0][0] - 2, xy[0][1] - 2, xy[0][0] + 2, xy[0][1] + 2), fill=colour)
    for i, (method, colour) in enumerate(colours.items()):
        draw.text((10 + i * 110, height + 10), method, fill=colour)
    canvas.save(path)
