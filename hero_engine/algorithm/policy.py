"""The DDPO policy update: PPO-clip on stored DDIM steps, LoRA parameters only."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from hero_engine.algorithm.pass_size import PassSizer
from hero_engine.algorithm.sampling import (
    DdimSchedule,
    PromptEmbeddings,
    Trajectory,
    ddim_step_with_logprob,
    predict_noise,
)


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
    rows_per_pass: int  # (trajectory, timestep) rows per forward/backward pass, 0: pass_size.AUTO; never the gradient
    ppo_epochs: int
    clip_range: float
    grad_clip: float
    eta: float
    guidance: float
    checkpointing: bool = False  # gradient checkpointing for the whole update (SDXL: learner.policy_settings)


@dataclass
class PolicyStats:
    loss: float  # the PPO loss, mean over every trained row of the update
    approx_kl: float  # 0.5 (log p_new - log p_old)^2, mean over every trained row
    clip_fraction: float  # share of the trained rows with |ratio - 1| > clip_range
    optimizer_steps: int
    first_ratio_error: float  # max |ratio - 1| over the update's first pass: 0 when sampling and training agree
    rows_per_pass: int  # the most (trajectory, timestep) rows one pass took: what the pass sizer chose
    checkpointing: bool  # gradient checkpointing was on for some of the update (too few rows fitted without it)


@dataclass(frozen=True)
class StepRows:
    """Stored DDIM steps gathered for one pass; row i is one trajectory at one of its steps."""

    x_t: torch.Tensor  # [rows, C, h, w]
    x_prev: torch.Tensor  # [rows, C, h, w]: the stored step's result
    t: torch.Tensor  # [rows]
    old_log_prob: torch.Tensor  # [rows]
    advantages: torch.Tensor  # [rows]: each row's trajectory's


def training_plan(generator: torch.Generator, n: int, steps: int, k: int, epochs: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each epoch's trajectory order [n] and trained step indices [n, k], drawn from ``generator`` in the update's order.

    The update draws its plan from here, and so does the check of the old log-probs (``old_log_probs``), which
    then knows, before the update, which stored steps it will read.
    """
    plan = []
    for _epoch in range(epochs):
        order = torch.randperm(n, generator=generator)
        chosen = torch.stack([torch.randperm(steps, generator=generator)[:k] for _ in range(n)])
        plan.append((order, chosen))
    return plan


def planned_steps(plan: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """[2, m] the distinct (trajectory, step index) pairs a plan trains on, in any epoch."""
    pairs = torch.cat([training_rows(order, chosen) for order, chosen in plan], dim=1)
    return torch.unique(pairs, dim=1)


def training_rows(order: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """[2, n * k] (trajectory, step index) pairs in training order: each trajectory of ``order`` at its ``chosen`` steps.

    The trajectories ``order[a:b]`` own rows ``a * k`` to ``b * k``.
    """
    k = chosen.shape[1]
    return torch.stack([order.repeat_interleave(k), chosen[order].reshape(-1)])


def gather_rows(trajectory: Trajectory, advantages: torch.Tensor, rows: torch.Tensor) -> StepRows:
    """The stored steps of ``rows`` ([2, r] trajectory and step indices), all on the trajectory's device."""
    samples, steps = rows
    return StepRows(
        x_t=trajectory.latents[samples, steps],
        x_prev=trajectory.latents[samples, steps + 1],
        t=trajectory.timesteps[steps],
        old_log_prob=trajectory.log_probs[samples, steps],
        advantages=advantages[samples],
    )


def row_log_probs(unet, schedule: DdimSchedule, embeddings: PromptEmbeddings, rows: StepRows, eta: float, guidance: float) -> torch.Tensor:
    """log p of each row's stored step under the UNet as it is now, through the training path (guidance, float32 step)."""
    cond, uncond = embeddings.expand(rows.t.shape[0])
    eps = predict_noise(unet, rows.x_t, rows.t, cond, uncond, guidance, embeddings.added_conditioning(rows.t.shape[0]))
    _, log_prob = ddim_step_with_logprob(schedule, eps, rows.t, rows.x_t, eta, prev_sample=rows.x_prev)
    return log_prob


def train_pass(
    unet, schedule: DdimSchedule, embeddings: PromptEmbeddings, rows: StepRows, settings: PolicySettings,
    share: float, scaler: torch.amp.GradScaler | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Accumulate ``share`` times the gradient of the pass's mean PPO loss.

    Returns the pass's (loss, approx_kl, clipped rows) summed over its rows, and
    its max |ratio - 1|: device tensors, so that reading them waits for nothing.
    """
    new_log_prob = row_log_probs(unet, schedule, embeddings, rows, settings.eta, settings.guidance)
    loss, ratio = ppo_clip_loss(new_log_prob, rows.old_log_prob, rows.advantages, settings.clip_range)
    scaled = loss * share
    (scaler.scale(scaled) if scaler else scaled).backward()
    with torch.no_grad():
        n = ratio.shape[0]
        error = (ratio - 1).abs()
        sums = torch.stack([loss * n, 0.5 * ((new_log_prob - rows.old_log_prob) ** 2).sum(), (error > settings.clip_range).float().sum()])
        return sums, error.max()


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
    pass_sizer: PassSizer | None = None,
) -> PolicyStats:
    """Run ``ppo_epochs`` epochs of PPO-clip over the round's trajectories.

    Each sample trains on ``train_timesteps`` of its steps, chosen at random per
    sample. One optimizer step covers ``policy_batch`` samples over all of their
    chosen timesteps: rows of (sample, timestep), which go through the UNet
    ``rows_per_pass`` at a time (``pass_sizer`` chooses, by default from
    ``settings``); each pass's loss is scaled by its share of the step's rows, so
    the accumulated gradient is that of the mean over all of them whatever the
    pass size. With a float16 UNet, ``scaler`` scales the loss so its gradient
    does not underflow, and unscales before the gradient-norm clip; a step whose
    gradient overflowed is skipped and the scale lowered.

    The stored steps are gathered on the UNet's device with indices already
    there, and the statistics stay there until the end: the loop never waits
    for the GPU (a float16 scaler's overflow check aside, once a step).
    """
    device = unet.device
    n, steps = trajectory.log_probs.shape
    k = settings.train_timesteps
    groups = [(s * k, min(s + settings.policy_batch, n) * k) for s in range(0, n, settings.policy_batch)]
    sizer = pass_sizer or PassSizer(settings.rows_per_pass, unet, settings.policy_batch * k, math.prod(trajectory.latents.shape[-2:]),
                                    checkpointing=settings.checkpointing)
    on_device = Trajectory(trajectory.latents.to(device), trajectory.log_probs.to(device), trajectory.timesteps.to(device))
    advantages = advantages.to(device, torch.float32)
    total = settings.ppo_epochs * n * k
    done = 0
    sums = torch.zeros(3, device=device)  # loss, approx_kl, clipped rows: summed over rows
    first_ratio_error = None
    optimizer_steps = largest_pass = 0
    if on_progress:
        on_progress(0, total)  # the stage's start, which a front end times it from
    unet.train()
    try:
        for order, chosen in training_plan(generator, n, steps, k, settings.ppo_epochs):
            epoch_rows = training_rows(order, chosen).to(device)  # one copy an epoch, then indices on the device
            for group_start, group_end in groups:
                optimizer.zero_grad(set_to_none=True)
                start = group_start
                while start < group_end:
                    size = sizer.next_rows(group_end - start)
                    largest_pass = max(largest_pass, size)
                    pass_rows = gather_rows(on_device, advantages, epoch_rows[:, start : start + size])
                    # the pass's mean loss -> its share of the mean over the step's rows
                    share = size / (group_end - group_start)
                    run_pass = partial(train_pass, unet, schedule, embeddings, pass_rows, settings, share, scaler)
                    pass_sums, ratio_error = _sized_pass(sizer, optimizer, size, run_pass)
                    sums += pass_sums
                    if first_ratio_error is None:
                        first_ratio_error = ratio_error
                    start += size
                    done += size
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
        used_checkpointing = sizer.checkpointing
        sizer.close()
        unet.eval()  # also after a cancelled or failed update
    loss, approx_kl, clipped, first = torch.cat([sums / done, first_ratio_error.reshape(1).float()]).tolist()
    return PolicyStats(loss, approx_kl, clipped, optimizer_steps, first, largest_pass, used_checkpointing)


def _sized_pass(sizer: PassSizer, optimizer: torch.optim.Optimizer, size: int, run_pass: Callable[[], tuple]) -> tuple:
    """Run one pass as ``sizer`` measures it; a first pass that ran out of memory runs again with checkpointing."""
    try:
        return _measured_pass(sizer, size, run_pass)
    except torch.OutOfMemoryError:
        if not sizer.retry_with_checkpointing():
            raise
    # out of the except block, where the traceback no longer holds the failed pass's tensors
    optimizer.zero_grad(set_to_none=True)
    return _measured_pass(sizer, size, run_pass)


def _measured_pass(sizer: PassSizer, size: int, run_pass: Callable[[], tuple]) -> tuple:
    sizer.start_pass()
    result = run_pass()
    sizer.end_pass(size)
    return result
