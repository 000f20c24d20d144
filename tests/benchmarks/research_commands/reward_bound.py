"""How far HERO's policy update gets when its reward is the judge's own score: a bound on what a better reward could give.

    OMP_NUM_THREADS=1 python tests/benchmarks/research.py reward-bound --tasks counting --seeds 0,1,2 --out bound.json
    python tests/benchmarks/research.py reward-bound --tasks spatial --reward success
    python tests/benchmarks/research.py reward-bound --tasks counting --engine '{"ppo_epochs": 2}'
    python tests/benchmarks/research.py reward-bound --tasks counting --reward-noise 1.0
    python tests/benchmarks/research.py reward-bound --tasks counting --reward-noise 1.0 --noise-kind fixed
    python tests/benchmarks/research.py reward-bound --tasks spatial --batch 48 --budget 384

A session runs exactly as in the benchmark (the demo model's defaults, the task's
simulated evaluator labeling rounds of 16 for 128 labels, feedback-guided noise), with
one change: each image's reward is what the task's judge says of it, not its
similarity to the best in the learned representation. ``--reward score`` gives the
judge's graded score (e.g. minus how far the circle count is from three), ``success``
1 for an image that fulfils the intent and 0 otherwise; they reach the session's
learner through its ``rewards_override``. The advantages, the PPO update and the
LoRA are the session's own. The tuned model then draws the
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
import tempfile
import time
from pathlib import Path

import harness
import numpy as np
import torch
from PIL import Image

from hero_engine.algorithm.learner import RoundFeedback
from hero_engine.drivers.bench import (
    BENCH_ENGINE,
    BenchSettings,
    create_session,
    held_out_images,
    reward_grading,
    success_rate,
)
from hero_engine.evaluation.evaluators import get_evaluator, label_batch
from research_commands import hero_settings


class JudgeRewards:
    """The learner's rewards override: the rewards of the round being learned are the judge's, set just before its update."""

    def __init__(self) -> None:
        self.pending: torch.Tensor | None = None

    def __call__(self, feedback: RoundFeedback) -> torch.Tensor:
        given, self.pending = self.pending, None
        if given is None or len(given) != len(feedback.good):
            raise RuntimeError("the judge's rewards for this round were not set before the update")
        return given


def judge_rewards(scores: list[float], success: list[bool], kind: str) -> torch.Tensor:
    return torch.tensor(scores if kind == "score" else [float(s) for s in success], dtype=torch.float32)


def fixed_noise(images: list[Image.Image], direction: torch.Tensor) -> torch.Tensor:
    """Noise that each image's own pixels set: their projection on one fixed random direction, standardized over
    the round. The same look gets the same error in every round, as a learned reward's mistakes do."""
    pixels = torch.stack([torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32)).flatten() for im in images])
    projected = pixels @ direction
    return (projected - projected.mean()) / projected.std(unbiased=False).clamp_min(1e-8)


def run(task: str, seed: int, settings: BenchSettings, kind: str, workdir: Path,
        noise: float = 0.0, noise_kind: str = "fresh") -> dict:
    evaluator = get_evaluator(task)
    with create_session(workdir / "untuned", task, "untuned", seed, settings) as session:
        untuned = success_rate(evaluator, held_out_images(session, seed, settings))
    correlations, miss_correlations = [], []
    direction = None  # the fixed noise's direction in pixel space, drawn once per session
    judge_hook = JudgeRewards()
    with create_session(workdir / "tuned", task, "hero", seed, settings) as session:
        for round_ in range(settings.rounds):
            batch = session.propose()
            if [info.idx for info in batch.images] != list(range(len(batch.images))):
                raise RuntimeError("the batch's images are not in sampling order")
            # The learner exists once a round is sampled: from now on it takes the judge's rewards instead of its encoder's.
            session._model.learner.rewards_override = judge_hook
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
            if judge_hook.pending is not None:
                raise RuntimeError("the update did not take the judge's rewards: the learner's rewards override went unused")
        tuned = success_rate(evaluator, held_out_images(session, seed, settings))
    return {"task": task, "seed": seed, "reward": kind, "reward_noise": noise, "noise_kind": noise_kind, "engine": settings.engine, "untuned": untuned,
            "tuned": tuned, "rank_correlation": harness.mean(correlations),
            "miss_rank_correlation": harness.mean(miss_correlations)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    harness.add_task_options(parser, tasks="hand,counting,spatial", seeds="0,1,2")
    parser.add_argument("--reward", choices=("score", "success"), default="score")
    parser.add_argument("--reward-noise", type=float, default=0.0, help="spread of the noise added to every reward")
    parser.add_argument("--noise-kind", choices=("fresh", "fixed"), default="fresh",
                        help="fresh: Gaussian, drawn anew for every image; fixed: set by the image's own pixels, the same in every round")
    harness.add_session_options(parser, eval_images=96)
    parser.add_argument("--engine", type=json.loads, default={}, help='HeroConfig overrides as JSON, e.g. \'{"lr": 3e-3}\'')
    harness.add_out_option(parser)


def main(args: argparse.Namespace) -> None:
    results = harness.read_results(args.out)
    for task in harness.tasks(args):
        for seed in harness.seeds(args):
            settings = hero_settings(task, args.engine, args.budget, args.batch, args.eval_images)
            started = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="hero-reward-bound-") as tmp:
                result = run(task, seed, settings, args.reward, Path(tmp), args.reward_noise, args.noise_kind)
            results.append(result)
            harness.write_results(args.out, results)
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
        mean, spread = harness.mean_and_spread(values)
        print(f"{name:40s} gain {mean:+.3f} +- {spread:.3f} over {len(values)} seed(s)")
