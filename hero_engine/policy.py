"""The DDPO policy update: PPO-clip on stored DDIM steps, LoRA parameters only."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from hero_engine.sampling import DdimSchedule, PromptEmbeddings, Trajectory, ddim_step_with_logprob, predict_noise


def ppo_clip_loss(new_log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, clip_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The PPO clipped objective (as a loss to minimize) and the probability ratios."""
    ratio = torch.exp(new_log_prob - old_log_prob)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip_range, 1 + clip_range)
    return torch.maximum(unclipped, clipped).mean(), ratio


@dataclass(frozen=True)
class PolicySettings:
    train_timesteps: int
    policy_batch: int  # trajectories per optimizer step
    train_batch: int  # trajectories per forward/backward pass: memory only, the gradient is the same
    ppo_epochs: int
    clip_range: float
    grad_clip: float
    eta: float
    guidance: float


@dataclass
class PolicyStats:
    loss: float
    approx_kl: float
    clip_fraction: float
    optimizer_steps: int
    first_ratio_error: float  # |ratio - 1| on the first micro-batch: 0 when sampling and training agree


def policy_update(
    unet,
    params: list[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    schedule: DdimSchedule,
    embeddings: PromptEmbeddings,
    trajectory: Trajectory,
    advantages: torch.Tensor,
    settings: PolicySettings,
    generator: torch.Generator,
    on_progress: Callable[[int, int], None] | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> PolicyStats:
    """Run ``ppo_epochs`` passes of PPO-clip over the round's trajectories.

    Each sample trains on ``train_timesteps`` of its steps, chosen at random per
    sample. One optimizer step covers ``policy_batch`` samples over all of their
    chosen timesteps; they go through the UNet ``train_batch`` at a time, and the
    loss is scaled so the accumulated gradient does not depend on ``train_batch``.
    With a float16 UNet, ``scaler`` scales the loss so its gradient does not
    underflow, and unscales before the gradient-norm clip; a step whose gradient
    overflowed is skipped and the scale lowered.
    """
    device = unet.device
    n, steps = trajectory.log_probs.shape
    k = settings.train_timesteps
    groups = [range(s, min(s + settings.policy_batch, n)) for s in range(0, n, settings.policy_batch)]
    total = settings.ppo_epochs * sum(math.ceil(len(g) / settings.train_batch) for g in groups) * k
    done = 0
    losses, kls, clips = [], [], []
    first_ratio_error = None
    optimizer_steps = 0
    unet.train()
    try:
        for _epoch in range(settings.ppo_epochs):
            order = torch.randperm(n, generator=generator)
            chosen = torch.stack([torch.randperm(steps, generator=generator)[:k] for _ in range(n)])
            for group in groups:
                optimizer.zero_grad(set_to_none=True)
                members = order[list(group)]
                for start in range(0, len(members), settings.train_batch):
                    samples = members[start : start + settings.train_batch]
                    cond, uncond = embeddings.expand(len(samples))
                    for j in range(k):
                        step_index = chosen[samples, j]
                        x_t = trajectory.latents[samples, step_index].to(device)
                        x_prev = trajectory.latents[samples, step_index + 1].to(device)
                        old_lp = trajectory.log_probs[samples, step_index].to(device)
                        t = trajectory.timesteps[step_index].to(device)
                        eps = predict_noise(unet, x_t, t, cond, uncond, settings.guidance)
                        _, new_lp = ddim_step_with_logprob(schedule, eps, t, x_t, settings.eta, prev_sample=x_prev)
                        loss, ratio = ppo_clip_loss(new_lp, old_lp, advantages[samples].to(device), settings.clip_range)
                        # mean over this pass -> its share of the mean over the group's samples and timesteps
                        share = loss * len(samples) / (len(members) * k)
                        (scaler.scale(share) if scaler else share).backward()
                        with torch.no_grad():
                            if first_ratio_error is None:
                                first_ratio_error = float((ratio - 1).abs().max())
                            losses.append(float(loss))
                            kls.append(float(0.5 * ((new_lp - old_lp) ** 2).mean()))
                            clips.append(float(((ratio - 1).abs() > settings.clip_range).float().mean()))
                        done += 1
                        if on_progress:
                            on_progress(done, total)
                if scaler:
                    scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
                if scaler:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                optimizer_steps += 1
            optimizer.zero_grad(set_to_none=True)
    finally:
        unet.eval()  # also after a cancelled or failed update
    return PolicyStats(_mean(losses), _mean(kls), _mean(clips), optimizer_steps, first_ratio_error or 0.0)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
