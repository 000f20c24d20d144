"""Helpers shared by the engine tests: labeled rounds and a tiny policy with stored trajectories."""

import torch

from hero_engine.algorithm.sampling import (
    DdimSchedule,
    encode_prompt,
    sample_trajectories,
)
from hero_engine.evaluation.evaluators import get_evaluator, label_batch
from hero_engine.models.pipelines import add_lora, build_tiny_pipeline


def run_rounds(session, n, evaluator="redness"):
    """``n`` rounds labeled by a simulated evaluator: label, submit, update. Returns the round reports."""
    judge = get_evaluator(evaluator)
    reports = []
    for _ in range(n):
        label_batch(session, judge)
        session.submit()
        reports.append(session.update())
    return reports


def tiny_policy(n: int, lora_spread: float, dtype: torch.dtype = torch.float32, steps: int = 4):
    """A tiny pipeline with a LoRA moved away from zero (so both factors get gradients), its DDIM
    schedule and prompt embeddings, and ``n`` sampled trajectories on 8x8 latents."""
    pipe = build_tiny_pipeline(dtype)
    torch.manual_seed(0)
    params = add_lora(pipe.unet, 4, 4.0)
    with torch.no_grad():
        for p in params:
            p.add_(lora_spread * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    schedule = DdimSchedule.from_scheduler_config(pipe.scheduler.config, steps)
    embeddings = encode_prompt(pipe, "a hand")
    noise = torch.randn(n, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    trajectory = sample_trajectories(
        pipe.unet, schedule, embeddings, noise, eta=1.0, guidance=5.0, generator=torch.Generator().manual_seed(2), chunk=n
    )
    return pipe, params, schedule, embeddings, trajectory
