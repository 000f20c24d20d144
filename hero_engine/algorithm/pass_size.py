"""How many rows go through the UNet in one forward/backward pass of the policy update.

A row is one trajectory at one of its trained timesteps. The pass size changes
memory use and speed, never the gradient (see ``policy.policy_update``).

``train_batch`` = N > 0 takes N rows a pass. ``train_batch`` = 0 (``AUTO``)
takes, off CUDA, a number of rows set by the latent's size (``cpu_rows``). On
CUDA it measures: the update's first pass takes one row, its peak memory above
what was allocated before it is the cost of a row (an overestimate, since it
holds the pass's fixed costs), and the later passes take as many rows as
``MEMORY_SHARE`` of the memory then free holds. When fewer than
``SMALLEST_USEFUL_ROWS`` would fit, or the one-row pass itself runs out of
memory, gradient checkpointing goes on for the update (the UNet recomputes
activations in the backward pass instead of keeping them) and a row is
measured again.
"""

from __future__ import annotations

import logging
from typing import Protocol

import torch

log = logging.getLogger(__name__)

AUTO = 0
# Off CUDA, a pass's memory is bounded by its latent pixels: 2 rows of SD1.5 at 512 px (64 x 64 latents),
# what hero's earlier default of 2 trajectories a pass held, and 32 of the demo model (16 x 16), whose
# update on a shared 2-core CPU takes about 9 s at 2 rows a pass, 6.5 s at 8 and 5.5 s at 40.
CPU_LATENT_PIXELS = 2 * 64 * 64
MEMORY_SHARE = 0.8  # of the free memory; the rest absorbs the allocator's fragmentation
# Below this, checkpointing at a larger pass is faster. SD1.5 on an H200, bfloat16, per UNet call (a row is
# two with guidance): 28 ms at batch 4 without checkpointing, 20 ms at batch 16 with it, 9.9 ms without.
SMALLEST_USEFUL_ROWS = 4


class DeviceMemory(Protocol):
    def start_pass(self) -> None: ...
    def pass_peak(self) -> int: ...  # bytes above the allocation at start_pass
    def available(self) -> int: ...  # bytes a pass may still allocate


class CudaMemory:
    """The CUDA caching allocator's counters on one device (host-side: reading them does not wait on the GPU).

    ``start_pass`` resets the device's peak counter, so a peak read later in the
    process covers the policy update's passes and what follows them.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.before = 0

    def start_pass(self) -> None:
        self.before = torch.cuda.memory_allocated(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)

    def pass_peak(self) -> int:
        return torch.cuda.max_memory_allocated(self.device) - self.before

    def available(self) -> int:
        free, total = torch.cuda.mem_get_info(self.device)
        allocated = torch.cuda.memory_allocated(self.device)
        # memory the allocator holds but no tensor uses is free to this process too
        unused = free + torch.cuda.memory_reserved(self.device) - allocated
        # a cap set with torch.cuda.set_per_process_memory_fraction (a card shared, or a smaller card's budget)
        allowed = int(torch.cuda.get_per_process_memory_fraction(self.device) * total) - allocated
        return max(0, min(unused, allowed))


def rows_that_fit(available_bytes: int, row_bytes: int) -> int:
    return int(MEMORY_SHARE * available_bytes // max(row_bytes, 1))


def cpu_rows(latent_pixels: int) -> int:
    return max(1, CPU_LATENT_PIXELS // latent_pixels)


class PassSizer:
    """The rows of each pass of one policy update, and gradient checkpointing while it needs it."""

    def __init__(self, train_batch: int, unet, largest_pass: int, latent_pixels: int, memory: DeviceMemory | None = None,
                 checkpointing: bool = False):
        """``largest_pass``: the rows between two optimizer steps, which no pass exceeds.

        ``latent_pixels``: h x w of a latent. ``memory`` stands in for the device's
        counters (tests); by default they are read on CUDA when ``train_batch`` is AUTO.
        ``checkpointing``: gradient checkpointing from the first pass on (rows are then measured with it).
        """
        if memory is None and train_batch == AUTO and unet.device.type == "cuda":
            memory = CudaMemory(unet.device)
        self.unet = unet
        self.largest_pass = largest_pass
        self.memory = memory if train_batch == AUTO else None
        self.rows: int | None = train_batch or (None if self.memory else cpu_rows(latent_pixels))  # None: measuring a row
        self.passes = 0
        self.checkpointing = False  # turned on here, so turned off again in close()
        if checkpointing and not self._checkpointing_on():
            self._turn_on_checkpointing("asked for from the start")

    def next_rows(self, remaining: int) -> int:
        return min(remaining, self.rows or 1)

    def start_pass(self) -> None:
        if self.rows is None:
            self.memory.start_pass()

    def end_pass(self, rows: int) -> None:
        self.passes += 1
        if self.rows is not None:
            return
        row_bytes = self.memory.pass_peak() // rows
        available = self.memory.available()
        fit = rows_that_fit(available, row_bytes)
        if fit < min(SMALLEST_USEFUL_ROWS, self.largest_pass) and not self._checkpointing_on():
            self._turn_on_checkpointing(f"only {fit} row(s) of {row_bytes / 2**20:.0f} MiB fit in {available / 2**30:.2f} GiB")
            return
        self.rows = max(1, fit)
        log.info("policy update: %d rows a pass (a row measured at %.0f MiB, %.2f GiB free, gradient checkpointing %s)",
                 min(self.rows, self.largest_pass), row_bytes / 2**20, available / 2**30, "on" if self._checkpointing_on() else "off")

    def retry_with_checkpointing(self) -> bool:
        """After the update's first pass ran out of memory: whether it may run again with checkpointing on.

        Only the first pass: it started from no gradient, so setting the gradients to
        None undoes whatever part of its backward ran. A later pass's failure is the
        caller's out-of-memory error.
        """
        if self.memory is None or self.passes > 0 or self._checkpointing_on():
            return False
        self._turn_on_checkpointing("one row did not fit")
        return True

    def close(self) -> None:
        if self.checkpointing:
            self.unet.disable_gradient_checkpointing()
            self.checkpointing = False

    def _checkpointing_on(self) -> bool:
        return bool(self.unet.is_gradient_checkpointing)

    def _turn_on_checkpointing(self, why: str) -> None:
        log.info("policy update: %s; gradient checkpointing on", why)
        self.unet.enable_gradient_checkpointing()
        self.checkpointing = True
