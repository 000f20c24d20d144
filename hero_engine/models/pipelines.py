"""Load a Stable Diffusion pipeline and attach, save and load the LoRA that HERO trains.

A model is a hub id, a local diffusers folder, a single .safetensors/.ckpt file
(loaded offline with the configs in ``model_configs/``), the built-in ``demo``
model, or the ``tiny`` and ``tiny-sdxl`` pipelines (random weights, built offline,
for tests). SD1.x, SD2.x and SDXL base models are accepted; others are refused
before anything downloads. The frozen parts run in the runtime dtype; the LoRA
parameters stay float32. SDXL's two text encoders wait on the CPU while the UNet
has the GPU (``sampling.encode_prompt`` moves them there for an encoding), and
its VAE, which overflows in float16, decodes in float32 where the runtime is float16.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from hero_engine.config import model_problem
from hero_engine.errors import HeroError
from hero_engine.models import download_watch, weights_variant
from hero_engine.models.clip_vocab import build_offline_tokenizer

log = logging.getLogger(__name__)

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
# config.LORA_TARGET_KINDS -> peft target_modules; "all" adds every other linear and 3x3 convolution of the UNet's blocks
LORA_TARGET_MODULES = {
    "attention": LORA_TARGETS,
    "all": [*LORA_TARGETS, "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1", "conv2", "time_emb_proj"],
}
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
# The built-in demo model's diffusers folder (in the demo package), found by its path: hero_engine.demo builds on this module.
DEMO_WEIGHTS = Path(__file__).resolve().parents[1] / "demo" / "weights"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class Runtime:
    """Where the frozen model runs and in which precision (not part of the saved config)."""

    device: torch.device
    dtype: torch.dtype

    @classmethod
    def resolve(cls, device: str | None = None, dtype: str | None = None) -> Runtime:
        if device in (None, "", "auto"):
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise HeroError(f"unknown device '{device}': pass --device cpu or --device cuda") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise HeroError("--device cuda was asked for but no CUDA device is visible: pass --device cpu")
        if dev.type == "cuda":
            prefer_expandable_segments()  # every session resolves its runtime before it puts anything on the GPU
        if dtype in (None, "", "auto"):
            dtype = default_dtype(dev)
        if dtype not in DTYPES:
            raise HeroError(f"unknown dtype '{dtype}': choose one of {', '.join(DTYPES)}")
        return cls(dev, DTYPES[dtype])

    @property
    def half_precision(self) -> bool:
        return self.dtype in (torch.float16, torch.bfloat16)


def default_dtype(device: torch.device) -> str:
    """The frozen model's precision when none is asked for.

    bfloat16 on a GPU that computes in it natively, compute capability 8 and up
    (float32's range, so gradients need no loss scaling); float16 with dynamic loss
    scaling on older GPUs, where bfloat16 is emulated and several times slower
    (``torch.cuda.is_bf16_supported`` counts emulation, so it is not asked); float32 on the CPU.
    """
    if device.type != "cuda":
        return "float32"
    major, _ = torch.cuda.get_device_capability(device)
    return "bfloat16" if major >= 8 else "float16"


ALLOCATOR_SETTINGS = ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF")  # the CUDA caching allocator's, old and new name


def prefer_expandable_segments() -> None:
    """Let the CUDA caching allocator grow and shrink its segments, unless the person set it up themselves.

    Sampling and the policy update alternate tensors of other sizes; fixed segments then
    fragment, reserved memory climbs far above what is allocated, and a round can run out
    of memory with memory free. Read once, when CUDA first allocates: call this before.
    """
    if not any(name in os.environ for name in ALLOCATOR_SETTINGS):
        os.environ["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"


def load_pipeline(model: str, runtime: Runtime, on_download: Callable[[int, int], None] | None = None,
                  variant: str = weights_variant.DEFAULT):
    """Return a StableDiffusionPipeline (StableDiffusionXLPipeline for SDXL) for ``model`` on the runtime device, frozen.

    ``on_download(done, total)`` is told the bytes downloaded so far, and of how many, while a hub model's files
    are fetched (download_watch; total 0 where not known);
    ``variant`` says which of a hub model's weight files to load (weights_variant)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    # Loading bars would land in the CLI's output or the worker's protocol stream.
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    pipe = _load(model, runtime.dtype, on_download, variant)
    pipe.set_progress_bar_config(disable=True)
    encoders = text_encoders(pipe)
    for part in (pipe.unet, pipe.vae, *encoders):
        part.requires_grad_(False)
        part.eval()
    if model_family(pipe) == "SDXL":
        # The text encoders (0.8 B parameters) run once a session: the GPU's memory goes to the UNet.
        pipe.unet.to(runtime.device)
        pipe.vae.to(runtime.device)
        if runtime.dtype == torch.float16 and getattr(pipe.vae.config, "force_upcast", False):
            pipe.vae.to(dtype=torch.float32)  # SDXL's VAE overflows in float16 (its config says so)
    else:
        pipe.to(runtime.device)
    return pipe


def text_encoders(pipe) -> list:
    """The pipeline's text encoders: one for SD1.x/SD2.x, two for SDXL."""
    return [e for e in (pipe.text_encoder, getattr(pipe, "text_encoder_2", None)) if e is not None]


def model_family(pipe) -> str:
    """What the loaded model is (model_configs.FAMILIES), read from its parts: SDXL's UNet takes added conditioning,
    SD2.x's text encoder is OpenCLIP ViT-H (1024 wide); anything else SD-shaped is counted SD1.x."""
    if pipe.unet.config.addition_embed_type == "text_time":
        return "SDXL"
    return "SD2.x" if pipe.unet.config.cross_attention_dim == 1024 else "SD1.x"


def _load(model: str, dtype: torch.dtype, on_download: Callable[[int, int], None] | None, variant: str):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    from hero_engine.models import model_configs

    if model == "tiny":
        return build_tiny_pipeline(dtype)
    if model == "tiny-sdxl":
        return build_tiny_sdxl_pipeline(dtype)
    if model == "demo":
        model = str(DEMO_WEIGHTS)
        if not Path(model, "model_index.json").exists():
            raise HeroError(f"the demo model's weights are missing from {model}: train them with python -m hero_engine.demo.train --out {model}")
    path = Path(model).expanduser()
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
    if path.is_file() and path.suffix not in (".safetensors", ".ckpt"):
        raise HeroError(f"{model} is a file but not a .safetensors or .ckpt checkpoint")
    if path.is_dir() and not (path / "model_index.json").exists():
        raise HeroError(f"{model} is a folder without model_index.json: pass a diffusers pipeline folder")
    if not path.exists() and (model.startswith((".", "/", "~")) or model.endswith((".safetensors", ".ckpt"))):
        raise HeroError(f"model {model} does not exist: pass a hub id, a local diffusers folder, a .safetensors file, or 'tiny'")
    if not path.exists() and not offline:
        # an uncached hub id: one request says whether the hub answers, before downloads that retry for a minute
        problem = model_problem(model)
        if problem:
            raise HeroError(problem)
    # SDXL refiners, SD3, Flux, ...: refused before any download
    sdxl = model_configs.model_family(model, online=not offline) == "SDXL"
    pipeline_cls = StableDiffusionXLPipeline if sdxl else StableDiffusionPipeline
    common = dict(dtype=dtype) if sdxl else dict(dtype=dtype, safety_checker=None, requires_safety_checker=False)
    try:
        if path.is_file():
            return load_single_file(path, dtype=dtype)
        if path.is_dir():
            return pipeline_cls.from_pretrained(str(path), local_files_only=True,
                                                variant=weights_variant.for_diffusers(variant), **common)
        watching = nullcontext()
        if on_download and not offline:
            total = download_watch.UNKNOWN_TOTAL
            if not weights_variant.unet_cached(model, variant):  # a cached model asks the hub for no sizes
                # the parts from_pretrained loads: model_index.json's, less those passed here (the safety checker)
                parts = [name for name in model_configs.fetch_model_index(model, online=True) or {}
                         if not name.startswith("_") and name not in common]
                total = download_watch.expected_bytes(model, parts, weights_variant.for_diffusers(variant))
            watching = download_watch.watch_download(model, on_download, total)
        with watching, warnings.catch_warnings():
            # huggingface_hub warns before each file that will not fit; a full disk is said below, in one line
            warnings.filterwarnings("ignore", message="Not enough free disk space", category=UserWarning)
            return pipeline_cls.from_pretrained(model, local_files_only=offline,
                                                variant=weights_variant.for_diffusers(variant), **common)
    except HeroError:
        raise
    except Exception as exc:  # diffusers/hub raise many kinds; the user needs one line
        if not path.exists() and download_watch.ran_out_of_space(exc):
            raise HeroError(download_watch.no_space_message(model)) from None
        if path.is_file():
            hint = "is it a complete SD1.x/SD2.x/SDXL checkpoint in the original single-file layout?"
        elif path.is_dir():
            hint = "is it a complete diffusers pipeline folder (model_index.json and each part's config and weights)?"
        elif offline:
            hint = "this machine is offline and the model is not in the hub cache: pass a local diffusers folder or a single .safetensors/.ckpt file with --model, or --model demo"
        else:
            hint = "check the hub id (and `huggingface-cli login` for gated models), or pass a local folder or file with --model"
        raise HeroError(f"could not load model '{model}' ({type(exc).__name__}: {_first_line(exc)}); {hint}") from None


def load_single_file(path: Path, dtype: torch.dtype = torch.float32, config: Path | None = None):
    """A single-file SD1.x/SD2.x/SDXL checkpoint (original layout), offline, with the configs shipped in the package.

    ``config`` overrides the shipped diffusers-layout config folder (the family is
    otherwise read from the file's tensor names); the CLIP tokenizers are rebuilt
    from the shipped BPE merges, so nothing is fetched from the hub.
    """
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    from hero_engine.models import model_configs

    if config is None:
        config = model_configs.config_folder(path, model_configs.single_file_family(path))
    log.info("loading %s with the model configs in %s", path, config)
    if (Path(config) / "tokenizer_2").is_dir():
        return StableDiffusionXLPipeline.from_single_file(
            str(path), config=str(config), tokenizer=model_configs.tokenizer_for(config),
            tokenizer_2=model_configs.tokenizer_for(config, "tokenizer_2"), local_files_only=True, dtype=dtype,
        )
    return StableDiffusionPipeline.from_single_file(
        str(path), config=str(config), tokenizer=model_configs.tokenizer_for(config),
        local_files_only=True, dtype=dtype, safety_checker=None, requires_safety_checker=False,
    )


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else "no message"


def _tiny_vae(**settings):
    """The tiny pipelines' VAE: 3 blocks, 8x downscaling as SD's, 4 latent channels; ``settings`` add to its config."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 32),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
        **settings,
    )


def build_tiny_pipeline(dtype: torch.dtype = torch.float32, seed: int = 0):
    """A tiny SD-architecture pipeline with random weights, built with no download.

    It has every part SD1.5 has (CLIP tokenizer and text encoder, VAE, UNet with
    cross-attention, the SD1.5 DDIM schedule), so the engine's code path is the same.
    """
    from diffusers import (
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    vae = _tiny_vae()
    tokenizer = build_offline_tokenizer()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    scheduler = DDIMScheduler.from_config(SD15_SCHEDULER_CONFIG)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return pipe.to(dtype=dtype)


def build_tiny_sdxl_pipeline(dtype: torch.dtype = torch.float32, seed: int = 0):
    """A tiny SDXL-architecture pipeline with random weights, built with no download.

    It has every part SDXL has, in SDXL's layout at tiny widths: two CLIP text encoders
    (the second with a projection, whose pooled output is the UNet's ``text_embeds``),
    a UNet with SDXL's three levels (no attention in the first, two layers a block, more
    transformer layers deeper) and its added conditioning (``text_time``: pooled text and
    six size ids), and the VAE; so the engine runs SDXL's code path.
    """
    from diffusers import (
        DDIMScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    # Two text widths, as SDXL's 768 and 1280: a single file's loader tells its two encoders apart by width.
    width_1, width_2, time_embed_dim = 32, 48, 8
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(32, 32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 1, 2),
        attention_head_dim=(2, 4, 8),
        use_linear_projection=True,
        cross_attention_dim=width_1 + width_2,  # both encoders' penultimate hidden states, side by side
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim,
        projection_class_embeddings_input_dim=width_2 + 6 * time_embed_dim,  # pooled text, six size ids
        norm_num_groups=8,
    )
    vae = _tiny_vae(scaling_factor=0.13025, force_upcast=True)  # SDXL's VAE settings
    tokenizer, tokenizer_2 = build_offline_tokenizer(), build_offline_tokenizer(pad_token="!")
    encoder_config = dict(
        vocab_size=len(tokenizer), intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(**encoder_config, hidden_size=width_1, pad_token_id=tokenizer.pad_token_id))
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(
        **encoder_config, hidden_size=width_2, projection_dim=width_2, hidden_act="gelu", pad_token_id=tokenizer_2.pad_token_id,
    ))
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=DDIMScheduler.from_config(SD15_SCHEDULER_CONFIG),  # SDXL's training schedule is SD1.5's
    )
    return pipe.to(dtype=dtype)


# SD1.5's own scheduler settings: the last DDIM step ends at t=1 with sigma > 0.
SD15_SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}


# LoRA -----------------------------------------------------------------------


def add_lora(unet, rank: int, alpha: float, targets: str = "attention") -> list[torch.nn.Parameter]:
    """Freeze the UNet, add a float32 LoRA on the ``targets`` kind of layers, return its parameters."""
    from peft import LoraConfig

    unet.requires_grad_(False)
    unet.add_adapter(
        LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=LORA_TARGET_MODULES[targets])
    )
    params = lora_parameters(unet)
    for p in params:
        p.data = p.data.float()
    return params


def lora_parameters(unet) -> list[torch.nn.Parameter]:
    params = [p for n, p in unet.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    return params


def lora_state_dict(unet) -> dict[str, torch.Tensor]:
    """The LoRA in diffusers' key format (what load_lora_weights reads)."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    return convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))


def save_lora(unet, folder: Path, weight_name: str = LORA_WEIGHT_NAME) -> Path:
    from diffusers import StableDiffusionPipeline

    layers = {k: v.detach().float().cpu().contiguous() for k, v in lora_state_dict(unet).items()}
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=layers, weight_name=weight_name)
    return Path(folder) / weight_name


def read_lora_file(path: Path) -> dict[str, torch.Tensor]:
    """A LoRA file in diffusers' format (``unet.`` keys) as peft's UNet state dict (``<module>.lora_A.weight``)."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_unet_state_dict_to_peft

    path = Path(path)
    state, _alphas = StableDiffusionPipeline.lora_state_dict(str(path.parent), weight_name=path.name)
    state = {k.removeprefix("unet."): v for k, v in state.items() if k.startswith("unet.")}
    return convert_unet_state_dict_to_peft(state)


def load_lora(unet, folder: Path) -> None:
    """Load saved LoRA weights into the adapter ``add_lora`` already attached (never add a second one)."""
    from peft.utils import set_peft_model_state_dict

    result = set_peft_model_state_dict(unet, read_lora_file(Path(folder) / LORA_WEIGHT_NAME), adapter_name="default")
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise HeroError(f"LoRA in {folder} does not fit this model ({len(unexpected)} unexpected keys)")
    for p in lora_parameters(unet):
        p.data = p.data.float()
