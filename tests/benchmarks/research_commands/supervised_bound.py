"""Can the session's LoRA move a task's success from plain noise at all? Fine-tune it on the model's own successes.

    OMP_NUM_THREADS=1 python tests/benchmarks/research.py supervised-bound --task hand
    python tests/benchmarks/research.py supervised-bound --task personal --pool 256 --steps 400 --lr 3e-4

A bound for what feedback can teach the demo model, without any reinforcement
learning: draw ``--pool`` images for the task's prompt, keep those the task's judge
calls successes, and train the same LoRA the sessions train (rank, targets and
sampler settings of the demo model's defaults) on them with the ordinary denoising
loss. The held-out success from plain noise (a seed no pool draw used, the same
noise before and after) is printed before training and every ``--eval-every`` steps.
If this cannot raise a task's success, 128 labels of reinforcement learning will not.
"""

from __future__ import annotations

import argparse
import time

import torch

from hero_engine.algorithm import noise
from hero_engine.algorithm.sampling import (
    DdimSchedule,
    decode_images,
    encode_prompt,
    sample_trajectories,
)
from hero_engine.config import HeroConfig
from hero_engine.drivers.bench import held_out_seed, success_rate
from hero_engine.evaluation.evaluators import get_evaluator
from hero_engine.models import pipelines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", default="hand")
    parser.add_argument("--pool", type=int, default=256, help="images drawn to find successes in")
    parser.add_argument("--steps", type=int, default=400, help="optimizer steps of 8 images")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--eval-images", type=int, default=96)
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", choices=[*pipelines.LORA_TARGET_MODULES, "unet"], default="attention",
                        help="what is trained: a LoRA on the attention projections or on all layers, or the whole UNet")
    parser.add_argument("--rank", type=int, default=None, help="LoRA rank (alpha = rank); default: the session's")


def main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    evaluator = get_evaluator(args.task)
    config = HeroConfig(prompt=evaluator.prompt, model="demo").for_model("demo")
    pipe = pipelines.load_pipeline("demo", pipelines.Runtime.resolve("cpu", "float32"))
    torch.manual_seed(args.seed)
    if args.train == "unet":
        params = list(pipe.unet.requires_grad_(True).parameters())
    else:
        rank, alpha = (args.rank, float(args.rank)) if args.rank else (config.lora_rank, config.lora_alpha)
        params = pipelines.add_lora(pipe.unet, rank, alpha, args.train)
    schedule = DdimSchedule.from_scheduler_config(pipe.scheduler.config, config.steps)
    embeddings = encode_prompt(pipe, config.prompt)
    shape = (pipe.unet.config.in_channels, pipe.unet.config.sample_size, pipe.unet.config.sample_size)

    def draw(n: int, seed: int):
        generator = torch.Generator().manual_seed(seed)
        trajectory = sample_trajectories(
            pipe.unet, schedule, embeddings, noise.plain_noise(n, shape, generator),
            eta=config.eta, guidance=config.guidance, generator=generator, chunk=32,
        )
        return trajectory.final_latents, decode_images(pipe.vae, trajectory.final_latents, chunk=32)

    def held_out() -> float:
        return success_rate(evaluator, draw(args.eval_images, held_out_seed(args.seed))[1])

    print(f"{args.task}: untuned held-out success {held_out():.3f}", flush=True)
    latents, images = draw(args.pool, args.seed)
    keep = torch.tensor([evaluator.is_success(image) for image in images])
    targets = latents[keep]
    print(f"pool: {int(keep.sum())} successes of {args.pool} ({float(keep.float().mean()):.3f})", flush=True)
    if len(targets) == 0:
        raise SystemExit("no success in the pool: raise --pool")

    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(args.seed + 1)
    scheduler = pipe.scheduler
    for step in range(1, args.steps + 1):
        pipe.unet.train()
        batch = targets[torch.randint(len(targets), (8,), generator=generator)]
        eps = torch.randn(batch.shape, generator=generator)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (8,), generator=generator)
        prediction = pipe.unet(scheduler.add_noise(batch, eps, t), t, encoder_hidden_states=embeddings.cond.expand(8, -1, -1)).sample
        loss = torch.nn.functional.mse_loss(prediction.float(), eps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        pipe.unet.eval()
        if step % args.eval_every == 0 or step == args.steps:
            print(f"after {step} steps: held-out success {held_out():.3f} ({time.perf_counter() - started:.0f} s)", flush=True)

