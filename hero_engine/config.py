"""Every HERO hyperparameter in one typed dataclass, with the paper's default.

The config is saved with the session as TOML and read back on resume, so a
session always continues with the settings it was started with. This module
imports neither torch nor diffusers: the CLI and the TUI read it cheaply.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from hero_engine.errors import HeroError

DEFAULT_HUB_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
AUTO_MODEL = "auto"  # SD1.5 where CUDA is, else the built-in demo model; fixed in the session at first load
REWARD_KINDS = ("similarity", "binary", "mean-good")


def _opt(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class HeroConfig:
    """Hyperparameters of one HERO session (defaults: paper and reference code)."""

    prompt: str = _opt("", "What every round's images are generated from.")
    model: str = _opt(AUTO_MODEL, "Hub id, local diffusers folder, .safetensors/.ckpt file, 'demo', 'tiny', or 'auto' (SD1.5 with CUDA, else demo).")
    negative_prompt: str = _opt("", "Unconditional text for classifier-free guidance; empty as in the paper.")
    seed: int = _opt(0, "Seeds every random draw, so a session is reproducible and resumes exactly.")

    # Sampling
    batch_size: int = _opt(64, "Images per round; the paper shows 64.", cli="batch")
    steps: int = _opt(50, "DDIM denoising steps; the paper's 50.")
    eta: float = _opt(1.0, "DDIM stochasticity; must be > 0 so every step has a log-probability.")
    guidance: float = _opt(5.0, "Classifier-free guidance scale, the same in sampling and training.")
    resolution: int = _opt(0, "Image side in pixels; 0 takes the model's own size.")
    sample_batch: int = _opt(16, "Images per UNet call while sampling; lower it to save memory.", memory=True)

    # LoRA and policy update (DDPO with the PPO clip)
    lora_rank: int = _opt(4, "LoRA rank on the UNet attention projections; the paper's 4.")
    lora_alpha: float = _opt(4.0, "LoRA scale numerator; alpha = rank keeps the scale at 1.")
    lr: float = _opt(1e-3, "AdamW learning rate of the LoRA parameters.")
    weight_decay: float = _opt(1e-4, "AdamW weight decay of the LoRA parameters.")
    grad_clip: float = _opt(1.0, "Gradient-norm clip of each optimizer step.")
    clip_range: float = _opt(1e-4, "PPO ratio clip; small because log-probs are means over C*H*W.")
    adv_clip: float = _opt(5.0, "Normalized advantages are clipped to +-this.")
    train_timesteps: int = _opt(5, "Denoising steps of each trajectory trained per round.")
    policy_batch: int = _opt(8, "Trajectories per optimizer step: the reference's 2 per pass x 4 accumulated.")
    train_batch: int = _opt(2, "Trajectories per forward/backward pass of the policy update; only memory and speed, not the gradient.", memory=True)
    ppo_epochs: int = _opt(1, "Passes over the round's trajectories per update.")

    # Feedback-aligned representation
    encoder_epochs: int = _opt(500, "Triplet-training steps of the encoder per round (reference: 500).")
    encoder_triplets: int = _opt(64, "Triplets per encoder step (reference: 64).")
    encoder_lr: float = _opt(1e-5, "Adam learning rate of the encoder (reference: 1e-5).")
    triplet_margin: float = _opt(0.5, "Triplet-loss margin on d = (1 - cos) / 2.")
    embed_dim: int = _opt(128, "Output size of the encoder's projection head.")
    reward: str = _opt("similarity", "Reward: 'similarity' to the best (HERO), 'binary' labels, or 'mean-good'.")

    # Feedback-guided initial noise
    guided_noise: bool = _opt(True, "Draw the next round's noise around the good images (off = plain noise).")
    noise_eps: float = _opt(0.1, "Spread of the guided noise around its source noise.")
    best_ratio: float = _opt(0.5, "Fraction of the batch whose noise comes from the best image.")

    def validate(self) -> None:
        """Raise HeroError on the first setting that cannot work."""
        if not self.prompt.strip():
            raise HeroError("the prompt is empty: pass --prompt 'what to draw'")
        if self.batch_size < 3:
            raise HeroError(f"batch size {self.batch_size} is too small: a round needs at least 3 images (the best, one more good, one bad)")
        if self.steps < 1:
            raise HeroError("--steps must be at least 1")
        if not self.eta > 0:
            raise HeroError("--eta must be > 0: with eta = 0 the DDIM steps have no log-probability")
        if not 1 <= self.train_timesteps <= self.steps:
            raise HeroError(f"--train-timesteps must be between 1 and --steps ({self.steps})")
        for name in ("train_batch", "policy_batch", "ppo_epochs", "sample_batch", "lora_rank", "embed_dim", "encoder_triplets"):
            if getattr(self, name) < 1:
                raise HeroError(f"--{name.replace('_', '-')} must be at least 1")
        if self.encoder_epochs < 0:
            raise HeroError("--encoder-epochs must be >= 0")
        if not 0 <= self.noise_eps <= 1:
            raise HeroError("--noise-eps must be between 0 and 1")
        if not 0 <= self.best_ratio <= 1:
            raise HeroError("--best-ratio must be between 0 and 1")
        if self.reward not in REWARD_KINDS:
            raise HeroError(f"unknown reward '{self.reward}': choose one of {', '.join(REWARD_KINDS)}")
        if self.resolution and self.resolution % 8:
            raise HeroError("--resolution must be a multiple of 8")
        for name in ("lr", "encoder_lr", "clip_range", "adv_clip", "grad_clip", "guidance", "triplet_margin"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise HeroError(f"--{name.replace('_', '-')} must be a finite number >= 0")

    def replace(self, **changes: Any) -> HeroConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeroConfig:
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
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise HeroError(f"config file {path} does not exist") from None
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
            return bool(value)
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return kind(value)
    except (TypeError, ValueError):
        raise HeroError(f"config value {f.name} = {value!r} is not a {kind.__name__}") from None


def config_fields() -> list[dataclasses.Field]:
    return list(fields(HeroConfig))


# Settings that only trade memory for speed: a session may be continued with other values.
MEMORY_FIELDS = frozenset(f.name for f in fields(HeroConfig) if f.metadata.get("memory"))


def dump_toml(tables: dict[str, dict[str, Any]]) -> str:
    """Write flat tables of scalars as TOML (the only shape the session file has)."""
    lines: list[str] = []
    for table, values in tables.items():
        lines.append(f"[{table}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'
