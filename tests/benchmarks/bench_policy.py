"""Seconds of the policy update alone, per ``--train-batch``, on the demo model.

    OMP_NUM_THREADS=1 python tests/benchmarks/bench_policy.py                  # demo model, its own round
    OMP_NUM_THREADS=1 python tests/benchmarks/bench_policy.py --train-batch 2 8 0

One round is sampled once (the demo's defaults: 16 images, 20 steps, 10 trained
timesteps, LoRA on all layers, one PPO epoch); then the update runs from the same
LoRA and optimizer state for each ``--train-batch``, ``--repeats`` times, and the
median seconds are printed with the update's statistics (equal across the
settings up to float rounding: the pass size changes speed alone).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time

import harness  # noqa: F401  (before hero_engine: sets the environment it loads in)
import torch

from hero_engine.algorithm.learner import policy_settings
from hero_engine.algorithm.policy import policy_update
from hero_engine.algorithm.sampling import (
    DdimSchedule,
    encode_prompt,
    sample_trajectories,
)
from hero_engine.config import HeroConfig
from hero_engine.models import pipelines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-batch", type=int, nargs="+", default=[2, 8, 0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    runtime = pipelines.Runtime.resolve(args.device)
    config = HeroConfig(prompt="three circles", model="demo").for_model("demo")
    pipe = pipelines.load_pipeline("demo", runtime)
    torch.manual_seed(0)
    params = pipelines.add_lora(pipe.unet, config.lora_rank, config.lora_alpha, config.lora_targets)
    schedule = DdimSchedule.from_scheduler_config(pipe.scheduler.config, config.steps)
    embeddings = encode_prompt(pipe, config.prompt)
    side = pipe.unet.config.sample_size
    noise = torch.randn(config.batch_size, pipe.unet.config.in_channels, side, side, generator=torch.Generator().manual_seed(1))
    trajectory = sample_trajectories(pipe.unet, schedule, embeddings, noise, eta=config.eta, guidance=config.guidance,
                                     generator=torch.Generator().manual_seed(2), chunk=config.sample_batch)
    advantages = torch.linspace(-1, 1, config.batch_size, device=runtime.device)
    start = [p.detach().clone() for p in params]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    optimizer_start = copy.deepcopy(optimizer.state_dict())
    print(f"demo model on {runtime.device} ({runtime.dtype}), {config.batch_size} images, {config.steps} steps, "
          f"{config.train_timesteps} trained timesteps, policy batch {config.policy_batch}, {config.ppo_epochs} epoch(s)")
    for train_batch in args.train_batch:
        settings = policy_settings(config.replace(train_batch=train_batch))
        seconds = []
        for _ in range(args.repeats):
            with torch.no_grad():
                for p, s in zip(params, start):
                    p.copy_(s)
            optimizer.load_state_dict(optimizer_start)
            if runtime.device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            stats = policy_update(pipe.unet, params, optimizer, schedule, embeddings, trajectory, advantages, settings,
                                  torch.Generator().manual_seed(3))
            if runtime.device.type == "cuda":
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - started)
        print(f"train_batch {train_batch:>3}: policy update {statistics.median(seconds):6.2f} s (median of {args.repeats}); "
              f"loss {stats.loss:+.6f}, approx_kl {stats.approx_kl:.3e}, clip fraction {stats.clip_fraction:.3f}", flush=True)
    print(f"machine: {os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"python {sys.version.split()[0]}" + (f", {torch.cuda.get_device_name()}" if runtime.device.type == "cuda" else ""))


if __name__ == "__main__":
    main()
