"""One command that checks hero on a GPU at full SD1.5 size and prints what README's Performance section needs.

    python tests/benchmarks/gpu_check.py

SD1.5's architecture with random weights (nothing is downloaded), the paper's
settings (64 images, 50 DDIM steps, 500 encoder steps, 5 trained timesteps),
two rounds through HeroSession, the loop `hero-tui run` drives: round 0, then
round 1 in which the previous best is kept (its latent comes from disk, which
must also work on a GPU). It prints the seconds of every stage,
the peak VRAM, the precision used, and the cosine between the LoRA gradient in
that precision and a float32 reference on the same GPU. Sized to fit in 10
minutes on one GPU with the model build included (on an H200: 4.5 minutes).

A GPU machine with torch but no package index: this script installs what it
misses (diffusers, peft, transformers, ... never torch) from a folder of wheels
beside it, ``tests/benchmarks/wheels`` (or ``--wheels DIR``), with pip's
``--no-index``. Prepare that folder on any machine with a package index
(``--python-version``: the GPU machine's Python; 43 wheels, 56 MB):

    pip download -d tests/benchmarks/wheels --no-deps --only-binary=:all: --python-version 3.11 \\
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \\
        -r tests/benchmarks/gpu_check_wheels.txt

then carry the repository (with that folder) to the GPU machine. ``--device cpu``
with small ``--batch``/``--steps`` settings runs the same script on a CPU (to
check the script itself, not for figures).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
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
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheels), *missing])
    importlib.invalidate_caches()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, default=HERE / "wheels", help="folder of wheels for missing packages")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default=None, help="default: bfloat16 where supported, else float16 (hero's CUDA default)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--encoder-epochs", type=int, default=None, help="default: the paper's 500")
    parser.add_argument("--train-timesteps", type=int, default=None, help="default: the paper's 5")
    parser.add_argument("--sample-batch", type=int, default=None, help="default: hero's 16")
    parser.add_argument("--train-batch", type=int, default=None, help="rows per policy pass; default: hero's 0 (from free memory)")
    parser.add_argument("--resolution", type=int, default=0, help="default: SD1.5's 512")
    args = parser.parse_args()

    ensure_packages(args.wheels)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    sys.path[:0] = [str(REPO), str(HERE)]

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("no CUDA device is visible: this check is for a GPU (a CPU run: --device cpu with small settings)")
    from bench_engine import build_sd15_architecture

    from hero_engine.config import HeroConfig
    from hero_engine.evaluators import get_evaluator
    from hero_engine.session import HeroSession

    cuda = args.device.startswith("cuda")
    gpu = torch.cuda.get_device_name() if cuda else "none"
    print(f"machine: {gpu}; torch {torch.__version__}, CUDA {torch.version.cuda}, python {sys.version.split()[0]}", flush=True)
    optional = {"encoder_epochs": args.encoder_epochs, "train_timesteps": args.train_timesteps,
                "sample_batch": args.sample_batch, "train_batch": args.train_batch}
    with tempfile.TemporaryDirectory(prefix="hero-gpu-check-") as tmp:
        started = time.perf_counter()
        model = build_sd15_architecture(Path(tmp) / "sd15")
        print(f"SD1.5 architecture, random weights, saved in {time.perf_counter() - started:.1f} s", flush=True)
        config = HeroConfig(
            prompt="a photo of a hand", model=str(model), batch_size=args.batch, steps=args.steps, resolution=args.resolution,
            **{k: v for k, v in optional.items() if v is not None},
        )
        evaluator = get_evaluator("redness")
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        with HeroSession.create(Path(tmp) / "session", config, device=args.device, dtype=args.dtype) as session:
            started = time.perf_counter()
            session.propose()
            first = time.perf_counter() - started
            scaler = session._model.learner.scaler is not None
            print(f"precision: frozen model {session.runtime.dtype}, LoRA {session._model.learner.params[0].dtype}, "
                  f"loss scaling {'on' if scaler else 'off'}; {config.batch_size} images, {config.steps} steps, "
                  f"{config.encoder_epochs} encoder steps, {config.train_timesteps} trained timesteps", flush=True)
            print(f"model load + round 0 sampling: {first:.1f} s", flush=True)
            rows = [run_round(session, evaluator, keep_previous_best=False), run_round(session, evaluator, keep_previous_best=True)]
            print(f"{'round':>5} {'kept best':>9} " + " ".join(f"{s:>14}" for s in STAGES) + f" {'learning':>9} {'whole round':>11}")
            for round_, kept, seconds in rows:
                learning = sum(seconds.get(s, 0.0) for s in ("replay", "representation", "policy", "saving"))
                print(f"{round_:>5} {'yes' if kept else 'no':>9} " + " ".join(f"{seconds.get(s, 0.0):>14.2f}" for s in STAGES)
                      + f" {learning:>9.2f} {learning + seconds.get('sampling', 0.0):>11.2f}", flush=True)
            if cuda:  # the policy update resets the peak counter to size its passes: this peak is from round 1's update on
                print(f"peak VRAM: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB allocated, "
                      f"{torch.cuda.max_memory_reserved() / 2**30:.2f} GiB reserved", flush=True)
            cosine, norms = gradient_cosine(session)
            print(f"LoRA gradient, {session.runtime.dtype} vs float32 on the same device: cosine {cosine:.5f} "
                  f"(norms {norms[0]:.4g} vs {norms[1]:.4g})", flush=True)
    whole = rows[-1][2]
    total = sum(whole.get(s, 0.0) for s in STAGES)
    print(f"targets (README): whole round <= 15 s (here {total:.1f} s), peak VRAM <= 12 GB; floor about 7 s on an H100")


STAGES = ("replay", "representation", "policy", "saving", "sampling")


def run_round(session, evaluator, keep_previous_best: bool) -> tuple[int, bool, dict[str, float]]:
    """Label the open round as the evaluator would (keeping the previous best when asked), submit, learn, sample the next."""
    from bench_engine import label_round

    label_round(session, evaluator, keep_previous_best)
    session.submit()
    report = session.update()
    return report.round, keep_previous_best, report.seconds


def gradient_cosine(session) -> tuple[float, tuple[float, float]]:
    """Cosine between the LoRA gradient in the session's precision and in float32, same inputs, same device.

    The gradient is that of the policy-gradient loss -(advantage * log p) on stored
    DDIM steps of the last sampled round (PPO's gradient at ratio 1), 4 samples x 2
    timesteps. float16 scales the loss by 2**16 first, as training does. The UNet
    is cast to float32 in place for the reference (the session is finished by then).
    """
    import torch

    from hero_engine.sampling import ddim_step_with_logprob, predict_noise

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
            eps = predict_noise(unet, x_t, t, cond, uncond, cfg.guidance)
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
