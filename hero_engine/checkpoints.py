"""A round's checkpoint: the learner's whole state in one folder, published atomically.

    checkpoints/NNNN/
      lora/pytorch_lora_weights.safetensors   the LoRA, diffusers format
      encoder.safetensors                     the feedback encoder
      optimizers.pt                           both optimizers and the loss scaler
      meta.json                               the round and every file's size

The folder is written under a temporary name and renamed into place, so a crash
leaves the previous checkpoint whole; ``verify`` catches what a crash or a full
disk can still leave behind.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file

from hero_engine import models
from hero_engine.errors import HeroError
from hero_engine.learner import Learner


def write(learner: Learner, tmp: Path, round_: int) -> None:
    """Write ``learner``'s state into the empty folder ``tmp`` (the caller publishes it)."""
    models.save_lora(learner.unet, tmp / "lora")
    save_file({k: v.detach().cpu().contiguous() for k, v in learner.encoder.state_dict().items()}, tmp / "encoder.safetensors")
    state = {"policy": learner.optimizer.state_dict(), "encoder": learner.encoder_optimizer.state_dict()}
    if learner.scaler is not None:
        state["scaler"] = learner.scaler.state_dict()
    torch.save(state, tmp / "optimizers.pt")
    files = {str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
    (tmp / "meta.json").write_text(json.dumps({"round": round_, "files": files}))


def verify(folder: Path) -> None:
    """Raise HeroError unless every file the checkpoint's meta.json lists is there at its full size."""
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise HeroError("no meta.json")
    meta = json.loads(meta_path.read_text())
    for name, size in meta["files"].items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size:
            raise HeroError(f"{name} is missing or truncated")


def load(learner: Learner, folder: Path) -> None:
    """Bring ``learner`` to the state stored in ``folder``."""
    verify(folder)
    models.load_lora(learner.unet, folder / "lora")
    learner.params = models.lora_parameters(learner.unet)
    learner.encoder.load_state_dict(read_tensors(folder / "encoder.safetensors"))
    learner.new_optimizers()
    state = torch.load(folder / "optimizers.pt", map_location=learner.device, weights_only=True)
    learner.optimizer.load_state_dict(state["policy"])
    learner.encoder_optimizer.load_state_dict(state["encoder"])
    if learner.scaler is not None and "scaler" in state:
        learner.scaler.load_state_dict(state["scaler"])


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file into memory (not memory-mapped: a file changed later cannot crash the process)."""
    return load_safetensors(Path(path).read_bytes())
