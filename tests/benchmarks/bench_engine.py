"""Seconds per round (per stage) and peak memory of the headless HERO loop.

    python tests/benchmarks/bench_engine.py                       # tiny model, CPU, batch 8, 50 steps
    python tests/benchmarks/bench_engine.py --sd15 --batch 64     # SD1.5 architecture, random weights (GPU)
    python tests/benchmarks/bench_engine.py --sd15 --cpu-check    # the full-size path on a CPU in minutes

``--cpu-check`` is 4 images of 256 px, 2 DDIM steps, 2 encoder steps of 8
triplets, 1 trained timestep, UNet batches of 2 and 1, two rounds, the second
keeping the previous best: every stage through SD1.5's whole architecture, not
the paper's settings (``--resolution 512`` for SD1.5's own size; for the
paper's settings on a GPU, tests/benchmarks/gpu_check.py).

The loop is the one `hero-tui run` drives: HeroSession with the `redness`
simulated evaluator. ``--sd15`` builds a full-size SD1.5-architecture pipeline
from its configs with random weights (nothing is downloaded), saves it to a
temporary folder and loads it from there, as a user's local model would be.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import harness  # noqa: F401  (before hero_engine: sets the environment it loads in)
import torch

from hero_engine.config import HeroConfig
from hero_engine.evaluation.evaluators import get_evaluator, label_batch
from hero_engine.session.hero_session import HeroSession

STAGES = ("sampling", "representation", "policy", "saving")


def build_sd15_architecture(folder: Path, dtype: torch.dtype = torch.float16) -> Path:
    """SD1.5's UNet, VAE and CLIP text encoder shapes with random weights, saved as a diffusers folder in ``dtype``."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from hero_engine.models.clip_vocab import build_offline_tokenizer
    from hero_engine.models.pipelines import SD15_SCHEDULER_CONFIG

    unet = UNet2DConditionModel(
        sample_size=64,
        cross_attention_dim=768,
        attention_head_dim=8,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
    )
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        latent_channels=4,
        sample_size=512,
    )
    tokenizer = build_offline_tokenizer()
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
        num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ))
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=DDIMScheduler.from_config(SD15_SCHEDULER_CONFIG), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )
    pipe.to(dtype=dtype).save_pretrained(folder)
    return folder


def build_sdxl_architecture(folder: Path, dtype: torch.dtype = torch.float16, device: str = "cpu", configs: Path | None = None) -> Path:
    """SDXL 1.0's UNet, VAE and two text encoders, from hero's shipped sdxl-base configs (or the diffusers-layout
    ``configs``), with random weights initialised on ``device`` (3.5 B parameters), saved as a diffusers folder in ``dtype``."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from hero_engine.models.model_configs import HERE, tokenizer_for

    configs = configs or HERE / "sdxl-base"
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(configs / "unet")).to(dtype)
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(configs / "vae")).to(dtype)
        text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(configs / "text_encoder")).to(dtype)
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(configs / "text_encoder_2")).to(dtype)
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer_for(configs),
        tokenizer_2=tokenizer_for(configs, "tokenizer_2"), unet=unet,
        scheduler=DDIMScheduler.from_config(DDIMScheduler.load_config(configs / "scheduler")),
    )
    pipe.save_pretrained(folder)
    return folder


def label_round(session, evaluator, keep_previous_best: bool = False) -> None:
    """The evaluator's labels for the open round; optionally keep the previous best; always a valid round.

    A model with random weights draws noise, so the evaluator may see no contrast:
    then one image is made good (or one not good) so the round can be submitted.
    """
    label_batch(session, evaluator)
    batch = session.propose()
    if keep_previous_best and batch.previous_best is not None:
        session.choose_best(batch.previous_best.id)
    best = session.batch(batch.round).best_id
    others = [info for info in session.batch(batch.round).images if info.id != best]
    if not any(info.label == "good" for info in others):
        session.label(others[0].id, True)
    if all(info.label == "good" for info in others):
        session.label(others[-1].id, False)


def peak_memory() -> str:
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    text = f"peak RSS {rss_mib:,.0f} MiB"
    if torch.cuda.is_available():
        # the policy update resets the peak counter to size its passes: this peak is from the last update on
        text += f", peak VRAM {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB (allocated)"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sd15", action="store_true", help="full-size SD1.5 architecture with random weights")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--encoder-epochs", type=int, default=None, help="encoder steps a round (paper: 500)")
    parser.add_argument("--encoder-triplets", type=int, default=None, help="triplets per encoder step (paper: 64)")
    parser.add_argument("--train-timesteps", type=int, default=None, help="trained timesteps per trajectory (paper: 5)")
    parser.add_argument("--policy-batch", type=int, default=None)
    parser.add_argument("--train-batch", type=int, default=None)
    parser.add_argument("--sample-batch", type=int, default=None)
    parser.add_argument("--resolution", type=int, default=0, help="image side in pixels (0: the model's own)")
    parser.add_argument("--keep-best", action="store_true", help="keep the previous best in every round after round 0")
    parser.add_argument("--cpu-check", action="store_true", help="tiny settings (see the docstring): a quick full-size run")
    args = parser.parse_args()
    if args.cpu_check:
        quick = dict(batch=4, steps=2, rounds=2, encoder_epochs=2, encoder_triplets=8, train_timesteps=1,
                     policy_batch=2, train_batch=1, sample_batch=2, resolution=256, keep_best=True)
        for name, value in quick.items():
            if name in ("keep_best",) or getattr(args, name) in (None, parser.get_default(name)):
                setattr(args, name, value)
    optional = {name: getattr(args, name) for name in ("encoder_epochs", "encoder_triplets", "train_timesteps",
                                                       "policy_batch", "train_batch", "sample_batch")}
    optional = {k: v for k, v in optional.items() if v is not None}
    if args.steps < 5 and "train_timesteps" not in optional:
        optional["train_timesteps"] = args.steps  # at most one trained timestep per step

    with tempfile.TemporaryDirectory(prefix="hero-bench-") as tmp:
        model = str(build_sd15_architecture(Path(tmp) / "sd15")) if args.sd15 else "tiny"
        config = HeroConfig(prompt="a photo of a hand", model=model, batch_size=args.batch, steps=args.steps,
                            resolution=args.resolution, **optional)
        evaluator = get_evaluator("redness")
        rows = []
        with HeroSession.create(Path(tmp) / "session", config, device=args.device, dtype=args.dtype) as session:
            started = time.perf_counter()
            session.propose()
            first_sampling = time.perf_counter() - started
            print(f"model {'SD1.5 architecture (random weights)' if args.sd15 else 'tiny'} on {session.runtime.device} "
                  f"({session.runtime.dtype}), batch {args.batch}, {session._model.latent_shape()[1] * session._model.vae_scale} px, {args.steps} steps, "
                  f"{config.encoder_epochs} encoder steps, "
                  f"{config.train_timesteps} trained timesteps{', previous best kept' if args.keep_best else ''}; "
                  f"model load + round 0 sampling {first_sampling:.1f} s")
            print(f"{'round':>5} " + " ".join(f"{s:>15}" for s in STAGES) + f" {'total':>8}")
            for i in range(args.rounds):
                label_round(session, evaluator, keep_previous_best=args.keep_best and i > 0)
                session.submit()
                report = session.update()
                seconds = [report.seconds.get(s, 0.0) for s in STAGES]
                rows.append(seconds)
                print(f"{report.round:>5} " + " ".join(f"{v:>15.2f}" for v in seconds) + f" {sum(seconds):>8.2f}")
        means = [statistics.mean(col) for col in zip(*rows)]
        print(f"{'mean':>5} " + " ".join(f"{v:>15.2f}" for v in means) + f" {sum(means):>8.2f}")
        print(peak_memory())
        print(f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__}, python {sys.version.split()[0]}"
              + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))


if __name__ == "__main__":
    main()
