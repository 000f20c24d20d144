"""How much the initial noise z_T decides whether an image fulfils a task's intent.

    python tests/benchmarks/research.py noise-influence    # every task, demo model, 20 steps
    python tests/benchmarks/research.py noise-influence --tasks counting --noises 48 --draws 6

Feedback-guided noise can only help where z_T carries the intent: HERO draws
the next images near the noises of the good ones, but every image also gets
fresh per-step noise (DDIM with eta 1). For each task this draws ``--noises``
initial noises, denoises each ``--draws`` times with different step noise, and
prints the base success rate next to P(success | the same z_T succeeded under
other step noise). Equal figures mean z_T carries nothing of the intent.
"""

from __future__ import annotations

import argparse
import itertools

import torch

from hero_engine.algorithm.sampling import (
    DdimSchedule,
    decode_images,
    encode_prompt,
    sample_trajectories,
)
from hero_engine.evaluation.evaluators import get_evaluator
from hero_engine.models.pipelines import Runtime, load_pipeline


def success_matrix(pipe, schedule, task: str, noises: int, draws: int, guidance: float) -> torch.Tensor:
    """[noises, draws] of 0/1: whether the image from noise i under step-noise draw j fulfils the intent."""
    evaluator = get_evaluator(task)
    embeddings = encode_prompt(pipe, evaluator.prompt)
    side = pipe.unet.config.sample_size
    initial = torch.randn(noises, pipe.unet.config.in_channels, side, side, generator=torch.Generator().manual_seed(5))
    columns = []
    for draw in range(draws):
        trajectory = sample_trajectories(
            pipe.unet, schedule, embeddings, initial, eta=1.0, guidance=guidance,
            generator=torch.Generator().manual_seed(100 + draw), chunk=32,
        )
        columns.append([evaluator.is_success(im) for im in decode_images(pipe.vae, trajectory.final_latents)])
    return torch.tensor(columns, dtype=torch.float32).T


def conditional_success(matrix: torch.Tensor) -> float | None:
    """P(draw b succeeds | draw a of the same noise succeeded), over ordered pairs of draws."""
    hits = total = 0
    for row in matrix:
        for a, b in itertools.permutations(range(len(row)), 2):
            if row[a]:
                total += 1
                hits += int(row[b])
    return hits / total if total else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", default="hand,counting,attribute,spatial,personal")
    parser.add_argument("--model", default="demo")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--noises", type=int, default=24)
    parser.add_argument("--draws", type=int, default=4)


def main(args: argparse.Namespace) -> None:
    pipe = load_pipeline(args.model, Runtime.resolve())
    schedule = DdimSchedule.from_scheduler_config(pipe.scheduler.config, args.steps)
    print(f"{args.noises} initial noises x {args.draws} step-noise draws, {args.steps} steps, guidance {args.guidance}")
    print(f"{'task':<10} {'base':>6} {'same z_T succeeded':>20}")
    for task in args.tasks.split(","):
        matrix = success_matrix(pipe, schedule, task, args.noises, args.draws, args.guidance)
        conditional = conditional_success(matrix)
        shown = "-" if conditional is None else f"{conditional:.2f}"
        print(f"{task:<10} {matrix.mean().item():>6.2f} {shown:>20}", flush=True)
