"""Seconds per round (per stage) and peak memory of the headless HERO loop.

    python tests/benchmarks/bench_engine.py                       # tiny model, CPU, batch 8, 50 steps
    python tests/benchmarks/bench_engine.py --sd15 --batch 64     # SD1.5 architecture, random weights (GPU)

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

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import torch  # noqa: E402

from hero_engine.config import HeroConfig  # noqa: E402
from hero_engine.evaluators import get_evaluator, label_batch  # noqa: E402
from hero_engine.session import HeroSession  # noqa: E402

STAGES = ("sampling", "representation", "policy", "saving")


def build_sd15_architecture(folder: Path) -> Path:
    """SD1.5's UNet, VAE and CLIP text encoder shapes with random weights, saved as a diffusers folder."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from hero_engine.models import SD15_SCHEDULER_CONFIG, build_offline_tokenizer

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
    pipe.save_pretrained(folder)
    return folder


def peak_memory() -> str:
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    text = f"peak RSS {rss_mib:,.0f} MiB"
    if torch.cuda.is_available():
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
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hero-bench-") as tmp:
        model = str(build_sd15_architecture(Path(tmp) / "sd15")) if args.sd15 else "tiny"
        config = HeroConfig(prompt="a photo of a hand", model=model, batch_size=args.batch, steps=args.steps)
        evaluator = get_evaluator("redness")
        rows = []
        with HeroSession.create(Path(tmp) / "session", config, device=args.device, dtype=args.dtype) as session:
            started = time.perf_counter()
            session.propose()
            first_sampling = time.perf_counter() - started
            print(f"model {'SD1.5 architecture (random weights)' if args.sd15 else 'tiny'} on {session.runtime.device} "
                  f"({session.runtime.dtype}), batch {args.batch}, {args.steps} steps; "
                  f"model load + round 0 sampling {first_sampling:.1f} s")
            print(f"{'round':>5} " + " ".join(f"{s:>15}" for s in STAGES) + f" {'total':>8}")
            for _ in range(args.rounds):
                label_batch(session, evaluator)
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
