"""Export the tuned LoRA for the front ends people use: diffusers, and kohya's layout for ComfyUI and AUTOMATIC1111.

    diffusers   keys ``unet.<module>.lora.down/up.weight`` (``lora_A/lora_B`` when the LoRA
                covers convolutions too: the demo model's); the LoRA's rank and alpha in
                diffusers' own ``lora_adapter_metadata``, so ``load_lora_weights`` applies
                the trained scale (alpha / rank) whatever alpha was
    kohya       keys ``lora_unet_<module with _>.lora_down/lora_up.weight`` and one
                ``.alpha`` per layer: the layout ComfyUI, AUTOMATIC1111/Forge, SD.Next and
                InvokeAI load (and diffusers' ``load_lora_weights`` too)
    both        (the default) the diffusers file, and the kohya file beside it with
                ``.kohya`` before ``.safetensors``

An SDXL LoRA has the same two layouts over SDXL's UNet: diffusers'
``StableDiffusionXLPipeline.load_lora_weights`` reads the first; ComfyUI and
AUTOMATIC1111/Forge map the kohya names by their SDXL rules (diffusers block names
under ``lora_unet_``, which both translate to SDXL's own block numbering). Its
metadata names the base model SDXL (``ss_base_model_version`` = ``sdxl_base_v1-0``,
which AUTOMATIC1111 reads to list the LoRA for SDXL checkpoints only).

Both are made with diffusers' own converters (``convert_unet_state_dict_to_peft``,
``convert_state_dict_to_kohya``, ``save_lora_weights``), never a hand-written key
map; the kohya converter writes alpha = rank, so each ``.alpha`` is then set to
the session's alpha. Every file's safetensors metadata says the rank, alpha,
base model, prompt and round (``hero.*``, and kohya's ``ss_*`` names that the
front ends show).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from hero_engine.errors import HeroError
from hero_engine.models import pipelines

FORMATS = ("both", "diffusers", "kohya")
DEFAULT_FORMAT = "both"


@dataclass(frozen=True)
class LoraInfo:
    """What the exported file says about itself."""

    rank: int
    alpha: float
    base_model: str
    prompt: str
    round: int
    targets: str = "attention"  # config.LORA_TARGET_KINDS
    family: str = ""  # model_configs.FAMILIES; empty where the session has not recorded it

    def metadata(self, fmt: str, version: str = "unknown") -> dict[str, str]:
        return {
            "hero.format": fmt,
            "hero.model_family": self.family or "unknown",
            "hero.rank": str(self.rank),
            "hero.alpha": _number(self.alpha),
            "hero.base_model": self.base_model,
            "hero.prompt": self.prompt,
            "hero.round": str(self.round),
            # kohya's training-metadata names, which AUTOMATIC1111 and ComfyUI's managers display
            "ss_network_module": "networks.lora",
            "ss_network_dim": str(self.rank),
            "ss_network_alpha": _number(self.alpha),
            "ss_sd_model_name": self.base_model,
            "ss_base_model_version": version,
            "ss_training_comment": f"HERO, prompt: {self.prompt}, after round {self.round}",
        }


def export_paths(target: Path, fmt: str) -> dict[str, Path]:
    """Where each format's file goes: ``target`` is a .safetensors file or a folder."""
    if fmt not in FORMATS:
        raise HeroError(f"unknown export format '{fmt}': choose one of {', '.join(FORMATS)}")
    target = Path(target)
    if target.suffix == ".safetensors":
        diffusers_file = target
        kohya_file = target if fmt == "kohya" else target.with_name(target.name[: -len(".safetensors")] + ".kohya.safetensors")
    else:
        diffusers_file = target / pipelines.LORA_WEIGHT_NAME
        kohya_file = target / (Path(pipelines.LORA_WEIGHT_NAME).stem + ".kohya.safetensors")
    paths = {"diffusers": diffusers_file, "kohya": kohya_file}
    return paths if fmt == "both" else {fmt: paths[fmt]}


def export_lora(source: Path, target: Path, fmt: str, info: LoraInfo) -> list[Path]:
    """Write the LoRA saved at ``source`` (a checkpoint's diffusers-format file) in ``fmt``; return the files."""
    paths = export_paths(target, fmt)
    peft_state = pipelines.read_lora_file(source)
    version = base_model_version(peft_state, info.family)
    written = []
    for kind, path in paths.items():
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if kind == "diffusers":
                write_diffusers(peft_state, info, tmp, version)
            else:
                _save(kohya_state_dict(peft_state, info.alpha), tmp, info.metadata("kohya", version))
            tmp.chmod(0o666 & ~_umask())  # safetensors writes 0600; an export is for other programs and people to read
            tmp.replace(path)
        except Exception as exc:  # OSError, or safetensors' own error type for a failed write
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else _first_line(exc)
            raise HeroError(f"cannot write the LoRA to {path}: {reason}") from None
        written.append(path)
    return written


def write_diffusers(peft_state: dict[str, torch.Tensor], info: LoraInfo, path: Path, version: str = "unknown") -> None:
    """diffusers' ``save_lora_weights`` with the adapter's rank and alpha, plus hero's metadata."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from safetensors import safe_open

    state = {k: v.float().contiguous() for k, v in peft_state.items()}
    layers = convert_state_dict_to_diffusers(state)
    if any(".lora_A." in k or ".lora_B." in k for k in layers):
        # the converter renames attention layers only: a LoRA on convolutions too stays in peft's names throughout,
        # since diffusers reads a file in one naming or the other, never a mix
        layers = state
    adapter = {"r": info.rank, "lora_alpha": info.alpha, "target_modules": list(pipelines.LORA_TARGET_MODULES[info.targets])}
    with tempfile.TemporaryDirectory(prefix="hero-export-") as folder:
        StableDiffusionPipeline.save_lora_weights(
            folder, unet_lora_layers=layers, weight_name="lora.safetensors", unet_lora_adapter_metadata=adapter
        )
        written = Path(folder) / "lora.safetensors"
        with safe_open(str(written), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    _save(tensors, path, {**metadata, **info.metadata("diffusers", version)})


def kohya_state_dict(peft_state: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """The LoRA in kohya's layout (ComfyUI, AUTOMATIC1111), with every layer's ``.alpha`` set to ``alpha``.

    ``peft_state`` has peft's UNet keys (``<module>.lora_A.weight``), as
    ``get_peft_model_state_dict(unet)`` gives them.
    """
    from diffusers.utils import convert_state_dict_to_kohya

    kohya = convert_state_dict_to_kohya({f"unet.{k}": v for k, v in peft_state.items()})
    for key in kohya:
        if key.endswith(".alpha"):  # the converter writes alpha = rank
            kohya[key] = torch.tensor(float(alpha), dtype=torch.float32)
    return kohya


def _save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)


def _umask() -> int:
    mask = os.umask(0o022)  # read by setting it: put back at once
    os.umask(mask)
    return mask


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


KOHYA_VERSIONS = {"SD1.x": "sd_v1", "SD2.x": "sd_v2", "SDXL": "sdxl_base_v1-0"}  # ss_base_model_version of each family


def base_model_version(peft_state: dict[str, torch.Tensor], family: str = "") -> str:
    """kohya's name for the base family: the session's ``family`` where known, else read from the text width
    the cross-attention keys take (768 SD1, 1024 SD2, 2048 SDXL)."""
    if family in KOHYA_VERSIONS:
        return KOHYA_VERSIONS[family]
    widths = {int(v.shape[1]) for k, v in peft_state.items() if ".attn2.to_k.lora_A" in k}
    return {768: "sd_v1", 1024: "sd_v2", 2048: "sdxl_base_v1-0"}.get(widths.pop() if len(widths) == 1 else 0, "unknown")

