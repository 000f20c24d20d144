"""The stored old log-probs of PPO's ratio, checked against the policy update's own path and recomputed through it.

Sampling stores each step's log-prob with the UNet in eval mode, ``sample_batch``
images a pass; the policy update computes the new ones in train mode,
``train_batch`` stored steps (rows) a pass. In half precision the kernels a shape picks
may round differently by more than the clip range (1e-4): every ratio would then
start clipped and the round would teach the LoRA nothing. What the update needs is
that both sides of the ratio come from one path, so an old log-prob that drifts
from it is recomputed through it, with no gradient, while the GPU is idle.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from hero_engine.algorithm.pass_size import cpu_rows
from hero_engine.algorithm.policy import PolicySettings, gather_rows, row_log_probs
from hero_engine.algorithm.sampling import DdimSchedule, PromptEmbeddings, Trajectory

METRICS = ("old_log_prob_error", "old_log_prob_error_after", "old_log_prob_recomputed")  # a round's check: before, after, whether recomputed
MEASURED_STEPS = 32  # stored steps the mismatch is measured on: a few passes, cheap beside a recompute


def aligns(runtime) -> bool:
    """Whether a round's old log-probs are checked against the update's path before it learns: on a GPU, and in half
    precision. On a CPU in float32 the two paths agree to about 1e-6 (a hundredth of the clip range), so no check is
    spent there."""
    return runtime.device.type == "cuda" or runtime.dtype != torch.float32


def update_pass_rows(settings: PolicySettings, latent_pixels: int) -> int:
    """Stored steps the policy update puts through the UNet in one pass, as far as it is known before the update.

    A number of rows the person set is the update's. Sized from free memory (AUTO on CUDA), the update measures its
    passes as it runs; the check then uses the latent-size rule the update uses off CUDA, and its figure after a
    recompute says how far the remaining difference of shape moves the ratio.
    """
    return settings.rows_per_pass or cpu_rows(latent_pixels)


@torch.no_grad()
def training_path_log_probs(
    unet, schedule: DdimSchedule, embeddings: PromptEmbeddings, trajectory: Trajectory,
    samples: torch.Tensor, step_indices: torch.Tensor, settings: PolicySettings,
    on_pass: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """log p of the stored steps (``samples[i]``, ``step_indices[i]``) as the policy update computes them.

    The update's own gathering and scoring (``policy.gather_rows``, ``policy.row_log_probs``): same precision, train
    mode, its rows per pass, timesteps mixed within a pass as the update mixes them; no gradient.
    """
    device = unet.device
    rows = update_pass_rows(settings, math.prod(trajectory.latents.shape[-2:]))
    passes = -(-len(samples) // rows)
    on_device = Trajectory(trajectory.latents.to(device), trajectory.log_probs.to(device), trajectory.timesteps.to(device))
    no_advantages = torch.zeros(trajectory.log_probs.shape[0], device=device)
    pairs = torch.stack([samples, step_indices]).to(device)
    was_training = unet.training
    unet.train()
    try:
        out = []
        for number, start in enumerate(range(0, len(samples), rows)):
            step_rows = gather_rows(on_device, no_advantages, pairs[:, start : start + rows])
            log_prob = row_log_probs(unet, schedule, embeddings, step_rows, settings.eta, settings.guidance)
            out.append(log_prob.to(trajectory.log_probs.device))
            if on_pass:
                on_pass(number + 1, passes)
    finally:
        unet.train(was_training)
    return torch.cat(out)


def every_step(trajectory: Trajectory) -> torch.Tensor:
    """[2, n * steps] every stored (trajectory, step index) pair."""
    n, steps = trajectory.log_probs.shape
    flat = torch.arange(n * steps)
    return torch.stack([flat // steps, flat % steps])


def log_prob_mismatch(
    unet, schedule: DdimSchedule, embeddings: PromptEmbeddings, trajectory: Trajectory, settings: PolicySettings,
    generator: torch.Generator, count: int = MEASURED_STEPS, among: torch.Tensor | None = None,
) -> float:
    """Max |stored - training path| log-prob over ``count`` stored steps drawn at random (from the [2, m] pairs
    ``among``, default every step): |ratio - 1| at the update's start."""
    among = every_step(trajectory) if among is None else among
    samples, step_indices = among[:, torch.randperm(among.shape[1], generator=generator)[:count]]
    fresh = training_path_log_probs(unet, schedule, embeddings, trajectory, samples, step_indices, settings)
    return float((fresh - trajectory.log_probs[samples, step_indices]).abs().max())


def recompute_log_probs(
    unet, schedule: DdimSchedule, embeddings: PromptEmbeddings, trajectory: Trajectory, settings: PolicySettings,
    on_pass: Callable[[int, int], None] | None = None, steps: torch.Tensor | None = None,
) -> torch.Tensor:
    """The stored steps' log-probs through the training path, as a new [n, steps] tensor (the trajectory is not changed).

    ``steps``: the [2, m] (trajectory, step index) pairs to recompute (default every one); the others keep their
    stored log-probs. The update reads only the steps its plan trains (``policy.planned_steps``), a tenth of them
    at the paper's 5 of 50.
    """
    steps = every_step(trajectory) if steps is None else steps
    fresh = trajectory.log_probs.clone()
    fresh[steps[0], steps[1]] = training_path_log_probs(
        unet, schedule, embeddings, trajectory, steps[0], steps[1], settings, on_pass).to(fresh.dtype)
    return fresh
