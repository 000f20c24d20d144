"""Every HERO hyperparameter in one typed dataclass, with the paper's default.

The config is saved with the session as TOML and read back on resume, so a
session always continues with the settings it was started with. Every numeric
setting declares its range next to its default (``low``/``high`` inclusive,
``above`` exclusive), and ``validate`` checks all of them, NaN and infinity
included, before anything is written. This module imports neither torch nor
diffusers: the CLI and the TUI read it cheaply.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from collections.abc import Collection
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli_w

from hero_engine.errors import HeroError
from hero_engine.models import weights_variant

DEFAULT_HUB_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
AUTO_MODEL = "auto"  # SD1.5 where CUDA is, else the built-in demo model; fixed in the session at first load
REWARD_KINDS = ("similarity", "binary", "mean-good")
ENCODER_POOLINGS = ("grid", "global")  # representation.POOLING_GRIDS gives each one's cells
LORA_TARGET_KINDS = ("attention", "all")  # models.LORA_TARGET_MODULES names the UNet modules of each
DTYPE_NAMES = ("float32", "float16", "bfloat16")
# TOML integers are 64-bit: a setting outside this range could not be saved with the session.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_PATH_SUFFIXES = (".safetensors", ".ckpt")


def _opt(default: Any, help: str, *, low: float | None = None, high: float | None = None,
         above: float | None = None, **extra: Any) -> Any:
    """A setting with its default, its help line and (numbers only) its range."""
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        if low is None and above is None:
            raise TypeError("a numeric setting needs a range: low= or above=")
        extra["range"] = (low, high, above)
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class HeroConfig:
    """Hyperparameters of one HERO session (defaults: paper and reference code)."""

    prompt: str = _opt("", "What every round's images are generated from.")
    model: str = _opt(AUTO_MODEL, "SD1.x, SD2.x or SDXL: hub id, local diffusers folder, .safetensors/.ckpt file, 'demo', 'tiny', 'tiny-sdxl', or 'auto' (SD1.5 with CUDA, else demo).")
    negative_prompt: str = _opt("", "Unconditional text for classifier-free guidance; empty as in the paper.")
    seed: int = _opt(0, "Seeds every random draw, so a session is reproducible and resumes exactly.", low=INT64_MIN)

    # Sampling
    batch_size: int = _opt(64, "Images per round; the paper shows 64.", cli="batch", low=3)
    steps: int = _opt(50, "DDIM denoising steps; the paper's 50.", low=1, high=1000)
    eta: float = _opt(1.0, "DDIM stochasticity; must be > 0 so every step has a log-probability.", above=0.0, high=1.0)
    guidance: float = _opt(5.0, "Classifier-free guidance scale, the same in sampling and training.", low=0.0)
    resolution: int = _opt(0, "Image side in pixels; 0 takes the model's own size.", low=0, high=8192)
    sample_batch: int = _opt(16, "Images per UNet call while sampling; lower it to save memory.", memory=True, low=1)

    # LoRA and policy update (DDPO with the PPO clip)
    lora_rank: int = _opt(4, "LoRA rank of the UNet's adapters (see --lora-targets); the paper's 4.", low=1)
    lora_alpha: float = _opt(4.0, "LoRA scale numerator; alpha = rank keeps the scale at 1.", above=0.0)
    lora_targets: str = _opt("attention", "UNet layers with LoRA: 'attention' (the paper's q/k/v/out projections) or 'all' (also convolutions, feed-forward, time projections).")
    lr: float = _opt(1e-3, "AdamW learning rate of the LoRA parameters.", low=0.0)
    weight_decay: float = _opt(1e-4, "AdamW weight decay of the LoRA parameters.", low=0.0)
    grad_clip: float = _opt(1.0, "Gradient-norm clip of each optimizer step.", above=0.0)
    clip_range: float = _opt(1e-4, "PPO ratio clip; small because log-probs are means over C*H*W.", low=0.0)
    adv_clip: float = _opt(5.0, "Normalized advantages are clipped to +-this.", above=0.0)
    train_timesteps: int = _opt(5, "Denoising steps of each trajectory trained per round.", low=1)
    policy_batch: int = _opt(8, "Trajectories per optimizer step: the reference's 2 per pass x 4 accumulated.", low=1)
    train_batch: int = _opt(0, "Rows (one trajectory at one trained timestep) per forward/backward pass of the policy update; 0 chooses from free GPU memory (on a CPU, from the latent size). Only memory and speed, not the gradient.", memory=True, low=0)
    ppo_epochs: int = _opt(1, "Passes over the round's trajectories per update.", low=1)

    # Feedback-aligned representation
    encoder_epochs: int = _opt(500, "Triplet-training steps of the encoder per round (reference: 500).", low=0)
    encoder_triplets: int = _opt(64, "Triplets per encoder step (reference: 64).", low=1)
    encoder_rounds: int = _opt(1, "Labeled rounds the encoder trains on each round: this one and up to N-1 before it (the paper: 1).", low=1)
    encoder_lr: float = _opt(1e-5, "Adam learning rate of the encoder (reference: 1e-5).", low=0.0)
    triplet_margin: float = _opt(0.5, "Triplet-loss margin on d = (1 - cos) / 2.", low=0.0)
    embed_dim: int = _opt(128, "Output size of the encoder's projection head.", low=1)
    encoder_pooling: str = _opt("grid", "How the encoder's backbone pools its last feature map: 'grid' (4 x 4 averages, keeps layout) or 'global' (one average, counts amounts).")
    reward: str = _opt("similarity", "Reward: 'similarity' to the best (HERO), 'binary' labels, or 'mean-good'.")

    # Feedback-guided initial noise
    guided_noise: bool = _opt(True, "Draw the next round's noise around the good images (off = plain noise).")
    noise_eps: float = _opt(0.1, "Spread of the guided noise around its source noise.", low=0.0, high=1.0)
    best_ratio: float = _opt(0.5, "Fraction of the batch whose noise comes from the best image.", low=0.0, high=1.0)

    def validate(self) -> None:
        """Raise HeroError on the first setting that cannot work (NaN, infinity and out-of-range numbers included)."""
        for name in ("prompt", "negative_prompt", "model"):
            problem = text_problem(getattr(self, name))
            if problem:
                raise HeroError(f"{_option(name)} {problem}")
        if not self.prompt.strip():
            raise HeroError("the prompt is empty: pass --prompt 'what to draw'")
        if not self.model.strip():
            raise HeroError("--model is empty: pass a hub id, a diffusers folder, a .safetensors file, 'demo' or 'tiny'")
        if isinstance(self.batch_size, int) and not isinstance(self.batch_size, bool) and self.batch_size < 3:
            raise HeroError(f"batch size {self.batch_size} is too small: a round needs at least 3 images (the best, one more good, one bad)")
        for f in fields(self):
            if "range" in f.metadata:
                _check_number(f, getattr(self, f.name))
            elif not isinstance(getattr(self, f.name), type(f.default)):
                raise HeroError(f"{_option(f.name)} must be a {type(f.default).__name__}, not {getattr(self, f.name)!r}")
        if not self.train_timesteps <= self.steps:
            raise HeroError(f"--train-timesteps must be between 1 and --steps ({self.steps})")
        if self.lora_targets not in LORA_TARGET_KINDS:
            raise HeroError(f"unknown LoRA targets '{self.lora_targets}': choose one of {', '.join(LORA_TARGET_KINDS)}")
        if self.encoder_pooling not in ENCODER_POOLINGS:
            raise HeroError(f"unknown --encoder-pooling '{self.encoder_pooling}': choose one of {', '.join(ENCODER_POOLINGS)}")
        if self.reward not in REWARD_KINDS:
            raise HeroError(f"unknown reward '{self.reward}': choose one of {', '.join(REWARD_KINDS)}")
        if self.resolution % 8:
            raise HeroError("--resolution must be a multiple of 8 (or 0 for the model's own size)")

    def replace(self, **changes: Any) -> HeroConfig:
        return dataclasses.replace(self, **changes)

    def for_model(self, model: str, given: Collection[str] = (), family: str | None = None) -> HeroConfig:
        """The settings a session on ``model`` (of ``family``, model_configs.FAMILIES, where known) starts with.

        On the built-in demo model every setting in DEMO_SCALE that was not ``given``
        (named on the command line or in a config file) and is still at the paper's
        default takes its demo value; so `--batch 64` stays 64 although 64 is also the
        paper's default. An SDXL model takes SDXL_SCALE's memory settings the same way.
        Other models keep the paper's settings.
        """
        paper = HeroConfig()
        if family == "SDXL" and model != "demo":
            return self.replace(**{k: v for k, (v, _why) in SDXL_SCALE.items() if k not in given and getattr(self, k) == getattr(paper, k)})
        if model != "demo":
            return self
        demo = {k: v for k, (v, _why) in DEMO_SCALE.items() if k not in given and getattr(self, k) == getattr(paper, k)}
        if "train_timesteps" in demo:  # the demo's 10 cannot exceed fewer steps given on the command line
            demo["train_timesteps"] = min(demo["train_timesteps"], demo.get("steps", self.steps))
        return self.replace(**demo)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeroConfig:
        if not isinstance(data, dict):
            raise HeroError(f"the config must be a table of settings, not {type(data).__name__}")
        known = {f.name: f for f in fields(cls)}
        if "grad_accum" in data and "policy_batch" not in data:  # sessions saved before policy_batch existed
            data = {**data, "policy_batch": int(data.get("train_batch", 2)) * int(data["grad_accum"])}
            data.pop("grad_accum")
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise HeroError(f"unknown config key(s): {', '.join(unknown)}")
        return cls(**{k: coerce(known[k], v) for k, v in data.items()})

    @classmethod
    def from_toml(cls, path: Path) -> HeroConfig:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise HeroError(f"config file {path} does not exist") from None
        except OSError as exc:
            raise HeroError(f"config file {path} cannot be read ({exc.strerror or exc})") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise HeroError(f"config file {path} is not valid TOML: {exc}") from None
        return cls.from_dict(data.get("config", data))


def coerce(f: dataclasses.Field, value: Any) -> Any:
    """Convert a TOML or CLI value to the field's type, with a one-line error."""
    kind = type(f.default)
    try:
        if kind is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            if not isinstance(value, (bool, int)):
                raise ValueError(value)
            return bool(value)
        if kind is str:
            if not isinstance(value, str):
                raise ValueError(value)
            return value
        if isinstance(value, bool):  # true is not the number 1
            raise ValueError(value)
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return kind(value)
    except (TypeError, ValueError, OverflowError):
        raise HeroError(f"config value {f.name} = {_short_repr(value)} is not a {kind.__name__}") from None


def _option(name: str) -> str:
    f = next(f for f in fields(HeroConfig) if f.name == name)
    return "--" + f.metadata.get("cli", name.replace("_", "-"))


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_number(f: dataclasses.Field, value: Any) -> None:
    """Raise HeroError unless ``value`` is a number of the field's type inside the field's range."""
    low, high, above = f.metadata["range"]
    kind = type(f.default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise HeroError(f"{_option(f.name)} must be {'an integer' if kind is int else 'a number'}, not {_short_repr(value)}")
    if kind is int:
        low = INT64_MIN if low is None else low
        high = INT64_MAX if high is None else high
    parts = []
    if above is not None:
        parts.append(f"> {above:g}")
    if low is not None:
        parts.append(f">= {low:g}" if kind is float else f">= {low}")
    if high is not None and (kind is float or high < INT64_MAX or value > high):
        parts.append(f"<= {high:g}" if kind is float else f"<= {high}")
    inside = (
        (kind is int or math.isfinite(value))
        and (above is None or value > above)
        and (low is None or value >= low)
        and (high is None or value <= high)
    )
    if not inside:
        what = "an integer" if kind is int else "a finite number"
        raise HeroError(f"{_option(f.name)} must be {what} {' and '.join(parts)} (got {_short_repr(value)})")


def text_problem(text: Any) -> str | None:
    """Why ``text`` cannot be saved in session.toml exactly, or None.

    TOML holds any Unicode text (control characters, quotes, backslashes and
    newlines are escaped when written), but not lone surrogates: they are no
    characters and have no UTF-8 form (Python makes them from bytes that are
    not UTF-8, e.g. a command-line argument in another encoding).
    """
    if not isinstance(text, str):
        return f"must be text, not {type(text).__name__}"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"is not valid text: character {exc.start + 1} is a lone surrogate ({text[exc.start]!a}), e.g. from bytes that are not UTF-8"
    return None


def model_problem(model: str) -> str | None:
    """Why ``model`` cannot be loaded, as far as can be told without torch; None when it may be.

    Catches what a person mistypes (a missing path, a file of the wrong kind, a
    folder that is no diffusers pipeline, a malformed hub id, a hub id not in the
    cache while offline) before a session folder is made for it.
    """
    if model in ("tiny", "tiny-sdxl", AUTO_MODEL):
        return None
    if model == "demo":
        weights = Path(__file__).parent / "demo" / "weights"
        if not (weights / "model_index.json").is_file():
            return f"the demo model's weights are missing from {weights}"
        return None
    path = Path(model).expanduser()
    try:
        if path.is_file():
            return None if path.suffix in _PATH_SUFFIXES else f"model {model} is a file but not a .safetensors or .ckpt checkpoint"
        if path.is_dir():
            return None if (path / "model_index.json").is_file() else f"model {model} is a folder without model_index.json: pass a diffusers pipeline folder"
    except OSError as exc:
        return f"model {model} cannot be read ({exc.strerror or exc})"
    if model.startswith((".", "/", "~")) or model.endswith(_PATH_SUFFIXES) or model.count("/") > 1:
        return f"model {model} does not exist: pass a hub id, a local diffusers folder, a .safetensors file, 'demo' or 'tiny'"
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+|[A-Za-z0-9][\w.-]*", model) or ".." in model:
        return f"model {model!r} is neither a local path nor a hub id (owner/name)"
    try:
        cached = weights_variant.in_cache(model)
    except ImportError:  # pragma: no cover (huggingface_hub comes with diffusers)
        return None
    if cached:
        return None
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "", "false", "no", "off"):
        return f"model {model} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set: pass a local folder or a .safetensors file"
    return _hub_problem(model)


def _hub_problem(model: str) -> str | None:
    """Ask the hub whether an uncached id exists, so a mistyped one leaves no dead session behind."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        HfApi().model_info(model, timeout=15)
    except GatedRepoError:
        return None  # it exists; loading says what access it needs
    except RepositoryNotFoundError:
        return f"model {model} was not found on the Hugging Face hub (a typo, or a private model without a login?)"
    except Exception as exc:  # no network, DNS, proxy: the download would fail the same way
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        return f"model {model} is not in the local cache and the hub cannot be reached ({reason}): pass a local folder or a .safetensors file"
    return None


def runtime_problem(device: str | None, dtype: str | None) -> str | None:
    """Why --device or --dtype cannot be right, judged from their spelling (the engine checks the hardware)."""
    if device not in (None, "", "auto") and not re.fullmatch(r"cpu|cuda(:\d+)?|mps|xpu(:\d+)?", device):
        return f"unknown device '{device}': pass --device cpu or --device cuda"
    if dtype not in (None, "", "auto") and dtype not in DTYPE_NAMES:
        return f"unknown dtype '{dtype}': choose one of {', '.join(DTYPE_NAMES)}"
    return None


def config_fields() -> list[dataclasses.Field]:
    return list(fields(HeroConfig))


# Settings that only trade memory for speed: a session may be continued with other values.
MEMORY_FIELDS = frozenset(f.name for f in fields(HeroConfig) if f.metadata.get("memory"))

# The demo model's own defaults, where the paper's (sized for SD1.5: 64x64x4 latents, 64-image
# rounds on a GPU) do not fit a 16x16x4-latent model on a CPU. docs/experiments.md gives
# the measurements behind each value.
DEMO_SCALE: dict[str, tuple[Any, str]] = {
    "batch_size": (16, "a round in well under a minute on a 2-core CPU; 64 images take several"),
    "steps": (20, "its 64-pixel images settle in fewer steps than SD's"),
    "encoder_epochs": (500, "the reference's 500: at 100 the reward ordered some rounds' labels no better than chance"),
    "encoder_lr": (3e-5, "with 500 steps, the rate at which the reward followed the labels in every measured round"),
    "clip_range": (1e-3, "the paper's 1e-4 lets a 16-image round move the policy by an approximate KL of about 1e-7"),
    "policy_batch": (4, "16-image rounds then give 4 optimizer steps (the paper's 64-image rounds give 8)"),
    "train_timesteps": (10, "half of the 20 steps, as the paper trains a tenth of 50 in rounds four times as large"),
    "lora_targets": ("all", "an attention-only LoRA cannot learn the star's look even from 47 direct examples; on all layers it can"),
}


# An SDXL model's own defaults, where the paper's (sized for SD1.5's 64 x 64 latents) would not fit a 24 GB card at
# SDXL's 128 x 128: a UNet call's activations grow with the latent pixels, four times SD1.5's. The policy update's
# gradient checkpointing, SDXL's other memory default, is not a setting (learner.policy_settings).
SDXL_SCALE: dict[str, tuple[Any, str]] = {
    "sample_batch": (4, "4 images a UNet call (8 with guidance) and a VAE decode at 1024 px, sized for a 24 GB card"),
}


def dump_toml(tables: dict[str, dict[str, Any]]) -> str:
    """Write tables of scalars as TOML (tomli-w escapes every character TOML needs escaped).

    Raises HeroError for text that has no UTF-8 form (see ``text_problem``).
    """
    for table in tables.values():
        for key, value in table.items():
            problem = text_problem(value) if isinstance(value, str) else None
            if problem:
                raise HeroError(f"{key} {problem}")
    return tomli_w.dumps(tables)
