"""Out-of-memory during a stage as a one-line error that says the session is intact."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import TypeVar

import torch

from hero_engine.errors import OutOfMemory

T = TypeVar("T")


def guard(stage: str, work: Callable[[], T], on_out_of_memory: Callable[[], None]) -> T:
    """Run a stage; turn out-of-memory into a one-line error that says the session is intact.

    ``on_out_of_memory`` runs first: the stage may have left the in-memory state half-changed.
    It and the cache's release run after the ``except`` block: until then the exception's
    traceback holds the failed stage's frames, and with them its activations.
    """
    try:
        return work()
    except torch.OutOfMemoryError:
        detail = None
    except RuntimeError as exc:
        if "out of memory" not in str(exc) and "can't allocate memory" not in str(exc):
            raise
        detail = str(exc).splitlines()[0][:120]
    on_out_of_memory()
    gc.collect()  # frames caught in reference cycles
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if detail is None:
        raise OutOfMemory(
            f"out of memory during {stage}; the session is intact. Continue it with a lower --sample-batch "
            "or --train-batch (e.g. 1; 0 fills the free memory) (they change memory use, not the results)"
        )
    raise OutOfMemory(f"out of memory during {stage}; the session is intact ({detail})")
