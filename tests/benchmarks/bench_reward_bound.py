"""How far HERO's policy update gets when its reward is the judge's own score: a bound on what a better reward could give.

    OMP_NUM_THREADS=1 python tests/benchmarks/bench_reward_bound.py --tasks counting --seeds 0,1,2 --out bound.json
    python tests/benchmarks/bench_reward_bound.py --tasks spatial --reward success
    python tests/benchmarks/bench_reward_bound.py --tasks counting --engine '{"ppo_epochs": 2}'
    python tests/benchmarks/bench_reward_bound.py --tasks counting --reward-noise 1.0
    python tests/benchmarks/bench_reward_bound.py --tasks counting --reward-noise 1.0 --noise-kind fixed
    python tests/benchmarks/bench_reward_bound.py --tasks spatial --batch 48 --budget 384

A session runs exactly as in the benchmark (the demo model's defaults, the task's
simulated evaluator labeling rounds of 16 for 128 labels, feedback-guided noise), with
one change: each image's reward is what the task's judge says of it, not its
similarity to the best in the learned representation. ``--reward score`` gives the
judge's graded score (e.g. minus how far the circle count is from three), ``success``
1 for an image that fulfils the intent and 0 otherwise. The advantages, the PPO
update and the LoRA are the session's own. The tuned model then draws the
benchmark's held-out images from plain noise, as ``hero-tui bench`` does.

No representation a session learns from labels can give a better reward than the
judge itself, so where this bound does not lift a task by much, neither can HERO's
encoder: what holds the task back is the policy update (its samples, its LoRA), not
the reward. The graded score also ranks the misses, which no good/bad label says;
``success`` bounds a reward that knows only what the labels know. ``--engine``
changes the session's settings, to ask which policy settings could do better.
``--reward-noise SIGMA`` adds Gaussian noise of that spread to every reward (seeded per
round), to ask how closely a learned reward must follow the judge: the run reports the
rank correlation between the noisy rewards and the judge's score within each round, over
the whole round and over its misses, the figures ``hero-tui bench`` reports for HERO's
own reward (``reward_grading``). With ``--noise-kind fixed`` the noise is not drawn anew:
each image's is its pixels' projection on one random direction, fixed for the session and
standardized over the round, so a look that is over- or under-rated once is so in every
round, as with a learned reward; the within-round figures stay comparable.
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
import torch
from PIL import Image

from hero_engine.algorithm import learner
from hero_engine.drivers.bench import (
    BENCH_ENGINE,
    BenchSettings,
    create_session,
    held_out_images,
    reward_grading,
    success_rate,
)
from hero_engine.evaluation.evaluators import get_evaluator, label_batch


class JudgeRewards:
    """Stands in for ``Learner.fit_rewards``: the rewards of the round being learned are the judge's, set just before it."""

    def __init__(self) -> None:
        self.pending: torch.Tensor | None = None

    def __call__(self, feedback: learner.RoundFeedback, _generator, _on_progress=None) -> tuple[torch.Tensor, dict[str, float]]:
        given, self.pending = self.pending, None
        if given is None or len(given) != len(feedback.good):
            raise RuntimeError("the judge's rewards for this round were not set before the update")
        return given, learner.unset_representation_metrics()


def judge_rewards(scores: list[float], success: list[bool], kind: str) -> torch.Tensor:
    return torch.tensor(scores if kind == "score" else [float(s) for s in success], dtype=torch.float32)


def fixed_noise(images: list[Image.Image], direction: torch.Tensor) -> torch.Tensor:
    """Noise that each image's own pixels set: their projection on one fixed random direction, standardized over
    the round. The same look gets the same error in every round, as a learned reward's mistakes do."""
    pixels = torch.stack([torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32)).flatten() for im in images])
    projected = pixels @ direction
    return (projected - projected.mean()) / projected.std(unbiased=False).clamp_min(1e-8)


def run(task: str, seed: int, settings: BenchSettings, kind: str, judge_hook: JudgeRewards, workdir: Path,
        noise: float = 0.0, noise_kind: str = "fresh") -> dict:
    evaluator = get_evaluator(task)
    with create_session(workdir / "untuned", task, "untuned", seed, settings) as session:
        untuned = success_rate(evaluator, held_out_images(session, seed, settings))
    correlations, miss_correlations = [], []
    direction = None  # the fixed noise's direction in pixel space, drawn once per session
    with create_session(workdir / "tuned", task, "hero", seed, settings) as session:
        for round_ in range(settings.rounds):
            batch = session.propose()
            if [info.idx for info in batch.images] != list(range(len(batch.images))):
                raise RuntimeError("the batch's images are not in sampling order")
            feedback = label_batch(session, evaluator)
            images = [Image.open(info.path) for info in batch.images]
            success = [evaluator.is_success(image) for image in images]
            judge_hook.pending = judge_rewards(feedback.scores, success, kind)
            if noise and noise_kind == "fresh":
                generator = torch.Generator().manual_seed(10_000 * seed + round_)
                judge_hook.pending += noise * torch.randn(len(images), generator=generator)
            elif noise:
                if direction is None:
                    pixels = 3 * images[0].width * images[0].height
                    direction = torch.randn(pixels, generator=torch.Generator().manual_seed(seed)) / pixels ** 0.5
                judge_hook.pending += noise * fixed_noise(images, direction)
            whole, misses = reward_grading(judge_hook.pending.tolist(), feedback)
            correlations.append(whole)
            miss_correlations.append(misses)
            session.submit()
            session.update(sample_next=round_ < settings.rounds - 1)
        tuned = success_rate(evaluator, held_out_images(session, seed, settings))
    measured = [c for c in correlations if not math.isnan(c)]
    measured_misses = [c for c in miss_correlations if not math.isnan(c)]
    return {"task": task, "seed": seed, "reward": kind, "reward_noise": noise, "noise_kind": noise_kind, "engine": settings.engine, "untuned": untuned,
            "tuned": tuned, "rank_correlation": statistics.mean(measured) if measured else float("nan"),
            "miss_rank_correlation": statistics.mean(measured_misses) if measured_misses else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="hand,counting,spatial")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--reward", choices=("score", "success"), default="score")
    parser.add_argument("--reward-noise", type=float, default=0.0, help="spread of the noise added to every reward")
    parser.add_argument("--noise-kind", choices=("fresh", "fixed"), default="fresh",
                        help="fresh: Gaussian, drawn anew for every image; fixed: set by the image's own pixels, the same in every round")
    parser.add_argument("--budget", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16, help="images per round")
    parser.add_argument("--eval-images", type=int, default=96)
    parser.add_argument("--engine", type=json.loads, default={}, help='HeroConfig overrides as JSON, e.g. \'{"lr": 3e-3}\'')
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    judge_hook = JudgeRewards()
    # In this process only, every session's learner takes the judge's rewards instead of its encoder's
    # (an instance is not bound as a method, so it is called with the learner's arguments alone).
    learner.Learner.fit_rewards = judge_hook
    results = json.loads(args.out.read_text()) if args.out and args.out.exists() else []
    for task in args.tasks.split(","):
        for seed in map(int, args.seeds.split(",")):
            settings = BenchSettings(tasks=[task], methods=["hero"], seeds=1, budget=args.budget, batch=args.batch,
                                     eval_images=args.eval_images, eval_every=10**6, engine={**BENCH_ENGINE, **args.engine})
            started = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="hero-reward-bound-") as tmp:
                result = run(task, seed, settings, args.reward, judge_hook, Path(tmp), args.reward_noise, args.noise_kind)
            results.append(result)
            if args.out:
                args.out.write_text(json.dumps(results, indent=1))
            print(f"{task:10s} seed {seed} judge's {args.reward}: plain {result['untuned']:.2f} -> {result['tuned']:.2f} "
                  f"({result['tuned'] - result['untuned']:+.2f}), rank correlation with the score {result['rank_correlation']:.2f} "
                  f"(misses {result['miss_rank_correlation']:.2f}), "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
    gains: dict[str, list[float]] = {}
    for r in results:
        overrides = {k: v for k, v in r.get("engine", {}).items() if k not in BENCH_ENGINE}
        noisy = f", {r.get('noise_kind', 'fresh')} noise {r['reward_noise']}" if r.get("reward_noise") else ""
        gains.setdefault(f"{r['task']} ({r['reward']}{noisy}{', ' + json.dumps(overrides) if overrides else ''})", []).append(r["tuned"] - r["untuned"])
    for name, values in sorted(gains.items()):
        spread = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
        print(f"{name:40s} gain {statistics.mean(values):+.3f} +- {spread:.3f} over {len(values)} seed(s)")


if __name__ == "__main__":
    main()
