"""Which model families hero can tune, told apart before anything is downloaded, and their shipped configs.

hero tunes SD1.x and SD2.x (diffusers' ``StableDiffusionPipeline``). Everything
else (SDXL, SD3, Flux, inpainting models, ...) is refused with one line
*before* a session folder is created or a download starts: from a folder's
``model_index.json``, from a single file's tensor names (read from its header,
no weights loaded), and for a hub id from known name patterns and, where the
hub can be reached, the repository's ``model_index.json`` (a few hundred bytes).

A single-file checkpoint (original SD layout, ``.safetensors``/``.ckpt``) loads
offline with the diffusers-layout configs in this folder:

    sd15/       SD1.x (CLIP ViT-L/14 text encoder, 512 px, epsilon)
    sd2-v/      SD2.x 768 px, v-prediction (what diffusers picks for every SD2 file)
    sd2-base/   SD2.x 512 px base models, epsilon (chosen when a .yaml beside the file says so)

The CLIP tokenizer's BPE merges (``clip_merges.txt.gz``, 200 KB; the first
48,894 merges of OpenAI CLIP's ``bpe_simple_vocab_16e6``, MIT licence) ship here
too; the vocabulary is rebuilt from them exactly as CLIP builds it, so SD1.x and
SD2.x tokenize as with their hub tokenizers. This module needs neither torch
nor diffusers: the TUI calls ``check_supported`` before it creates a session.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import struct
import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path

from hero_engine.errors import HeroError

HERE = Path(__file__).parent
SUPPORTED = "hero supports Stable Diffusion 1.x and 2.x models (StableDiffusionPipeline)"
SUPPORTED_PIPELINES = ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline")
BUILT_IN = ("tiny", "demo", "auto")

# Hub ids whose names say what they are (checked as whole words of the id).
_HUB_NAME_FAMILIES = [
    (re.compile(r"(^|[/_.-])(sdxl|xl)([/_.-]|$)|stable-diffusion-xl|playground-v2", re.I), "SDXL"),
    (re.compile(r"(^|[/_.-])sd-?3(\.5)?([/_.-]|$)|stable-diffusion-3", re.I), "SD3"),
    (re.compile(r"(^|[/_.-])flux", re.I), "Flux"),
]


def family_of_pipeline_class(name: str) -> str:
    """A readable family name for a diffusers pipeline class name."""
    if "XL" in name or "Kolors" in name:
        return "SDXL"
    if "StableDiffusion3" in name:
        return "SD3"
    if "Flux" in name:
        return "Flux"
    return name


def refusal(model: str, family: str) -> HeroError:
    return HeroError(f"{model} is a {family} model; {SUPPORTED}")


# checking a model before use -----------------------------------------------------------


def check_supported(model: str, online: bool | None = None) -> None:
    """Raise HeroError (one line) when ``model`` is known not to be an SD1.x/SD2.x model.

    A model hero cannot classify (a hub id with no model_index.json in reach) passes;
    loading it says what is wrong.
    """
    if model in BUILT_IN:
        return
    path = Path(model).expanduser()
    if path.is_dir():
        check_folder(path)
    elif path.is_file():
        if path.suffix in (".safetensors", ".ckpt"):
            single_file_family(path)  # raises for a family hero does not support
    elif not model.startswith((".", "/", "~")) and not model.endswith((".safetensors", ".ckpt")):
        check_hub_id(model, online)


def check_folder(folder: Path) -> None:
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        return  # the loader says what is missing
    check_model_index(str(folder), _read_json(index_file))
    unet_config = folder / "unet" / "config.json"
    if unet_config.is_file():
        config = _read_json(unet_config)
        if config.get("addition_embed_type"):
            raise refusal(str(folder), "SDXL")
        if config.get("in_channels", 4) != 4:
            raise refusal(str(folder), f"{config.get('in_channels')}-channel (inpainting or depth)")


def check_model_index(model: str, index: dict) -> None:
    name = index.get("_class_name", "")
    if name not in SUPPORTED_PIPELINES:
        raise refusal(model, family_of_pipeline_class(name) or "non-pipeline")


def check_hub_id(model: str, online: bool | None = None) -> None:
    """Name patterns first; then the repo's model_index.json, from the cache or (if online) the hub."""
    for pattern, family in _HUB_NAME_FAMILIES:
        if pattern.search(model):
            raise refusal(model, family)
    index = fetch_model_index(model, online)
    if index is not None:
        check_model_index(model, index)


def fetch_model_index(model: str, online: bool | None = None) -> dict | None:
    """The hub repo's model_index.json (cached, or fetched when online), or None when out of reach."""
    if online is None:
        online = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("0", "", "false", "no")
    try:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(model, "model_index.json", local_files_only=not online)
        return _read_json(Path(path))
    except Exception:  # offline, no such repo, no network: the loader reports it
        return None


# single files ----------------------------------------------------------------------------


def single_file_family(path: Path) -> str:
    """'sd1' or 'sd2' for a single-file SD checkpoint; HeroError for anything else."""
    names, shapes = checkpoint_tensor_names(path)

    def has(*fragments: str) -> bool:
        return any(any(f in n for f in fragments) for n in names)

    if has("conditioner.embedders.", "edm_mean"):
        raise refusal(str(path), "SDXL")
    if has("joint_blocks."):
        raise refusal(str(path), "SD3")
    if has("double_blocks.", "single_blocks.", "double_stream_modulation"):
        raise refusal(str(path), "Flux")
    conv_in = shapes.get("model.diffusion_model.input_blocks.0.0.weight")
    if conv_in is not None and len(conv_in) == 4 and conv_in[1] != 4:
        raise refusal(str(path), f"{conv_in[1]}-channel (inpainting or instruct-pix2pix)")
    if not has("model.diffusion_model.input_blocks."):
        raise HeroError(f"{path} holds no Stable Diffusion UNet in the original single-file layout; {SUPPORTED}")
    if has("cond_stage_model.model."):
        return "sd2"
    if has("cond_stage_model.transformer."):
        return "sd1"
    raise HeroError(f"{path} has a UNet but no text encoder: hero needs a full checkpoint (UNet, VAE and text encoder)")


def config_folder(path: Path, family: str) -> Path:
    """The shipped diffusers-layout configs for a single file of ``family``.

    SD2.x files do not say whether they are 768 px v-prediction models or 512 px
    epsilon ones; like diffusers, hero takes v-prediction (SD2.x 768) unless a
    ``.yaml`` beside the checkpoint (the convention of the original repo and
    AUTOMATIC1111) has no ``parameterization: "v"``.
    """
    if family == "sd1":
        return HERE / "sd15"
    yaml = Path(path).with_suffix(".yaml")
    if yaml.is_file() and not re.search(r"parameterization:\s*[\"']?v[\"']?\s*$", yaml.read_text(errors="replace"), re.M):
        return HERE / "sd2-base"
    return HERE / "sd2-v"


def checkpoint_tensor_names(path: Path) -> tuple[list[str], dict[str, list[int]]]:
    """Tensor names (and, for .safetensors, shapes) of a checkpoint, without loading any weights."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            with open(path, "rb") as f:
                (length,) = struct.unpack("<Q", f.read(8))
                if length > 100_000_000:
                    raise ValueError("header too large")
                header = json.loads(f.read(length))
            header.pop("__metadata__", None)
            return list(header), {k: v.get("shape", []) for k, v in header.items()}
        return _pickle_names(path), {}
    except (OSError, ValueError, struct.error, zipfile.BadZipFile) as exc:
        raise HeroError(f"could not load {path}: not a readable {path.suffix} checkpoint ({exc})") from None


def _pickle_names(path: Path) -> list[str]:
    """The names in a torch .ckpt, from the raw bytes of its pickle (nothing is unpickled)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
            data = archive.read(pickles[0]) if pickles else b""
    else:  # the legacy format pickles the names before the tensor data
        with open(path, "rb") as f:
            data = f.read(64 * 2**20)
    return [m.decode("ascii", "replace") for m in re.findall(rb"[A-Za-z_]\w*(?:\.\w+)+", data)]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise HeroError(f"could not read {path} ({exc})") from None


# the CLIP tokenizer, offline ---------------------------------------------------------------


def clip_merges() -> list[str]:
    with gzip.open(HERE / "clip_merges.txt.gz", "rt", encoding="utf-8") as f:
        lines = f.read().splitlines()
    return [line for line in lines[1:] if line]


def clip_vocab(merges: list[str]) -> dict[str, int]:
    """CLIP's vocabulary as CLIP builds it: the 256 byte symbols, the same with </w>, every merge, then the two specials."""
    from hero_engine.models.clip_vocab import bytes_to_unicode

    symbols = bytes_to_unicode()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}


@lru_cache(maxsize=2)
def clip_tokenizer(pad_token: str = "<|endoftext|>"):
    """SD's CLIP tokenizer (49,408 tokens, 77 positions) from the shipped merges; SD2.x pads with '!'."""
    from transformers import CLIPTokenizer

    merges = clip_merges()
    with tempfile.TemporaryDirectory(prefix="hero-clip-") as folder:
        Path(folder, "vocab.json").write_text(json.dumps(clip_vocab(merges)), encoding="utf-8")
        Path(folder, "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
        return CLIPTokenizer(
            str(Path(folder, "vocab.json")), str(Path(folder, "merges.txt")),
            model_max_length=77, pad_token=pad_token, bos_token="<|startoftext|>",
            eos_token="<|endoftext|>", unk_token="<|endoftext|>",
        )


def tokenizer_for(folder: Path):
    config = _read_json(Path(folder) / "tokenizer" / "tokenizer_config.json")
    return clip_tokenizer(config.get("pad_token", "<|endoftext|>"))
