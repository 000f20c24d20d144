"""A round's checkpoint: the learner's whole state in one folder, published atomically.

    checkpoints/NNNN/
      lora/pytorch_lora_weights.safetensors   the LoRA, diffusers format
      encoder.safetensors                     the feedback encoder
      optimizers.pt                           both optimizers and the loss scaler
      meta.json                               the round, and every file's size and sha256

The folder is written under a temporary name and renamed into place, so a crash
leaves the previous checkpoint whole; ``verify`` checks every file against the
size and sha256 written with it, so damage of any kind (a truncated file, bytes
overwritten in place) is found before the file is used. A write that fails (a
full disk) removes its temporary folder and raises HeroError.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file

from hero_engine.algorithm.learner import Learner
from hero_engine.errors import HeroError
from hero_engine.models import pipelines
from hero_engine.storage.integrity import check_file, file_entries, write_failure

META_FILE = "meta.json"
LORA_FILE = f"lora/{pipelines.LORA_WEIGHT_NAME}"


def write(learner: Learner, tmp: Path, round_: int) -> None:
    """Write ``learner``'s state into the empty folder ``tmp`` (the caller publishes it).

    On failure ``tmp`` is removed and HeroError says why (out-of-memory errors pass through as they are).
    """
    try:
        pipelines.save_lora(learner.unet, tmp / "lora")
        save_file({k: v.detach().cpu().contiguous() for k, v in learner.encoder.state_dict().items()}, tmp / "encoder.safetensors")
        state = {"policy": learner.optimizer.state_dict(), "encoder": learner.encoder_optimizer.state_dict()}
        if learner.scaler is not None:
            state["scaler"] = learner.scaler.state_dict()
        torch.save(state, tmp / "optimizers.pt")
        (tmp / META_FILE).write_text(json.dumps({"round": round_, "files": file_entries(tmp)}), encoding="utf-8")
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc) or not isinstance(exc, Exception):
            raise
        raise HeroError(
            f"could not save checkpoint {round_:04d} ({write_failure(exc)}); the session is intact: "
            "free some space and continue, the round is learned again"
        ) from None


def verify(folder: Path) -> None:
    """Raise HeroError unless every file the checkpoint's meta.json lists is there, whole and unchanged."""
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise HeroError(f"no {META_FILE}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        files = meta["files"]
        if not isinstance(files, dict) or not files:
            raise ValueError("no file list")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HeroError(f"{META_FILE} is damaged ({exc})") from None
    for name, entry in files.items():
        check_file(folder, name, entry)


def load(learner: Learner, folder: Path) -> None:
    """Bring ``learner`` to the state stored in ``folder``; HeroError when a file is missing or damaged."""
    verify(folder)
    try:
        pipelines.load_lora(learner.unet, folder / "lora")
        learner.params = pipelines.lora_parameters(learner.unet)
        learner.encoder.load_state_dict(read_tensors(folder / "encoder.safetensors"))
        learner.new_optimizers()
        state = torch.load(folder / "optimizers.pt", map_location=learner.device, weights_only=True)
        learner.optimizer.load_state_dict(state["policy"])
        learner.encoder_optimizer.load_state_dict(state["encoder"])
        if learner.scaler is not None and "scaler" in state:
            learner.scaler.load_state_dict(state["scaler"])
    except (HeroError, OSError, RuntimeError, ValueError, KeyError):
        raise
    except Exception as exc:  # safetensors and pickle raise their own types on data they cannot read
        raise HeroError(f"{type(exc).__name__}: {str(exc)[:160]}") from None


def read_lora(folder: Path) -> bytes:
    """The checkpoint's LoRA file, checked against its checksum and for finite weights: what export writes."""
    verify(folder)
    data = (folder / LORA_FILE).read_bytes()
    try:
        tensors = load_safetensors(data)
    except Exception as exc:  # safetensors' own error type
        raise HeroError(f"the LoRA of {folder.name} cannot be read ({str(exc)[:160]})") from None
    bad = [name for name, tensor in tensors.items() if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
    if bad:
        raise HeroError(
            f"the LoRA after round {int(folder.name)} has non-finite weights (NaN or infinity in {len(bad)} of {len(tensors)} tensors, "
            f"e.g. {bad[0]}); not exported: the training diverged, start a session with a lower --lr"
        )
    return data


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file into memory (not memory-mapped: a file changed later cannot crash the process)."""
    return load_safetensors(Path(path).read_bytes())
