import os

import pytest

# One thread per process: tests start engine child processes beside the test process, and on a
# 2-core machine oversubscribed torch threads slow everything down many times over.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import torch  # noqa: E402

from hero_engine.config import HeroConfig  # noqa: E402

torch.set_num_threads(1)


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
