"""Which policy-update settings make the demo model itself learn: success from plain noise per variant.

    OMP_NUM_THREADS=1 python tests/benchmarks/sweep_demo_settings.py --tasks hand,counting \\
        --variant looser='{"clip_range": 0.01, "ppo_epochs": 2}' --out /tmp/sweep.json

Each variant is a set of HeroConfig overrides on top of the demo model's defaults
(config.DEMO_SCALE). For every task and seed it runs HERO with the task's simulated
evaluator for ``--budget`` labels, then draws held-out images from plain noise (a
seed no round used) and reports the judge's success rate against the untuned
model's on the same noise. The variant ``defaults`` (no overrides) always runs.
Results are appended to ``--out`` as each run ends, so a long sweep can be read
while it runs and merged across processes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import numpy as np

from hero_engine.drivers.bench import (
    BENCH_ENGINE,
    BenchSettings,
    Point,
    create_session,
    held_out_images,
    run_one,
    success_rate,
)
from hero_engine.evaluation import judge
from hero_engine.evaluation.evaluators import get_evaluator
from hero_engine.session.hero_session import HeroSession


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="hand,counting,attribute,spatial,personal")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--budget", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16, help="images per round")
    parser.add_argument("--eval-images", type=int, default=48)
    parser.add_argument("--variant", action="append", default=[], help="NAME=JSON overrides; repeatable")
    parser.add_argument("--no-defaults", action="store_true", help="skip the defaults variant")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    variants = {} if args.no_defaults else {"defaults": {}}
    for item in args.variant:
        name, _, overrides = item.partition("=")
        variants[name] = json.loads(overrides)
    results = json.loads(args.out.read_text()) if args.out.exists() else []
    for task in args.tasks.split(","):
        for seed in map(int, args.seeds.split(",")):
            with tempfile.TemporaryDirectory(prefix="hero-sweep-") as tmp:
                base = None
                for name, overrides in variants.items():
                    settings = BenchSettings(
                        tasks=[task], methods=["hero"], seeds=1, budget=args.budget, batch=args.batch,
                        eval_images=args.eval_images, eval_every=10**6, engine={**BENCH_ENGINE, **overrides},
                    )
                    if base is None:  # the untuned model on the held-out noise, shared by every variant
                        base_images = untuned_images(task, seed, settings, Path(tmp))
                        base = Point(0, success_rate(get_evaluator(task), base_images), None)
                    started = time.perf_counter()
                    run = run_one(task, "hero", seed, settings, Path(tmp) / name, base)
                    end = run.points[-1]
                    with HeroSession.open(Path(tmp) / name / f"{task}-hero-{seed}") as session:
                        tuned_images = held_out_images(session, seed, settings)
                    results.append({
                        "task": task, "seed": seed, "variant": name, "overrides": overrides,
                        "base": base.success_plain, "plain": end.success_plain, "refined": end.success_refined,
                        "agreement_min": min(run.agreement), "agreement_unseen": run.agreement_unseen,
                        "score_correlation": run.score_correlation, "miss_correlation": run.miss_correlation, "pixel_change": pixel_change(base_images, tuned_images), "seconds": round(time.perf_counter() - started, 1),
                    })
                    if task in PARTS:
                        results[-1]["parts"] = {"untuned": PARTS[task](base_images), "tuned": PARTS[task](tuned_images)}
                    args.out.write_text(json.dumps(results, indent=1))
                    print(f"{task:10s} seed {seed} {name:14s} plain {base.success_plain:.2f} -> {end.success_plain:.2f} "
                          f"({end.success_plain - base.success_plain:+.2f}), refined {end.success_refined:.2f}, "
                          f"agreement >= {min(run.agreement):.2f}, before training on the round {unseen_mean(run):.2f}, "
                          f"misses ranked like the judge {mean_of(run.miss_correlation):.2f}, pixel change {results[-1]['pixel_change']:.1f}/255, {time.perf_counter() - started:.0f} s", flush=True)
                    if "parts" in results[-1]:
                        print("           " + ", ".join(f"{key} {results[-1]['parts']['untuned'][key]:.2f} -> {value:.2f}"
                                                        for key, value in results[-1]["parts"]["tuned"].items()), flush=True)
    summarize(results)


def mean_of(values: list[float | None]) -> float:
    """Mean of a run's per-round figures, rounds without one (None or NaN) left out."""
    present = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.mean(present) if present else float("nan")


def unseen_mean(run) -> float:
    """Mean agreement of the encoder before each round's labels, rounds 1 on (round 0's encoder is untrained)."""
    return mean_of(run.agreement_unseen[1:])


def untuned_images(task: str, seed: int, settings: BenchSettings, workdir: Path) -> list:
    with create_session(workdir / "untuned", task, "untuned", seed, settings) as session:
        return held_out_images(session, seed, settings)


def pixel_change(before: list, after: list) -> float:
    """Mean absolute pixel difference (0-255) between the same held-out draws of two models: how far tuning moved them."""
    return float(np.mean([np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean() for a, b in zip(before, after)]))


def spatial_parts(images: list) -> dict[str, float]:
    """Which half of ``spatial`` fails: both colours drawn at all, and yellow left of blue when both are."""
    evaluator = get_evaluator("spatial")
    offsets = [judge.horizontal_offset(im, evaluator.left, evaluator.right) for im in images]
    both = [o for o in offsets if o is not None]
    return {"both colours": len(both) / len(images),
            "yellow left when both": sum(o > evaluator.min_offset for o in both) / len(both) if both else 0.0}


PARTS = {"spatial": spatial_parts}


def summarize(results: list[dict]) -> None:
    """Mean gain from plain noise per task and variant."""
    table: dict[tuple[str, str], list[float]] = {}
    for r in results:
        table.setdefault((r["variant"], r["task"]), []).append(r["plain"] - r["base"])
    for (variant, task), gains in sorted(table.items()):
        print(f"{variant:14s} {task:10s} gain {statistics.mean(gains):+.3f} over {len(gains)} seed(s)")


if __name__ == "__main__":
    main()
