"""Which model families hero can tune, told apart before anything is downloaded, and their shipped configs.

hero tunes SD1.x and SD2.x (diffusers' ``StableDiffusionPipeline``) and SDXL base
models (``StableDiffusionXLPipeline``). Everything else (SDXL refiners, SD3, Flux,
inpainting models, ...) is refused with one line
*before* a session folder is created or a download starts: from a folder's
``model_index.json``, from a single file's tensor names (read from its header,
no weights loaded), and for a hub id from known name patterns and, where the
hub can be reached, the repository's ``model_index.json`` (a few hundred bytes).

A single-file checkpoint (original SD layout, ``.safetensors``/``.ckpt``) loads
offline with the diffusers-layout configs in this folder:

    sd15/       SD1.x (CLIP ViT-L/14 text encoder, 512 px, epsilon)
    sd2-v/      SD2.x 768 px, v-prediction (what diffusers picks for every SD2 file)
    sd2-base/   SD2.x 512 px base models, epsilon (chosen when a .yaml beside the file says so)
    sdxl-base/  SDXL 1.0 base architecture (CLIP ViT-L and OpenCLIP bigG text encoders, 1024 px, epsilon)

The CLIP tokenizer's BPE merges (``clip_merges.txt.gz``, 200 KB; the first
48,894 merges of OpenAI CLIP's ``bpe_simple_vocab_16e6``, MIT licence) ship here
too; the vocabulary is rebuilt from them exactly as CLIP builds it, so SD1.x and
SD2.x tokenize as with their hub tokenizers; SDXL's two tokenizers are the same
vocabulary, the second padding with '!' as SD2.x does. This module needs neither torch
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
SUPPORTED = "hero supports Stable Diffusion 1.x and 2.x, and SDXL base models (StableDiffusionPipeline, StableDiffusionXLPipeline)"
SD_PIPELINES = ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline")
SDXL_PIPELINES = ("StableDiffusionXLPipeline",)
SUPPORTED_PIPELINES = SD_PIPELINES + SDXL_PIPELINES
BUILT_IN = ("tiny", "tiny-sdxl", "demo", "auto")
FAMILIES = ("SD1.x", "SD2.x", "SDXL")  # what a supported model is, as doctor, the status line and the session say it

# Hub ids whose names say what they are (checked as whole words of the id); refused before anything downloads.
_HUB_NAME_FAMILIES = [
    (re.compile(r"(^|[/_.-])(sdxl|xl|stable-diffusion-xl)[\w.-]*refiner", re.I), "SDXL refiner"),
    (re.compile(r"playground-v2\.5", re.I), "Playground v2.5 (EDM)"),
    (re.compile(r"(^|[/_.-])sd-?3(\.5)?([/_.-]|$)|stable-diffusion-3", re.I), "SD3"),
    (re.compile(r"(^|[/_.-])flux", re.I), "Flux"),
]


# Hub ids whose names say they are SDXL models, where no model_index.json is in reach to say so.
_HUB_NAME_SDXL = re.compile(r"(^|[/_.-])(sdxl|xl)([/_.-]|$)|stable-diffusion-xl", re.I)


def family_of_pipeline_class(name: str) -> str:
    """A readable family name for a diffusers pipeline class name."""
    if name == "StableDiffusionXLImg2ImgPipeline":
        return "SDXL refiner"
    if name == "StableDiffusionXLInpaintPipeline":
        return "SDXL inpainting"
    if "Kolors" in name:
        return "Kolors"
    if "XL" in name:
        return f"SDXL-based ({name})"
    if "StableDiffusion3" in name:
        return "SD3"
    if "Flux" in name:
        return "Flux"
    return name


def refusal(model: str, family: str) -> HeroError:
    return HeroError(f"{model} is a {family} model; {SUPPORTED}")


# checking a model before use -----------------------------------------------------------


def check_supported(model: str, online: bool | None = None) -> None:
    """Raise HeroError (one line) when ``model`` is known not to be an SD1.x, SD2.x or SDXL base model.

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
        if config.get("addition_embed_type") not in (None, "text_time"):
            raise refusal(str(folder), f"{config.get('addition_embed_type')}-conditioned")
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


def model_family(model: str, online: bool | None = None) -> str | None:
    """What a supported ``model`` is (one of FAMILIES), told without loading it; None where it cannot be told.

    A folder says it in its model_index.json and text encoder config, a single file in its
    tensor names, a hub id in its model_index.json (cached, or fetched when ``online``) or its name.
    A model hero refuses raises HeroError (``check_supported``).
    """
    check_supported(model, online)
    if model in BUILT_IN:
        return {"tiny-sdxl": "SDXL", "auto": None}.get(model, "SD1.x")
    path = Path(model).expanduser()
    if path.is_file():
        return {"sd1": "SD1.x", "sd2": "SD2.x", "sdxl": "SDXL"}[single_file_family(path)]
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            return None
        index = _read_json(path / "model_index.json")
        encoder = path / "text_encoder" / "config.json"
        width = _read_json(encoder).get("hidden_size") if encoder.is_file() else None
        return _family_of_index(index, width)
    if model.startswith((".", "/", "~")) or model.endswith((".safetensors", ".ckpt")):
        return None
    index = fetch_model_index(model, online)
    if index is not None:
        encoder = fetch_hub_json(model, "text_encoder/config.json", online) if index.get("_class_name") in SD_PIPELINES else None
        return _family_of_index(index, (encoder or {}).get("hidden_size"))
    return "SDXL" if _HUB_NAME_SDXL.search(model) else None


def known_family(model: str) -> str | None:
    """``model_family`` offline, and None for a model it would refuse (whose load then says why)."""
    try:
        return model_family(model, online=False)
    except HeroError:
        return None


def _family_of_index(index: dict, text_width: int | None) -> str | None:
    name = index.get("_class_name", "")
    if name in SDXL_PIPELINES:
        return "SDXL"
    if name in SD_PIPELINES:
        return {768: "SD1.x", 1024: "SD2.x"}.get(text_width)
    return None


def fetch_model_index(model: str, online: bool | None = None) -> dict | None:
    """The hub repo's model_index.json (cached, or fetched when online), or None when out of reach."""
    return fetch_hub_json(model, "model_index.json", online)


def fetch_hub_json(model: str, filename: str, online: bool | None = None) -> dict | None:
    """A small JSON file of a hub repo (cached, or fetched when online), or None when out of reach."""
    if online is None:
        online = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("0", "", "false", "no")
    try:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(model, filename, local_files_only=not online)
        return _read_json(Path(path))
    except Exception:  # offline, no such repo, no network: the loader reports it
        return None


# single files ----------------------------------------------------------------------------


def single_file_family(path: Path) -> str:
    """'sd1', 'sd2' or 'sdxl' for a single-file checkpoint in the original layout; HeroError for anything else."""
    names, shapes = checkpoint_tensor_names(path)

    def has(*fragments: str) -> bool:
        return any(any(f in n for f in fragments) for n in names)

    if has("edm_mean", "edm_vpred.sigma_max"):
        raise refusal(str(path), "Playground v2.5 (EDM)")
    if has("conditioner.embedders.0.model."):  # OpenCLIP bigG alone, first: the refiner's one text encoder
        raise refusal(str(path), "SDXL refiner")
    if has("joint_blocks."):
        raise refusal(str(path), "SD3")
    if has("double_blocks.", "single_blocks.", "double_stream_modulation"):
        raise refusal(str(path), "Flux")
    conv_in = shapes.get("model.diffusion_model.input_blocks.0.0.weight")
    if conv_in is not None and len(conv_in) == 4 and conv_in[1] != 4:
        raise refusal(str(path), f"{conv_in[1]}-channel (inpainting or instruct-pix2pix)")
    if not has("model.diffusion_model.input_blocks."):
        raise HeroError(f"{path} holds no Stable Diffusion UNet in the original single-file layout; {SUPPORTED}")
    if has("conditioner.embedders.1.model."):  # CLIP ViT-L, then OpenCLIP bigG
        if not has("conditioner.embedders.0.transformer."):
            raise HeroError(f"{path} has an SDXL UNet but not both text encoders: hero needs a full checkpoint (UNet, VAE and text encoders)")
        return "sdxl"
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
    if family == "sdxl":
        return HERE / "sdxl-base"
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


def tokenizer_for(folder: Path, name: str = "tokenizer"):
    """The CLIP tokenizer a config folder's ``name`` (tokenizer, or SDXL's tokenizer_2) describes."""
    config = _read_json(Path(folder) / name / "tokenizer_config.json")
    return clip_tokenizer(config.get("pad_token", "<|endoftext|>"))
