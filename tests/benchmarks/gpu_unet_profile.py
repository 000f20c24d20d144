"""Where a GPU round's time goes: SD1.5's UNet alone, forward and forward+backward, with and without hero's LoRA.

    python tests/benchmarks/gpu_unet_profile.py

SD1.5's UNet with random weights in bfloat16 on the GPU (nothing is downloaded).
Prints milliseconds per call and TFLOP/s (at about 0.68 TFLOP per 512-pixel
forward) for: the plain UNet at sampling batches of 32 and 64 (16 and 32 images
with classifier-free guidance); the same with hero's float32 LoRA on the
attention projections; forward+backward through the LoRA at policy batches of
4, 16 and 32 (2, 8 and 16 trajectories), with peak memory, and at 16 with
gradient checkpointing; the LoRA cast to bfloat16; channels-last; and
torch.compile. Needs diffusers and peft (gpu_check.py's wheels).
"""

from __future__ import annotations

import argparse
import sys
import time

import harness  # noqa: F401  (puts the checkout on sys.path, where hero may not be installed)
import torch
from diffusers import UNet2DConditionModel
from peft import LoraConfig

from hero_engine.models.pipelines import LORA_TARGETS

DEVICE = "cuda"
FLOP_PER_SAMPLE = 0.68e12


def build_unet() -> torch.nn.Module:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8,
                                block_out_channels=(320, 640, 1280, 1280), layers_per_block=2)
    return unet.to(DEVICE, torch.bfloat16).eval()


def seconds_per_call(fn, repeats: int = 5) -> float:
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - started) / repeats


def inputs(batch: int, channels_last: bool = False):
    x = torch.randn(batch, 4, 64, 64, device=DEVICE, dtype=torch.bfloat16)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    t = torch.full((batch,), 500, device=DEVICE)
    context = torch.randn(batch, 77, 768, device=DEVICE, dtype=torch.bfloat16)
    return x, t, context


def forward(unet, batch: int, label: str = "", channels_last: bool = False) -> None:
    x, t, context = inputs(batch, channels_last)
    with torch.no_grad():
        s = seconds_per_call(lambda: unet(x, t, encoder_hidden_states=context).sample)
    print(f"forward, batch {batch:3d}{label}: {s * 1000:7.1f} ms  {batch * FLOP_PER_SAMPLE / s / 1e12:5.0f} TFLOP/s", flush=True)


def forward_backward(unet, batch: int) -> None:
    x, t, context = inputs(batch)
    torch.cuda.reset_peak_memory_stats()

    def step():
        unet(x, t, encoder_hidden_states=context).sample.float().square().mean().backward()

    s = seconds_per_call(step, 3)
    print(f"forward+backward, batch {batch:3d}: {s * 1000:7.1f} ms, {s / batch * 1000:5.1f} ms a sample, "
          f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB", flush=True)


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    if not torch.cuda.is_available():  # checked after the options, so that --help works on any machine
        sys.exit("no CUDA device is visible: this profile is for a GPU")
    torch.backends.cuda.matmul.allow_tf32 = True
    unet = build_unet()
    print(f"{torch.cuda.get_device_name()}; torch {torch.__version__}; attention "
          f"{type(next(iter(unet.attn_processors.values()))).__name__}", flush=True)
    forward(unet, 32)
    forward(unet, 64)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=LORA_TARGETS))
    params = [p for n, p in unet.named_parameters() if "lora_" in n]
    for p in params:
        p.data = p.data.float()
    print("with hero's float32 LoRA:")
    forward(unet, 32)
    forward(unet, 64)
    for p in params:
        p.requires_grad_(True)
    unet.train()
    for batch in (4, 16, 32):
        forward_backward(unet, batch)
    unet.enable_gradient_checkpointing()
    print("with gradient checkpointing:")
    forward_backward(unet, 16)
    unet.disable_gradient_checkpointing()
    unet.eval()
    for p in params:
        p.data = p.data.to(torch.bfloat16)
    print("with the LoRA in bfloat16:")
    forward(unet, 32)
    forward(unet.to(memory_format=torch.channels_last), 32, " channels-last", channels_last=True)
    for p in params:
        p.data = p.data.float()
    started = time.perf_counter()
    forward(torch.compile(unet.to(memory_format=torch.contiguous_format)), 32, " torch.compile, float32 LoRA")
    print(f"compiling and the timed calls: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
