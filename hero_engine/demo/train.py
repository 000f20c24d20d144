"""Train the demo model from scratch on the procedural world and save it as a diffusers pipeline.

    python -m hero_engine.demo.train --out DIR [--seed 0]          # phases 1, 2 and 3 in one run

Phase 1 trains the VAE (reconstruction + a small KL); the latent scaling factor
is then set from the latents' std, as SD does. Phase 2 trains the UNet and the
text encoder together on epsilon prediction over the scaled latents, with 10%
empty captions so classifier-free guidance works. Phase 3 fine-tunes the VAE
decoder alone (the encoder, and so the latents, stay fixed). Training length is
a number of steps, not minutes, so the weights depend only on the seed and the
settings, never on how busy the machine was. Every example, noise and timestep
is drawn from the seed.

The shipped weights (hero_engine/demo/weights) were made in three runs, each
recorded in the folder's training_report.json:

    python -m hero_engine.demo.train --out W --vae-steps 800 --unet-steps 2200 --decoder-steps 0
    python -m hero_engine.demo.train --out W --continue-from W --unet-steps 2400
    python -m hero_engine.demo.train --out W --decoder-from W --decoder-steps 1000
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from hero_engine.demo.architecture import (
    DemoSize,
    assemble_pipeline,
    build_text_encoder,
    build_unet,
    build_vae,
    parameter_count,
)
from hero_engine.demo.tokenizer import build_word_tokenizer
from hero_engine.evaluation.world import SIZE, caption_words, make_example
from hero_engine.models.pipelines import SD15_SCHEDULER_CONFIG

REPORT_NAME = "training_report.json"


@dataclass(frozen=True)
class TrainSettings:
    seed: int = 0
    vae_steps: int = 800
    unet_steps: int = 2200
    batch: int = 32
    vae_lr: float = 1e-3
    unet_lr: float = 4e-4
    warmup: int = 50
    kl_weight: float = 1e-6
    caption_dropout: float = 0.1  # empty captions, so the model learns the unconditional score for guidance
    ema_decay: float = 0.995
    min_snr_gamma: float = 5.0  # Min-SNR loss weighting: faster convergence on a small budget
    snapshot_every: int = 0  # UNet steps between saved snapshots (0: only the final weights)
    decoder_steps: int = 1000
    decoder_lr: float = 5e-4
    object_weight: float = 4.0  # extra loss weight on object pixels in the decoder phase
    size: DemoSize = field(default_factory=DemoSize)


def example_batch(seed: int, phase: str, step: int, n: int) -> tuple[torch.Tensor, list[str]]:
    """Images in [-1, 1] and their captions; example i of a step always comes from the same seed string."""
    examples = [make_example(f"{seed}:{phase}:{step}:{i}") for i in range(n)]
    pixels = np.stack([np.asarray(e.image, dtype=np.float32) for e in examples]) / 127.5 - 1
    return torch.from_numpy(pixels).permute(0, 3, 1, 2), [e.caption for e in examples]


class StepBatches(torch.utils.data.Dataset):
    """Item ``step`` is ``example_batch(seed, phase, step, batch)``: drawing examples in worker processes keeps a GPU fed."""

    def __init__(self, seed: int, phase: str, steps: int, batch: int):
        self.seed, self.phase, self.steps, self.batch = seed, phase, steps, batch

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> tuple[torch.Tensor, list[str]]:
        return example_batch(self.seed, self.phase, step, self.batch)


def step_batches(seed: int, phase: str, steps: int, batch: int, workers: int):
    """Every step's batch in order; the same batches whatever the number of workers."""
    if workers == 0:
        return (example_batch(seed, phase, step, batch) for step in range(steps))
    return torch.utils.data.DataLoader(StepBatches(seed, phase, steps, batch), batch_size=None, shuffle=False,
                                       num_workers=workers, prefetch_factor=4, persistent_workers=False)


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


class Ema:
    """Exponential moving average of parameters (the saved weights are the averaged ones)."""

    def __init__(self, params: list[torch.nn.Parameter], decay: float):
        self.params = params
        self.shadow = [p.detach().clone() for p in params]
        self.decay = decay

    def update(self, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for s, p in zip(self.shadow, self.params):
                s.lerp_(p.detach(), 1 - decay)

    def swap(self) -> None:
        """Exchange the live and the averaged weights (twice restores them)."""
        with torch.no_grad():
            for s, p in zip(self.shadow, self.params):
                live = p.detach().clone()
                p.copy_(s)
                s.copy_(live)


Report = Callable[[str, int, int, float], None]


def train_vae(vae, settings: TrainSettings, report: Report) -> float:
    """Reconstruction (L1 + MSE) plus a small KL; returns the final mean reconstruction loss."""
    opt = torch.optim.Adam(vae.parameters(), lr=settings.vae_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, settings.warmup, settings.vae_steps))
    gen = torch.Generator().manual_seed(settings.seed)
    vae.train()
    recent: list[float] = []
    for step in range(settings.vae_steps):
        pixels, _ = example_batch(settings.seed, "vae", step, settings.batch)
        posterior = vae.encode(pixels).latent_dist
        recon = vae.decode(posterior.sample(generator=gen)).sample
        rec_loss = F.l1_loss(recon, pixels) + F.mse_loss(recon, pixels)
        loss = rec_loss + settings.kl_weight * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        recent = (recent + [rec_loss.item()])[-50:]
        report("vae", step, settings.vae_steps, float(np.mean(recent)))
    vae.eval()
    return float(np.mean(recent))


def object_mask(pixels: torch.Tensor) -> torch.Tensor:
    """1 where a pixel differs from its image's background (the border's median colour), else 0; [B, 1, H, W]."""
    border = torch.cat([pixels[:, :, 0], pixels[:, :, -1], pixels[:, :, :, 0], pixels[:, :, :, -1]], dim=2)
    background = border.median(dim=2).values[:, :, None, None]
    return ((pixels - background).abs().sum(dim=1, keepdim=True) > 0.2).float()


def finetune_decoder(vae, settings: TrainSettings, report: Report) -> float:
    """Phase 3: the decoder alone, on the frozen encoder's latents, with object pixels weighted up.

    Objects are a small part of each image, so a plain per-pixel loss leaves
    their colours loose (green decoded bluish). The encoder, and so the latents
    the UNet learned, do not change. Returns the final mean weighted loss.
    """
    params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    opt = torch.optim.Adam(params, lr=settings.decoder_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, settings.warmup, settings.decoder_steps))
    gen = torch.Generator().manual_seed(settings.seed + 2)
    vae.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    vae.decoder.train()
    recent: list[float] = []
    for step in range(settings.decoder_steps):
        pixels, _ = example_batch(settings.seed, "decoder", step, settings.batch)
        with torch.no_grad():
            latents = vae.encode(pixels).latent_dist.sample(generator=gen)
        error = vae.decode(latents).sample - pixels
        weight = 1 + settings.object_weight * object_mask(pixels)
        loss = (weight * (error.abs() + error.pow(2))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        recent = (recent + [loss.item()])[-50:]
        report("decoder", step, settings.decoder_steps, float(np.mean(recent)))
    vae.requires_grad_(False)
    vae.eval()
    return float(np.mean(recent)) if recent else float("nan")


@torch.no_grad()
def latent_scaling_factor(vae, seed: int, n: int = 256) -> float:
    """1 / std of the latents, so the diffusion model sees unit-variance latents (SD's 0.18215, computed)."""
    pixels, _ = example_batch(seed, "scale", 0, n)
    latents = vae.encode(pixels).latent_dist.mean
    return float(1.0 / latents.std())


def encode_captions(tokenizer, text_encoder, captions: list[str]) -> torch.Tensor:
    ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
    return text_encoder(ids.to(text_encoder.device))[0]


def train_denoiser(
    unet, text_encoder, tokenizer, vae, settings: TrainSettings, report: Report, snapshot: Callable[[int], None],
    phase: str = "unet", workers: int = 0,
) -> float:
    """Epsilon prediction on scaled VAE latents, Min-SNR weighted; returns the final mean loss.

    The parts may live on any device: noise and timesteps are drawn on the CPU from the seed and moved
    there. Every ``settings.snapshot_every`` steps ``snapshot(step)`` is called with the averaged weights in place.
    """
    from diffusers import DDPMScheduler

    noise_sched = DDPMScheduler.from_config(SD15_SCHEDULER_CONFIG)
    alphas = noise_sched.alphas_cumprod
    snr = alphas / (1 - alphas)
    loss_weight = snr.clamp(max=settings.min_snr_gamma) / snr
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=settings.unet_lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, settings.warmup, settings.unet_steps))
    ema = Ema(params, settings.ema_decay)
    gen = torch.Generator().manual_seed(settings.seed + 1)
    sf = vae.config.scaling_factor
    unet.train()
    text_encoder.train()
    recent: list[float] = []
    device = unet.device
    batches = step_batches(settings.seed, phase, settings.unet_steps, settings.batch, workers)
    for step, (pixels, captions) in enumerate(batches):
        drop = torch.rand(len(captions), generator=gen) < settings.caption_dropout
        captions = ["" if d else c for c, d in zip(captions, drop.tolist())]
        with torch.no_grad():
            latents = vae.encode(pixels.to(device)).latent_dist.sample(generator=gen) * sf
        noise = torch.randn(latents.shape, generator=gen)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (len(latents),), generator=gen)
        noisy = noise_sched.add_noise(latents, noise.to(device), t.to(device))
        pred = unet(noisy, t.to(device), encode_captions(tokenizer, text_encoder, captions)).sample
        per_example = F.mse_loss(pred, noise.to(device), reduction="none").mean(dim=(1, 2, 3))
        loss = (per_example * loss_weight[t].to(device)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        ema.update(step)
        recent = (recent + [loss.item()])[-50:]
        report(phase, step, settings.unet_steps, float(np.mean(recent)))
        if settings.snapshot_every and (step + 1) % settings.snapshot_every == 0 and step + 1 < settings.unet_steps:
            ema.swap()
            snapshot(step + 1)
            ema.swap()
    ema.swap()
    unet.eval()
    text_encoder.eval()
    return float(np.mean(recent))


def train_demo_pipeline(settings: TrainSettings, out: Path, report: Report, dtype: torch.dtype = torch.float16) -> dict:
    """Train every part, save the pipeline to ``out`` (weights in ``dtype``), return the training figures."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(settings.seed)
    tokenizer = build_word_tokenizer(caption_words(), out / "tokenizer")
    vae = build_vae(settings.size)
    unet = build_unet(settings.size, SIZE // 2 ** (len(settings.size.vae_channels) - 1))
    text_encoder = build_text_encoder(settings.size, tokenizer)

    vae_loss = train_vae(vae, settings, report)
    vae_seconds = time.perf_counter() - started
    vae.requires_grad_(False)
    vae.register_to_config(scaling_factor=latent_scaling_factor(vae, settings.seed))

    def snapshot(step: int) -> None:
        save_pipeline((vae, text_encoder, tokenizer, unet), out, dtype)
        (out / REPORT_NAME).write_text(json.dumps({"snapshot_at_unet_step": step}))

    unet_loss = train_denoiser(unet, text_encoder, tokenizer, vae, settings, report, snapshot)
    decoder_loss = finetune_decoder(vae, settings, report)
    save_pipeline((vae, text_encoder, tokenizer, unet), out, dtype)
    figures = {
        "settings": dataclasses.asdict(settings),
        "parameters": {"vae": parameter_count(vae), "unet": parameter_count(unet), "text_encoder": parameter_count(text_encoder)},
        "vae_reconstruction_loss": vae_loss,
        "latent_scaling_factor": vae.config.scaling_factor,
        "unet_loss": unet_loss,
        "decoder_loss": decoder_loss,
        "vae_minutes": vae_seconds / 60,
        "total_minutes": (time.perf_counter() - started) / 60,
        "torch_threads": torch.get_num_threads(),
    }
    (out / REPORT_NAME).write_text(json.dumps(figures, indent=2))
    return figures


def continue_saved_denoiser(
    source: Path, out: Path, settings: TrainSettings, report: Report, dtype: torch.dtype,
    device: str = "cpu", workers: int = 0,
) -> float:
    """Phase 2 again on a saved pipeline (fresh examples, optimizer and schedule), saved to ``out``; returns the final loss."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(source), local_files_only=True, dtype=torch.float32).to(device)
    parts = (pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.unet)
    pipe.vae.requires_grad_(False)
    loss = train_denoiser(pipe.unet, pipe.text_encoder, pipe.tokenizer, pipe.vae, settings, report,
                          lambda _: save_pipeline(parts, out, dtype), phase="unet-continued", workers=workers)
    save_pipeline(parts, out, dtype)
    return loss


def finetune_saved_decoder(source: Path, out: Path, settings: TrainSettings, report: Report, dtype: torch.dtype) -> float:
    """Run phase 3 on a saved pipeline's VAE and save the pipeline to ``out``."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(source), local_files_only=True, dtype=torch.float32)
    loss = finetune_decoder(pipe.vae, settings, report)
    save_pipeline((pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.unet), out, dtype)
    return loss


def add_stage_to_report(out: Path, stage: str, figures: dict) -> None:
    """Record a later stage's figures next to the ones already in the folder's training report."""
    path = out / REPORT_NAME
    report = json.loads(path.read_text()) if path.exists() else {}
    report.setdefault("later_stages", []).append({"stage": stage, **figures})
    path.write_text(json.dumps(report, indent=2))


def save_pipeline(parts: tuple, out: Path, dtype: torch.dtype) -> None:
    """Save (vae, text_encoder, tokenizer, unet) as a diffusers pipeline in ``dtype``, leaving the live parts as they are."""
    vae, text_encoder, tokenizer, unet = (copy.deepcopy(part) for part in parts)
    pipe = assemble_pipeline(vae, text_encoder, tokenizer, unet).to("cpu", dtype=dtype)
    pipe.save_pretrained(out, safe_serialization=True)
    # transformers loads a text encoder in its config's dtype while diffusers loads the UNet and VAE in float32:
    # say float32, so from_pretrained with no dtype gives one precision (the weights stay stored in ``dtype``).
    config_file = Path(out) / "text_encoder" / "config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "dtype": "float32"}, indent=2, sort_keys=True) + "\n")
    name_text_encoder_weights_as_clip_does(Path(out) / "text_encoder" / "model.safetensors")


def name_text_encoder_weights_as_clip_does(file: Path) -> None:
    """Name the text encoder's weights ``text_model.*``, as CLIP text checkpoints always have.

    transformers 5.6 and later save a CLIPTextModel without that prefix; releases before 5.6 load such a file as all
    weights missing and go on, without a word, with a randomly initialised text encoder.
    """
    with safe_open(file, "pt") as stored:
        metadata = stored.metadata()
        tensors = {name if name.startswith("text_model.") else f"text_model.{name}": stored.get_tensor(name) for name in stored.keys()}
    save_file(tensors, file, metadata=metadata)


def device_name(device: str) -> str:
    """The hardware a stage ran on, for the training report."""
    if torch.device(device).type == "cuda":
        return f"{torch.cuda.get_device_name(torch.device(device))} (torch {torch.__version__})"
    return f"cpu, {torch.get_num_threads()} thread(s) (torch {torch.__version__})"


def _printing_report(every: int) -> Report:
    started = time.perf_counter()

    def report(phase: str, step: int, total: int, loss: float) -> None:
        if (step + 1) % every == 0 or step + 1 == total:
            minutes = (time.perf_counter() - started) / 60
            print(f"{phase} step {step + 1}/{total}  loss {loss:.4f}  {minutes:.2f} min", flush=True)

    return report


def main(argv: list[str] | None = None) -> None:
    defaults = TrainSettings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the diffusers pipeline")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--vae-steps", type=int, default=defaults.vae_steps)
    parser.add_argument("--unet-steps", type=int, default=defaults.unet_steps)
    parser.add_argument("--batch", type=int, default=defaults.batch)
    parser.add_argument("--snapshot-every", type=int, default=defaults.snapshot_every, help="UNet steps between saved snapshots")
    # One thread: on a CPU shared with other work, two threads spin-wait on each other and run 3-5x slower.
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--decoder-steps", type=int, default=defaults.decoder_steps)
    parser.add_argument("--decoder-from", type=Path, help="only run phase 3 (decoder) on this saved pipeline")
    parser.add_argument("--continue-from", type=Path, help="only run phase 2 (UNet, text encoder) again on this saved pipeline")
    parser.add_argument("--tiny", action="store_true", help="tiny channel counts (smoke test)")
    parser.add_argument("--float32", action="store_true", help="save float32 weights (default float16)")
    parser.add_argument("--device", default="cpu", help="torch device for phase 2 with --continue-from (cuda: a GPU)")
    parser.add_argument("--workers", type=int, default=0, help="processes drawing examples for phase 2 (0: the training process)")
    parser.add_argument("--ema-decay", type=float, default=defaults.ema_decay, help="decay of the saved weights' average")
    parser.add_argument("--unet-lr", type=float, default=defaults.unet_lr)
    args = parser.parse_args(argv)
    if (args.device != "cpu" or args.workers) and not args.continue_from:
        parser.error("--device and --workers apply to phase 2 run again (--continue-from)")
    try:
        device_type = torch.device(args.device).type
    except RuntimeError:
        parser.error(f"--device {args.device}: not a torch device (cpu, cuda, cuda:1)")
    if device_type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch sees no CUDA device here")
    torch.set_num_threads(args.threads)
    settings = TrainSettings(
        seed=args.seed, vae_steps=args.vae_steps, unet_steps=args.unet_steps, batch=args.batch, snapshot_every=args.snapshot_every,
        decoder_steps=args.decoder_steps, ema_decay=args.ema_decay, unet_lr=args.unet_lr,
        size=DemoSize.tiny() if args.tiny else DemoSize(),
    )
    dtype = torch.float32 if args.float32 else torch.float16
    started = time.perf_counter()
    if args.decoder_from or args.continue_from:
        if args.decoder_from:
            stage, loss = "decoder_only", finetune_saved_decoder(args.decoder_from, args.out, settings, _printing_report(every=25), dtype)
        else:
            stage, loss = "continued", continue_saved_denoiser(args.continue_from, args.out, settings, _printing_report(every=25),
                                                               dtype, args.device, args.workers)
        figures = {"from": str(args.decoder_from or args.continue_from), "settings": dataclasses.asdict(settings),
                   "loss": loss, "minutes": (time.perf_counter() - started) / 60, "device": device_name(args.device)}
        add_stage_to_report(args.out, stage, figures)
        print(json.dumps({k: v for k, v in figures.items() if k != "settings"}, indent=2))
        return
    figures = train_demo_pipeline(settings, args.out, _printing_report(every=25), dtype)
    print(json.dumps({k: v for k, v in figures.items() if k != "settings"}, indent=2))


if __name__ == "__main__":
    main()
