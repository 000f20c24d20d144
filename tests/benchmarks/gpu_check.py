"""One command that checks hero on a GPU at full SD1.5 size and prints what docs/performance.md needs.

    python tests/benchmarks/gpu_check.py

SD1.5's architecture with random weights (nothing is downloaded), the paper's
settings (64 images, 50 DDIM steps, 500 encoder steps, 5 trained timesteps),
two rounds through HeroSession, the loop `hero-tui run` drives: round 0, then
round 1 in which the previous best is kept (its latent comes from disk, which
must also work on a GPU). Per round it prints the seconds of every stage, the
whole round (submit to the update's return: learning plus the next batch), the
time from submit to the first new images on screen, and PPO's ratio in the
update: |ratio - 1| on its first micro-batch and the share of samples clipped.
Before each update the round's old log-probs are aligned with the update's path
(``HeroSession.align_old_log_probs``, which the worker runs while the person
labels), and the mismatch before and after and its seconds are printed. Then
the batch sizes, the precision, free and peak VRAM (the policy update resets the
peak counter to size its passes from free memory: the peak counts from there),
and the cosine between the LoRA gradient in that precision and a float32
reference on the same GPU. All of it twice: with the whole GPU, then with 12 GiB allowed (the
memory target; ``--memory-cap-gib``). One run with the model build took 4.5
minutes on an H200; the second run and the alignment are not timed there yet.

    python tests/benchmarks/gpu_check.py --sdxl

does the same for SDXL 1.0's architecture (hero's shipped ``sdxl-base`` configs,
random weights, nothing downloaded) at its 1024 px, with SDXL's memory defaults
(4 images a UNet call, gradient checkpointing in the policy update, text encoders
on the CPU once the prompt is encoded); the second run is capped at 22 GiB, the
peak a 24 GB card must hold. It also prints where the text encoders wait and the
VAE's precision. At the paper's 64 images and 50 steps a round of SDXL takes
minutes; ``--batch``/``--steps`` shorten it. ``--sdxl --model tiny-sdxl --device cpu``
checks the script on a CPU.

A GPU machine with torch but no package index: this script installs what it
misses (diffusers, peft, transformers, ... never torch) from a folder of wheels
beside it, ``tests/benchmarks/wheels`` (or ``--wheels DIR``), with pip's
``--no-index``. Prepare that folder on any machine with a package index
(``--python-version``: the GPU machine's Python; 43 wheels, 56 MB):

    pip download -d tests/benchmarks/wheels --no-deps --only-binary=:all: --python-version 3.11 \\
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \\
        -r tests/benchmarks/gpu_check_wheels.txt

then carry the repository (with that folder) to the GPU machine. pip resolves
against what the machine already has, so the folder needs only the wheels it
lacks. Beside a usual ML image's torch, transformers, peft, accelerate, requests
and zipp, that is diffusers, importlib-metadata, lazy-importer, platformdirs and
tomli-w (6.3 MB); pip's error names any other. ``--device cpu
--model tiny`` with small ``--batch``/``--steps`` settings runs the same script on
a CPU in seconds (to check the script itself, not for figures; the capped run
needs CUDA and is left out there).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import harness

GIB = 2**30
SD15 = "sd15-random"  # --model's default: SD1.5's architecture with random weights, built here
SDXL = "sdxl-random"  # --model's default with --sdxl: SDXL 1.0's architecture with random weights, built here
# The second run's GPU memory: SD1.5's target, and the peak SDXL's defaults must stay under for a 24 GB card.
MEMORY_CAP_GIB = {SD15: 12.0, SDXL: 22.0}
# import name -> distribution name; torch is the machine's own and never installed here
NEEDED = {
    "diffusers": "diffusers", "peft": "peft", "transformers": "transformers", "accelerate": "accelerate",
    "safetensors": "safetensors", "platformdirs": "platformdirs", "tomli_w": "tomli-w", "PIL": "pillow", "numpy": "numpy",
}


def ensure_packages(wheels: Path) -> None:
    """Install the packages hero's engine needs from ``wheels`` (no index) when they are missing."""
    if importlib.util.find_spec("torch") is None:
        sys.exit("torch is not installed: install the torch build for this machine's CUDA first")
    missing = [dist for module, dist in NEEDED.items() if importlib.util.find_spec(module) is None]
    if not missing:
        return
    if not wheels.is_dir() or not any(wheels.glob("*.whl")):
        sys.exit(f"missing {', '.join(missing)} and no wheels in {wheels}: prepare them as this script's docstring says")
    print(f"installing {', '.join(missing)} from {wheels} (no index)", flush=True)
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheels), *missing])
    if pip.returncode:
        sys.exit(f"pip could not install {', '.join(missing)} from {wheels} (its error above): add the wheels it names")
    importlib.invalidate_caches()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, default=harness.BENCHMARKS / "wheels", help="folder of wheels for missing packages")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default=None, help="default: bfloat16 on compute capability 8 and up, else float16 (hero's CUDA default)")
    parser.add_argument("--model", default=None, help=f"default: {SD15}, SD1.5's architecture with random weights ({SDXL} with --sdxl); "
                        "'tiny' (or 'tiny-sdxl') for a CPU check")
    parser.add_argument("--sdxl", action="store_true", help=f"check SDXL: {SDXL}, SDXL 1.0's architecture with random weights, at 1024 px")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--encoder-epochs", type=int, default=None, help="default: the paper's 500")
    parser.add_argument("--train-timesteps", type=int, default=None, help="default: the paper's 5")
    parser.add_argument("--sample-batch", type=int, default=None, help="default: hero's 16 (SDXL: 4)")
    parser.add_argument("--train-batch", type=int, default=None, help="rows per policy pass; default: hero's 0 (from free memory)")
    parser.add_argument("--resolution", type=int, default=0, help="default: the model's own, SD1.5's 512 (SDXL's 1024)")
    parser.add_argument("--memory-cap-gib", type=float, default=None,
                        help=f"GPU memory the second run may use (0: no second run); default {MEMORY_CAP_GIB[SD15]:g}, with --sdxl {MEMORY_CAP_GIB[SDXL]:g}")
    args = parser.parse_args()
    built = SDXL if args.sdxl else SD15
    args.model = args.model or built
    if args.memory_cap_gib is None:
        args.memory_cap_gib = MEMORY_CAP_GIB[built]

    ensure_packages(args.wheels)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from hero_engine.config import HeroConfig
    from hero_engine.models.pipelines import prefer_expandable_segments

    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        sys.exit("no CUDA device is visible: this check is for a GPU (a CPU run of the script: --device cpu --model tiny with small settings)")
    if cuda:
        prefer_expandable_segments()  # as a session would, before get_device_name starts CUDA
    gpu = torch.cuda.get_device_name(args.device) if cuda else "none"
    print(f"machine: {gpu}; torch {torch.__version__}, CUDA {torch.version.cuda}, python {sys.version.split()[0]}", flush=True)
    optional = {"encoder_epochs": args.encoder_epochs, "train_timesteps": args.train_timesteps,
                "sample_batch": args.sample_batch, "train_batch": args.train_batch}
    with tempfile.TemporaryDirectory(prefix="hero-gpu-check-") as tmp:
        model = args.model
        if model == SD15:
            from bench_engine import build_sd15_architecture

            started = time.perf_counter()
            model = str(build_sd15_architecture(Path(tmp) / "sd15"))
            print(f"SD1.5 architecture, random weights, saved in {time.perf_counter() - started:.1f} s", flush=True)
        elif model == SDXL:
            from bench_engine import build_sdxl_architecture

            started = time.perf_counter()
            model = str(build_sdxl_architecture(Path(tmp) / "sdxl", device=args.device))
            print(f"SDXL 1.0 architecture, random weights, saved in {time.perf_counter() - started:.1f} s", flush=True)
        config = HeroConfig(
            prompt="a photo of a hand", model=model, batch_size=args.batch, steps=args.steps, resolution=args.resolution,
            **{k: v for k, v in optional.items() if v is not None},
        )
        results = {"whole GPU" if cuda else "CPU": check_run(Path(tmp) / "whole", config, args.device, args.dtype, None)}
        if args.memory_cap_gib and cuda:
            results[f"{args.memory_cap_gib:g} GiB"] = check_run(Path(tmp) / "capped", config, args.device, args.dtype, args.memory_cap_gib)
    met = "; ".join(f"{name}: " + ("out of memory" if r is None else f"first images {r[0]:.1f} s, whole round {r[1]:.1f} s"
                                   + (f", peak {r[2]:.2f} GiB allocated" if cuda else ""))
                    for name, r in results.items())
    if args.sdxl:
        print("targets (docs/performance.md): SDXL at 64 images, 50 steps, 1024 px on one H100, submit to the first new "
              f"images <= 45 s, and peak allocated <= 22 GiB. Round 1 here: {met}", flush=True)
    else:
        print("targets (docs/performance.md): at the paper's settings on one H100 or H200, submit to the first new images "
              f"<= 15 s, whole round <= 30 s, and the same session within 12 GiB. Round 1 here: {met}", flush=True)


STAGES = ("replay", "representation", "policy", "saving", "sampling")


@dataclass(frozen=True)
class RoundFigures:
    """What one round of the check measured."""

    round: int
    kept_best: bool
    seconds: dict[str, float]  # the update's stages
    whole: float  # submit to the update's return: learning plus the next batch
    to_first_images: float  # submit to the first images of the next batch on screen
    first_ratio_error: float  # |ratio - 1| on the update's first micro-batch
    clip_fraction: float  # share of samples past the clip range, over the update
    alignment: dict[str, float] | None  # the old log-probs' mismatch before and after aligning, and its seconds
    rows_per_pass: int  # the most rows a policy pass took (sized from free memory at --train-batch 0)
    checkpointing: bool  # gradient checkpointing went on in the update


def check_run(folder: Path, config, device: str, dtype: str | None, cap_gib: float | None) -> tuple[float, float, float] | None:
    """Two rounds in a fresh session, ``cap_gib`` of GPU memory allowed (None: all of it); print their figures.

    Returns round 1's seconds to the first images and whole, and the peak GiB allocated; None when the run ran out of memory.
    """
    import torch

    from hero_engine.errors import OutOfMemory
    from hero_engine.evaluation.evaluators import get_evaluator
    from hero_engine.session.hero_session import HeroSession

    cuda = device.startswith("cuda")
    if cuda:
        gc.collect()  # the earlier run's session
        torch.cuda.empty_cache()
        free, total = torch.cuda.mem_get_info(device)
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap_gib * GIB / total) if cap_gib else 1.0, device)
        torch.cuda.reset_peak_memory_stats(device)
        allowed = f"{cap_gib:g} GiB allowed" if cap_gib else "the whole GPU"
        print(f"\n== {allowed}: {free / GIB:.2f} GiB free of {total / GIB:.2f} GiB at the start", flush=True)
    evaluator = get_evaluator("redness")
    try:
        with HeroSession.create(folder, config, device=device, dtype=dtype) as session:
            started = time.perf_counter()
            session.propose()
            first = time.perf_counter() - started
            cfg, learner = session.config, session._model.learner
            print(f"precision: frozen model {session.runtime.dtype}, LoRA {learner.params[0].dtype}, "
                  f"loss scaling {'on' if learner.scaler is not None else 'off'}; {cfg.batch_size} images, {cfg.steps} steps, "
                  f"{cfg.encoder_epochs} encoder steps, {cfg.train_timesteps} trained timesteps; "
                  f"sample_batch {cfg.sample_batch}, train_batch {cfg.train_batch}"
                  f"{' (policy passes sized from free memory)' if cfg.train_batch == 0 else ''}, policy_batch {cfg.policy_batch}", flush=True)
            pipe = session._model.pipe
            encoders = ", ".join(str(e.device) for e in (pipe.text_encoder, getattr(pipe, "text_encoder_2", None)) if e is not None)
            height, width = session._model.image_size()
            print(f"model family {session.model_family()}; {width}x{height} px; text encoders on {encoders} after "
                  f"encoding; VAE in {pipe.vae.dtype}", flush=True)
            print(f"model load + round 0 sampling: {first:.1f} s", flush=True)
            rows = [run_round(session, evaluator, keep_previous_best=False, align=True),
                    run_round(session, evaluator, keep_previous_best=True, align=True)]
            print_rounds(rows, cfg.clip_range)
            peak = torch.cuda.max_memory_allocated(device) / GIB if cuda else 0.0
            if cuda:
                print(f"peak VRAM: {peak:.2f} GiB allocated, {torch.cuda.max_memory_reserved(device) / GIB:.2f} GiB reserved; "
                      f"{torch.cuda.mem_get_info(device)[0] / GIB:.2f} GiB free at the end", flush=True)
            if not cap_gib:
                cosine, norms = gradient_cosine(session)
                print(f"LoRA gradient, {session.runtime.dtype} vs float32 on the same device: cosine {cosine:.5f} "
                      f"(norms {norms[0]:.4g} vs {norms[1]:.4g})", flush=True)
    except OutOfMemory as exc:
        print(f"{exc}", flush=True)
        return None
    return rows[-1].to_first_images, rows[-1].whole, peak


def run_round(session, evaluator, keep_previous_best: bool, align: bool) -> RoundFigures:
    """Label the open round as the evaluator would (keeping the previous best when asked), submit, learn, sample the next.

    With ``align``, the old log-probs are first aligned with the update's path, as the worker does while the person labels.
    """
    from bench_engine import label_round

    alignment = None
    if align:
        started = time.perf_counter()
        alignment = session.align_old_log_probs()
        if alignment is not None:
            alignment = {**alignment, "seconds": time.perf_counter() - started}
    label_round(session, evaluator, keep_previous_best)
    first_images: list[float] = []

    def on_images(round_, images, total) -> None:
        if not first_images:
            first_images.append(time.perf_counter())

    started = time.perf_counter()
    session.submit()
    report = session.update(on_images=on_images)
    ended = time.perf_counter()
    return RoundFigures(
        report.round, keep_previous_best, report.seconds, ended - started, (first_images or [ended])[0] - started,
        report.metrics["policy_first_ratio_error"], report.metrics["policy_clip_fraction"], alignment,
        int(report.metrics["policy_rows_per_pass"]), bool(report.metrics["policy_checkpointing"]),
    )


def print_rounds(rows: list[RoundFigures], clip_range: float) -> None:
    print(f"{'round':>5} {'kept best':>9} " + " ".join(f"{s:>14}" for s in STAGES)
          + f" {'whole round':>11} {'first images':>12} {'ratio error':>11} {'clipped':>7}")
    for row in rows:
        print(f"{row.round:>5} {'yes' if row.kept_best else 'no':>9} " + " ".join(f"{row.seconds.get(s, 0.0):>14.2f}" for s in STAGES)
              + f" {row.whole:>11.2f} {row.to_first_images:>12.2f} {row.first_ratio_error:>11.2e} {row.clip_fraction:>7.1%}", flush=True)
    print(f"(first images: submit to the first chunk of the next round stored; ratio error: |ratio - 1| on the "
          f"update's first micro-batch, against the clip range {clip_range:g}; clipped: samples past it, over the update)")
    for row in rows:
        if row.alignment is None:
            continue
        a = row.alignment
        what = f"recomputed through the update's path, now {a['old_log_prob_error_after']:.2e}" if a["old_log_prob_recomputed"] else "kept"
        print(f"round {row.round}: stored old log-probs off the update's path by {a['old_log_prob_error']:.2e} (max |difference|); "
              f"{what}; {a['seconds']:.1f} s", flush=True)
    for row in rows:
        print(f"round {row.round}: policy passes of up to {row.rows_per_pass} rows (trajectory x timestep), "
              f"gradient checkpointing {'on' if row.checkpointing else 'off'}", flush=True)


def gradient_cosine(session) -> tuple[float, tuple[float, float]]:
    """Cosine between the LoRA gradient in the session's precision and in float32, same inputs, same device.

    The gradient is that of the policy-gradient loss -(advantage * log p) on stored
    DDIM steps of the last sampled round (PPO's gradient at ratio 1), 4 samples x 2
    timesteps. float16 scales the loss by 2**16 first, as training does. The UNet
    is cast to float32 in place for the reference (the session is finished by then).
    """
    import torch

    from hero_engine.algorithm.sampling import ddim_step_with_logprob, predict_noise

    learner, trajectory = session._model.learner, session._sampler.trajectory[1]
    unet, params, cfg = learner.unet, learner.params, session.config
    device = unet.device
    n = min(4, trajectory.latents.shape[0])
    advantages = torch.tensor([1.0, -1.0] * (n // 2) + [1.0] * (n % 2), device=device)
    step_indices = [0, trajectory.log_probs.shape[1] // 2]

    def gradient(scale: float) -> torch.Tensor:
        for p in params:
            p.grad = None
        cond, uncond = session._model.embeddings.expand(n)
        unet.train()
        for index in step_indices:
            x_t = trajectory.latents[:n, index].to(device)
            x_prev = trajectory.latents[:n, index + 1].to(device)
            t = trajectory.timesteps[[index] * n].to(device)
            eps = predict_noise(unet, x_t, t, cond, uncond, cfg.guidance, session._model.embeddings.added_conditioning(n))
            _, log_prob = ddim_step_with_logprob(session._model.schedule, eps, t, x_t, cfg.eta, prev_sample=x_prev)
            (-(advantages * log_prob).mean() * scale / len(step_indices)).backward()
        unet.eval()
        return torch.cat([p.grad.float().flatten() / scale for p in params])

    low = gradient(2.0**16 if unet.dtype == torch.float16 else 1.0)
    unet.to(torch.float32)
    reference = gradient(1.0)
    cosine = torch.nn.functional.cosine_similarity(low.double(), reference.double(), dim=0)
    return float(cosine), (float(low.norm()), float(reference.norm()))


if __name__ == "__main__":
    main()
