"""Which weight files of a hub model a session loads: the half-precision ones where the model runs in half precision.

SD repositories on the hub mostly hold each part's weights twice: the default files (float32 for the official ones)
and an ``fp16`` variant of half the size (SD1.5: about 4 GB against 2; SDXL: about 14 GB against 7). A GPU runs the
frozen model in bfloat16 or float16, where the float32 files buy nothing but a first start twice as long.

A session keeps the variant it started with (``SessionStore.record_weights_variant``): fp16-rounded weights cast to
bfloat16 can differ in the last bit from float32 ones cast to bfloat16, and a resumed session must go on from the
base weights its rounds were drawn with. Torch-free.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT = "default"  # the repository's default weight files
HALF = "fp16"  # diffusers' name for the half-precision variant
VARIANTS = (DEFAULT, HALF)
_UNET_FILES = {DEFAULT: "unet/diffusion_pytorch_model.safetensors", HALF: "unet/diffusion_pytorch_model.fp16.safetensors"}
_CACHED_UNET_FILES = (*_UNET_FILES.values(), "unet/diffusion_pytorch_model.bin", "unet/diffusion_pytorch_model.fp16.bin",
                      "unet/diffusion_pytorch_model.safetensors.index.json",
                      "unet/diffusion_pytorch_model.safetensors.index.fp16.json")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def choose(model: str, half_precision: bool) -> str:
    """The variant a new session of ``model`` loads.

    HALF for a hub model run in half precision whose repository has it, unless its default files are cached already
    (nothing to download either way), and for a local folder that holds only the fp16 files (as ``save_pretrained``
    with ``variant="fp16"`` writes it); DEFAULT for anything else: float32 runs of hub models, other folders, single
    files, built-in models, a repository without the variant, a hub out of reach (the loading then says what is wrong).
    """
    folder = Path(model).expanduser()
    if folder.is_dir():
        return HALF if _only_half_files(folder) else DEFAULT
    if not half_precision or not is_hub_id(model):
        return DEFAULT
    if unet_cached(model, DEFAULT):
        return DEFAULT
    if unet_cached(model, HALF):
        return HALF
    if _offline():
        return DEFAULT
    return HALF if _on_hub(model, _UNET_FILES[HALF]) else DEFAULT


def in_cache(model: str) -> bool:
    """Whether a hub model's UNet weights, in a layout diffusers loads, are in the Hugging Face cache: its configs
    alone are not the model (the loading fetches them first, so a download stopped part-way leaves them)."""
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(model, name), str) for name in _CACHED_UNET_FILES)


def for_diffusers(variant: str) -> str | None:
    """``from_pretrained``'s ``variant`` argument for a recorded variant."""
    return None if variant == DEFAULT else variant


def is_hub_id(model: str) -> bool:
    """An owner/name that is no file or folder here (built-in names have no owner)."""
    return bool(_HUB_ID.fullmatch(model)) and ".." not in model and not Path(model).expanduser().exists()


def _only_half_files(folder: Path) -> bool:
    """The folder's UNet has fp16 weights and no default ones (single or sharded, safetensors or pickled)."""
    unet = folder / "unet"
    default = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
               "diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.bin.index.json")
    return not any((unet / name).is_file() for name in default) and any(unet.glob(f"diffusion_pytorch_model*.{HALF}.*"))


def unet_cached(model: str, variant: str) -> bool:
    """Whether the hub model's UNet weights of ``variant`` (its largest file) are in the Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(model, _UNET_FILES[variant]), str)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "", "false", "no", "off")


def _on_hub(model: str, filename: str) -> bool:
    from huggingface_hub import file_exists

    try:
        return file_exists(model, filename)
    except Exception as exc:  # gated, no network: the default files are asked for, and their loading says why it fails
        log.info("could not tell whether %s has %s (%s): loading its default files", model, filename, exc)
        return False
