"""Helpers shared by the engine tests: labeled rounds and a tiny policy with stored trajectories."""

import torch

from hero_engine.algorithm.sampling import (
    DdimSchedule,
    encode_prompt,
    sample_trajectories,
)
from hero_engine.evaluation.evaluators import get_evaluator, label_batch
from hero_engine.models.pipelines import add_lora, build_tiny_pipeline


def safetensors_metadata(path) -> dict[str, str]:
    """The metadata header of a .safetensors file, read as a LoRA loader reads it."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def run_rounds(session, n, evaluator="redness"):
    """``n`` rounds labeled by a simulated evaluator: label, submit, update. Returns the round reports."""
    judge = get_evaluator(evaluator)
    reports = []
    for _ in range(n):
        label_batch(session, judge)
        session.submit()
        reports.append(session.update())
    return reports


def tiny_policy(n: int, lora_spread: float, dtype: torch.dtype = torch.float32, steps: int = 4):
    """A tiny pipeline with a LoRA moved away from zero (so both factors get gradients), its DDIM
    schedule and prompt embeddings, and ``n`` sampled trajectories on 8x8 latents."""
    pipe = build_tiny_pipeline(dtype)
    torch.manual_seed(0)
    params = add_lora(pipe.unet, 4, 4.0)
    with torch.no_grad():
        for p in params:
            p.add_(lora_spread * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    schedule = DdimSchedule.from_scheduler_config(pipe.scheduler.config, steps)
    embeddings = encode_prompt(pipe, "a hand")
    noise = torch.randn(n, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    trajectory = sample_trajectories(
        pipe.unet, schedule, embeddings, noise, eta=1.0, guidance=5.0, generator=torch.Generator().manual_seed(2), chunk=n
    )
    return pipe, params, schedule, embeddings, trajectory


def tuned_exports(folder, model: str, targets: str, rank: int, alpha: float, unet_output) -> dict:
    """A ``model`` session after one labeled round (LoRA ``rank`` and ``alpha``, on ``targets``), both exports, and
    ``unet_output`` of its tuned UNet: what the export tests load back and compare."""
    from hero_engine.config import HeroConfig
    from hero_engine.session.hero_session import HeroSession

    config = HeroConfig(prompt="a red hand", model=model, batch_size=6, steps=6, train_timesteps=3, encoder_epochs=8,
                        encoder_triplets=8, sample_batch=6, lora_rank=rank, lora_alpha=alpha, lr=5e-2,
                        lora_targets=targets)
    with HeroSession.create(folder / "s", config) as session:
        label_batch(session, get_evaluator("redness"))
        session.submit()
        session.update(sample_next=False)
        files = session.export_files(folder / "out" / "hand.safetensors")
        output = unet_output(session._model.pipe.unet)
    return {"diffusers": files[0], "kohya": files[1], "output": output, "session": folder / "s", "targets": targets}
