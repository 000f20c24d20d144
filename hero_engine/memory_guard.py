"""Out-of-memory during a stage as a one-line error that says the session is intact."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

from hero_engine.errors import OutOfMemory

T = TypeVar("T")


def guard(stage: str, work: Callable[[], T], on_out_of_memory: Callable[[], None]) -> T:
    """Run a stage; turn out-of-memory into a one-line error that says the session is intact.

    ``on_out_of_memory`` runs first: the stage may have left the in-memory state half-changed.
    """
    try:
        return work()
    except torch.OutOfMemoryError:
        on_out_of_memory()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise OutOfMemory(
            f"out of memory during {stage}; the session is intact. Continue it with a lower --sample-batch "
            "or --train-batch (e.g. 1; 0 fills the free memory) (they change memory use, not the results)"
        ) from None
    except RuntimeError as exc:
        if "out of memory" in str(exc) or "can't allocate memory" in str(exc):
            on_out_of_memory()
            raise OutOfMemory(f"out of memory during {stage}; the session is intact ({str(exc).splitlines()[0][:120]})") from None
        raise
