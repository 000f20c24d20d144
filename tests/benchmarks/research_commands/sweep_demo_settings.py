"""Which policy-update settings make the demo model itself learn: success from plain noise per variant.

    OMP_NUM_THREADS=1 python tests/benchmarks/research.py sweep-demo-settings --tasks hand,counting \\
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
import tempfile
import time
from pathlib import Path

import harness
import numpy as np

from hero_engine.drivers.bench import (
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
from research_commands import hero_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    harness.add_task_options(parser, tasks="hand,counting,attribute,spatial,personal", seeds="0")
    harness.add_session_options(parser, eval_images=48)
    harness.add_variant_options(parser)
    harness.add_out_option(parser, required=True)


def main(args: argparse.Namespace) -> None:
    variants = harness.variants(args)
    results = harness.read_results(args.out)
    for task in harness.tasks(args):
        for seed in harness.seeds(args):
            with tempfile.TemporaryDirectory(prefix="hero-sweep-") as tmp:
                base = None
                for name, overrides in variants.items():
                    settings = hero_settings(task, overrides, args.budget, args.batch, args.eval_images)
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
                    harness.write_results(args.out, results)
                    print(f"{task:10s} seed {seed} {name:14s} plain {base.success_plain:.2f} -> {end.success_plain:.2f} "
                          f"({end.success_plain - base.success_plain:+.2f}), refined {end.success_refined:.2f}, "
                          f"agreement >= {min(run.agreement):.2f}, before training on the round {unseen_mean(run):.2f}, "
                          f"misses ranked like the judge {harness.mean(run.miss_correlation):.2f}, pixel change {results[-1]['pixel_change']:.1f}/255, {time.perf_counter() - started:.0f} s", flush=True)
                    if "parts" in results[-1]:
                        print("           " + ", ".join(f"{key} {results[-1]['parts']['untuned'][key]:.2f} -> {value:.2f}"
                                                        for key, value in results[-1]["parts"]["tuned"].items()), flush=True)
    summarize(results)


def unseen_mean(run) -> float:
    """Mean agreement of the encoder before each round's labels, rounds 1 on (round 0's encoder is untrained)."""
    return harness.mean(run.agreement_unseen[1:])


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
        print(f"{variant:14s} {task:10s} gain {harness.mean(gains):+.3f} over {len(gains)} seed(s)")
