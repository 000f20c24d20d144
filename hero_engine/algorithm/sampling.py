"""DDIM sampling that keeps the whole trajectory and each step's log-probability.

The step is written here rather than taken from ``DDIMScheduler.step`` because
the policy update evaluates it at a different timestep for every sample in a
batch, which the scheduler does not allow. All step math is float32.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from hero_engine.algorithm.chunks import chunk_ranges
from hero_engine.errors import HeroError

Progress = Callable[[int, int], None]
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


@dataclass(frozen=True)
class DdimSchedule:
    """The pieces of a DDIM scheduler that one step needs, as float32 tensors."""

    alphas_cumprod: torch.Tensor  # [num_train_timesteps]
    final_alpha_cumprod: float
    timesteps: torch.Tensor  # [steps], descending
    step_ratio: int
    prediction_type: str
    clip_sample_range: float | None
    thresholding: tuple[float, float] | None = None  # (dynamic_thresholding_ratio, sample_max_value)
    _tables: dict[torch.device, torch.Tensor] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_scheduler_config(cls, config, steps: int) -> DdimSchedule:
        from diffusers import DDIMScheduler

        scheduler = DDIMScheduler.from_config(config)
        scheduler.set_timesteps(steps)
        cfg = scheduler.config
        if cfg.prediction_type not in PREDICTION_TYPES:
            raise HeroError(f"the model's scheduler predicts '{cfg.prediction_type}'; hero's DDIM step handles {', '.join(PREDICTION_TYPES)}")
        return cls(
            alphas_cumprod=scheduler.alphas_cumprod.float(),
            final_alpha_cumprod=float(scheduler.final_alpha_cumprod),
            timesteps=scheduler.timesteps.clone(),
            step_ratio=cfg.num_train_timesteps // steps,
            prediction_type=cfg.prediction_type,
            clip_sample_range=float(cfg.clip_sample_range) if cfg.clip_sample else None,
            thresholding=(float(cfg.dynamic_thresholding_ratio), float(cfg.sample_max_value)) if cfg.thresholding else None,
        )

    def alpha_pair(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """alpha_cumprod at t and at the previous (less noisy) timestep, per sample."""
        table = self.alphas_cumprod_on(t.device)
        prev_t = t - self.step_ratio
        alpha_t = table[t]
        alpha_prev = torch.where(prev_t >= 0, table[prev_t.clamp(min=0)], torch.full_like(alpha_t, self.final_alpha_cumprod))
        return alpha_t, alpha_prev

    def alphas_cumprod_on(self, device: torch.device) -> torch.Tensor:
        """The alpha table on ``device``, copied there once: a copy every step would make the host wait on the GPU."""
        table = self._tables.get(device)
        if table is None:
            table = self._tables[device] = self.alphas_cumprod.to(device)
        return table


def ddim_step_with_logprob(
    schedule: DdimSchedule,
    model_output: torch.Tensor,
    t: torch.Tensor,
    sample: torch.Tensor,
    eta: float,
    prev_sample: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step x_t -> x_{t-1} and log p(x_{t-1} | x_t), averaged over C*H*W.

    ``t`` holds one timestep per sample. Give ``prev_sample`` to score a stored
    step, or ``noise`` to draw a new one.
    """
    model_output = model_output.float()
    sample = sample.float()
    alpha_t, alpha_prev = (_per_sample(a, sample) for a in schedule.alpha_pair(t.to(sample.device)))
    beta_t = 1 - alpha_t
    if schedule.prediction_type == "epsilon":
        x0 = (sample - beta_t.sqrt() * model_output) / alpha_t.sqrt()
        eps = model_output
    elif schedule.prediction_type == "v_prediction":
        x0 = alpha_t.sqrt() * sample - beta_t.sqrt() * model_output
        eps = alpha_t.sqrt() * model_output + beta_t.sqrt() * sample
    elif schedule.prediction_type == "sample":
        x0 = model_output
        eps = (sample - alpha_t.sqrt() * x0) / beta_t.sqrt()
    else:
        raise ValueError(f"unsupported prediction type {schedule.prediction_type}")
    # As DDIMScheduler.step does by default: x0 is thresholded or clipped, eps is kept as predicted.
    if schedule.thresholding is not None:
        x0 = dynamic_threshold(x0, *schedule.thresholding)
    elif schedule.clip_sample_range is not None:
        x0 = x0.clamp(-schedule.clip_sample_range, schedule.clip_sample_range)

    variance = (1 - alpha_prev) / (1 - alpha_t) * (1 - alpha_t / alpha_prev)
    std = eta * variance.clamp(min=0).sqrt()
    mean = alpha_prev.sqrt() * x0 + (1 - alpha_prev - std**2).clamp(min=0).sqrt() * eps
    if prev_sample is None:
        if noise is None:
            raise ValueError("give prev_sample or noise")
        prev_sample = mean + std * noise.to(mean.device, torch.float32)
    prev_sample = prev_sample.float()
    log_prob = gaussian_log_prob(prev_sample, mean, std)
    return prev_sample, log_prob


def dynamic_threshold(x0: torch.Tensor, ratio: float, max_value: float) -> torch.Tensor:
    """Imagen's dynamic thresholding of x0, per sample, as ``DDIMScheduler._threshold_sample`` does it."""
    flat = x0.reshape(x0.shape[0], -1)
    s = torch.quantile(flat.abs(), ratio, dim=1).clamp(min=1, max=max_value).unsqueeze(1)
    return (torch.clamp(flat, -s, s) / s).reshape(x0.shape)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Per-sample log N(x; mean, std^2), averaged over all but the batch dimension."""
    log_density = -((x - mean) ** 2) / (2 * std**2) - torch.log(std) - 0.5 * math.log(2 * math.pi)
    return log_density.mean(dim=tuple(range(1, x.ndim)))


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.float().reshape(-1, *([1] * (like.ndim - 1)))


def predict_noise(
    unet, latents: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor, guidance: float,
    added_cond: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The UNet's classifier-free-guided output, float32; ``t`` holds one timestep per sample.

    ``added_cond``: SDXL's added conditioning for the guidance batch (uncond rows, then cond rows), as
    ``PromptEmbeddings.added_conditioning`` gives it; None for SD1.x/SD2.x.
    """
    dtype = unet.dtype
    x = torch.cat([latents, latents]).to(dtype)
    ts = torch.cat([t, t]).to(latents.device)
    context = torch.cat([uncond, cond]).to(dtype)
    extra = {}
    if added_cond is not None:
        extra["added_cond_kwargs"] = {k: v.to(latents.device, dtype) for k, v in added_cond.items()}
    out = unet(x, ts, encoder_hidden_states=context, **extra).sample.float()
    out_uncond, out_cond = out.chunk(2)
    return out_uncond + guidance * (out_cond - out_uncond)


@dataclass
class Trajectory:
    """What sampling keeps of a batch: x_T, every latent, each step's log-prob."""

    latents: torch.Tensor  # [B, steps + 1, C, h, w], float32; latents[:, 0] is the initial noise
    log_probs: torch.Tensor  # [B, steps], float32
    timesteps: torch.Tensor  # [steps]

    @property
    def initial_noise(self) -> torch.Tensor:
        return self.latents[:, 0]

    @property
    def final_latents(self) -> torch.Tensor:
        return self.latents[:, -1]


@dataclass(frozen=True)
class PromptEmbeddings:
    """A prompt's text conditioning, computed once a session; SDXL adds a pooled text embedding and size ids."""

    cond: torch.Tensor  # [1, tokens, dim]
    uncond: torch.Tensor
    pooled_cond: torch.Tensor | None = None  # SDXL: text_encoder_2's pooled projection, [1, dim]
    pooled_uncond: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None  # SDXL: [1, 6] original size (h, w), crop top-left (y, x), target size (h, w)

    def expand(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cond.expand(n, -1, -1), self.uncond.expand(n, -1, -1)

    def added_conditioning(self, n: int) -> dict[str, torch.Tensor] | None:
        """SDXL's ``added_cond_kwargs`` for a guidance batch of ``n`` uncond rows then ``n`` cond rows, as
        ``predict_noise`` stacks the prompt embeddings; None for a model without added conditioning."""
        if self.pooled_cond is None:
            return None
        return {
            "text_embeds": torch.cat([self.pooled_uncond.expand(n, -1), self.pooled_cond.expand(n, -1)]),
            "time_ids": self.time_ids.expand(2 * n, -1),
        }

    def for_size(self, height: int, width: int) -> PromptEmbeddings:
        """The same text with SDXL's size ids for ``height`` x ``width`` images, uncropped (no change for SD1.x/SD2.x)."""
        if self.pooled_cond is None:
            return self
        time_ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=torch.float32, device=self.cond.device)
        return dataclasses.replace(self, time_ids=time_ids)


@torch.no_grad()
def encode_prompt(pipe, prompt: str, negative_prompt: str = "", size: tuple[int, int] | None = None) -> PromptEmbeddings:
    """The prompt's embeddings on the UNet's device; for SDXL with the size ids of ``size`` (default: the UNet's native size).

    SDXL's two text encoders may wait off the UNet's device (on the CPU, leaving the GPU's memory to the
    UNet): they are moved there for the encoding and back.
    """
    device = pipe.unet.device
    if not is_sdxl(pipe):
        cond, uncond = pipe.encode_prompt(
            prompt,
            device=device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=True,
            negative_prompt=negative_prompt or None,
        )
        return PromptEmbeddings(cond=cond, uncond=uncond)
    encoders = [pipe.text_encoder, pipe.text_encoder_2]
    homes = [e.device for e in encoders]
    try:
        for encoder in encoders:
            encoder.to(device)
        cond, uncond, pooled, pooled_uncond = pipe.encode_prompt(
            prompt, device=device, num_images_per_prompt=1, do_classifier_free_guidance=True,
            negative_prompt=negative_prompt or None,
        )
    finally:
        for encoder, home in zip(encoders, homes):
            encoder.to(home)
    if size is None:
        side = pipe.unet.config.sample_size * pipe.vae_scale_factor
        size = (side, side)
    return PromptEmbeddings(cond=cond, uncond=uncond, pooled_cond=pooled, pooled_uncond=pooled_uncond).for_size(*size)


def is_sdxl(pipe) -> bool:
    """Whether ``pipe`` is an SDXL pipeline: its UNet takes SDXL's added conditioning."""
    return takes_added_conditioning(pipe.unet)


def takes_added_conditioning(unet) -> bool:
    """Whether ``unet`` takes SDXL's added conditioning (pooled text and size ids) with every call."""
    return unet.config.addition_embed_type == "text_time"


def draw_step_noise(generator: torch.Generator, steps: int, initial_noise: torch.Tensor) -> torch.Tensor:
    """Every step's noise for the whole batch, [steps, B, C, h, w], drawn on the CPU in one fixed order.

    Drawn for the whole batch even when only some chunks are sampled, so a round resumed
    part-way gives its remaining images the same noise as an uninterrupted round.
    """
    return torch.randn((steps, *initial_noise.shape), generator=generator, dtype=torch.float32)


@torch.no_grad()
def sample_chunk(
    unet,
    schedule: DdimSchedule,
    embeddings: PromptEmbeddings,
    initial_noise: torch.Tensor,
    step_noise: torch.Tensor,
    *,
    eta: float,
    guidance: float,
    on_step: Callable[[int], None] | None = None,
) -> Trajectory:
    """Denoise one chunk, ``initial_noise`` [b, C, h, w] with its ``step_noise`` [steps, b, C, h, w], in one UNet batch."""
    device = unet.device
    x = initial_noise.to(device, torch.float32)
    b = x.shape[0]
    cond, uncond = embeddings.expand(b)
    added = embeddings.added_conditioning(b)
    step_noise = step_noise.to(device, torch.float32)  # one copy for the chunk, none per step
    latents, log_probs = [x], []
    for i, t in enumerate(schedule.timesteps):
        ts = torch.full((b,), int(t), device=device, dtype=torch.long)
        eps = predict_noise(unet, x, ts, cond, uncond, guidance, added)
        x, lp = ddim_step_with_logprob(schedule, eps, ts, x, eta, noise=step_noise[i])
        latents.append(x)
        log_probs.append(lp)
        if on_step:
            on_step(b)
    return Trajectory(torch.stack(latents, dim=1), torch.stack(log_probs, dim=1), schedule.timesteps.clone())


def join_trajectories(parts: list[Trajectory]) -> Trajectory:
    """Chunks' trajectories, in batch order, as one."""
    return Trajectory(torch.cat([p.latents for p in parts]), torch.cat([p.log_probs for p in parts]), parts[0].timesteps)


@torch.no_grad()
def sample_trajectories(
    unet,
    schedule: DdimSchedule,
    embeddings: PromptEmbeddings,
    initial_noise: torch.Tensor,
    *,
    eta: float,
    guidance: float,
    generator: torch.Generator,
    chunk: int,
    on_progress: Progress | None = None,
    short_first: bool = False,
) -> Trajectory:
    """Denoise ``initial_noise`` with DDIM in the batches ``chunk_ranges`` gives.

    The step noise comes from ``generator`` (on the CPU) in a fixed order, so the
    same noise and seed give the same trajectory whatever the chunk size.
    """
    n, steps = initial_noise.shape[0], len(schedule.timesteps)
    step_noise = draw_step_noise(generator, steps, initial_noise)
    progress = StepCounter(n * steps, on_progress)
    parts = [
        sample_chunk(unet, schedule, embeddings, initial_noise[r.start : r.stop], step_noise[:, r.start : r.stop],
                     eta=eta, guidance=guidance, on_step=progress)
        for r in chunk_ranges(n, chunk, short_first)
    ]
    return join_trajectories(parts)


class StepCounter:
    """Counts sampled image-steps towards ``total`` and reports them as (done, total)."""

    def __init__(self, total: int, on_progress: Progress | None, done: int = 0):
        self.total, self.done, self._report = total, done, on_progress

    def __call__(self, images: int) -> None:
        self.done += images
        if self._report:
            self._report(self.done, self.total)


@torch.no_grad()
def decode_images(vae, latents: torch.Tensor, chunk: int = 8) -> list:
    """Final latents -> PIL images."""
    from PIL import Image

    images = []
    for start in range(0, latents.shape[0], chunk):
        z = latents[start : start + chunk].to(vae.device, vae.dtype) / vae.config.scaling_factor
        pixels = vae.decode(z).sample.float()
        pixels = ((pixels / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
        for array in pixels.permute(0, 2, 3, 1).cpu().numpy():
            images.append(Image.fromarray(array))
    return images
