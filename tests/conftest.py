import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

from hero_engine.config import HeroConfig  # noqa: E402


@pytest.fixture
def tiny_config():
    """A HERO config small enough that a round takes about a second on a CPU core."""
    return HeroConfig(
        prompt="a red hand",
        model="tiny",
        batch_size=6,
        steps=6,
        train_timesteps=3,
        encoder_epochs=8,
        encoder_triplets=8,
        sample_batch=6,
    )
