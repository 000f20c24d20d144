"""How much each denoising step weighs in the policy gradient.

    python tests/benchmarks/research.py step-gradients    # demo model, "three circles", 20 steps
    python tests/benchmarks/research.py step-gradients --schedule sd15 --steps 50   # SD1.5's schedule, no model

DDPO's loss sums the log-probabilities of the trained steps, so a step's weight
in the update is the size of its log-probability's gradient. For a sampled step
x_{t-1} = mu(x_t) + sigma * noise, that gradient with respect to the UNet's
noise prediction is noise * (d mu / d eps) / sigma: steps whose sigma is small
next to how much their mean moves with the prediction weigh the most. This
prints, per step, sigma, that factor, and (with a model) the measured norm of
the LoRA gradient of the step's mean log-probability over ``--images`` sampled
trajectories. The late steps settle fine detail; layout and counts are decided
in the early, noisy ones.
"""

from __future__ import annotations

import argparse

import torch

from hero_engine.algorithm.sampling import (
    DdimSchedule,
    ddim_step_with_logprob,
    encode_prompt,
    predict_noise,
    sample_trajectories,
)
from hero_engine.models.pipelines import (
    SD15_SCHEDULER_CONFIG,
    Runtime,
    add_lora,
    load_pipeline,
)


def step_factors(schedule: DdimSchedule, eta: float) -> list[tuple[int, float, float]]:
    """(t, sigma, |d mu / d eps| / sigma) of each step, read off the engine's own DDIM step.

    The step is x_{t-1} = mu(x_t, eps) + sigma * noise with mu linear in eps, so unit changes of the
    prediction and of the noise, from zero, give d mu / d eps and sigma.
    """
    zero, one = torch.zeros(1, 1), torch.ones(1, 1)
    rows = []
    for t in schedule.timesteps:
        def step(eps: torch.Tensor, noise: torch.Tensor, t: torch.Tensor = t) -> float:
            return float(ddim_step_with_logprob(schedule, eps, t.reshape(1), zero, eta, noise=noise)[0])

        base = step(zero, zero)
        d_mean, sigma = step(one, zero) - base, step(zero, one) - base
        rows.append((int(t), sigma, abs(d_mean) / sigma))
    return rows


def lora_gradient_norms(pipe, schedule: DdimSchedule, prompt: str, images: int, eta: float, guidance: float, seed: int) -> list[float]:
    """Mean over sampled trajectories of the LoRA gradient norm of each step's log-probability."""
    torch.manual_seed(seed)
    params = add_lora(pipe.unet, 4, 4.0, "all")
    with torch.no_grad():  # lora_B starts at zero, which would leave lora_A without a gradient
        for p in params:
            p.add_(1e-2 * torch.randn_like(p))
    embeddings = encode_prompt(pipe, prompt)
    side = pipe.unet.config.sample_size
    noise = torch.randn(images, pipe.unet.config.in_channels, side, side, generator=torch.Generator().manual_seed(seed))
    trajectory = sample_trajectories(pipe.unet, schedule, embeddings, noise, eta=eta, guidance=guidance,
                                     generator=torch.Generator().manual_seed(seed + 1), chunk=images)
    cond, uncond = embeddings.expand(1)
    norms = []
    for i, t in enumerate(trajectory.timesteps):
        total = 0.0
        for k in range(images):
            for p in params:
                p.grad = None
            x_t = trajectory.latents[k : k + 1, i]
            eps = predict_noise(pipe.unet, x_t, t.reshape(1), cond, uncond, guidance)
            _, log_prob = ddim_step_with_logprob(schedule, eps, t.reshape(1), x_t, eta, prev_sample=trajectory.latents[k : k + 1, i + 1])
            log_prob.sum().backward()
            total += float(torch.sqrt(sum((p.grad**2).sum() for p in params if p.grad is not None)))
        norms.append(total / images)
    return norms


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--schedule", choices=("demo", "sd15"), default="demo", help="demo: measure on the demo model; sd15: SD1.5's schedule alone")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--prompt", default="three circles")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--eta", type=float, default=1.0)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)


def main(args: argparse.Namespace) -> None:
    pipe = None
    if args.schedule == "demo":
        pipe = load_pipeline("demo", Runtime.resolve("cpu", "float32"))
        schedule = DdimSchedule.from_scheduler_config(pipe.scheduler.config, args.steps)
    else:
        schedule = DdimSchedule.from_scheduler_config(SD15_SCHEDULER_CONFIG, args.steps)
    factors = step_factors(schedule, args.eta)
    norms = lora_gradient_norms(pipe, schedule, args.prompt, args.images, args.eta, args.guidance, args.seed) if pipe else None
    print(f"{args.schedule} schedule, {args.steps} steps, eta {args.eta}" + (f", {args.images} trajectories of {args.prompt!r}" if pipe else ""))
    print(f"{'step':>4} {'t':>4} {'sigma':>7} {'|dmu/deps|/sigma':>17}" + (f" {'LoRA grad norm':>15} {'share':>6}" if norms else ""))
    total = sum(norms) if norms else 0.0
    for i, (t, sigma, factor) in enumerate(factors):
        line = f"{i:>4} {t:>4} {sigma:>7.4f} {factor:>17.3f}"
        if norms:
            line += f" {norms[i]:>15.4f} {norms[i] / total:>6.1%}"
        print(line)
