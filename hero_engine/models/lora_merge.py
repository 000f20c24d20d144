"""Sample with the LoRA merged into the UNet's weights, then give the base weights back bit for bit.

Unmerged, every adapted layer runs its base matmul plus the two rank-r LoRA
matmuls (in float32, cast from the base precision and back) on every UNet call;
merged, it runs the base matmul alone. peft merges (``LoraLayer.merge``), but its
``unmerge`` subtracts the delta again, which in bfloat16 does not give back the
base weights: they would drift every round, and a resumed session would no
longer equal an uninterrupted one. So the adapted layers' base weights are
copied before merging and restored from the copy, and peft is told that nothing
is merged any more. The copy costs the adapted weights' size once (about 100 MB
for SD1.5's attention projections in bfloat16); its buffers are allocated on
first use and kept for the next round.

Merged weights are rounded once more to the base precision, so a merged sample
differs from an unmerged one in the last bits. A round's log-probs are PPO's old
log-probs, compared with the unmerged training path under a clip range of 1e-4.
Measured on the tiny and demo models (20 DDIM steps, LoRA on attention or on
every layer kind), the unmerged path's log-probs of merged-sampled steps differ
from the stored ones by at most 3e-6 in float32, but by 2e-3 to 6e-2 in bfloat16:
there the session recomputes the steps the update trains through its own path
(``old_log_probs``) before the update reads them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import torch

log = logging.getLogger(__name__)


def adapted_layers(unet) -> list:
    """The UNet's peft LoRA layers (Linear, and Conv2d when every layer kind is targeted)."""
    from peft.tuners.lora import LoraLayer

    return [module for module in unet.modules() if isinstance(module, LoraLayer)]


def base_weight(layer) -> torch.Tensor:
    return layer.get_base_layer().weight


def merges_weight_only(layer) -> bool:
    """True for plain LoRA: its merge changes the base weight and nothing else (no bias, no DoRA-like variant)."""
    return not any(layer.lora_bias.values()) and not layer.lora_variant


def copy_weights(layers: list, buffers: list[torch.Tensor] | None) -> list[torch.Tensor]:
    """The layers' base weights copied into ``buffers``, reallocated only where they no longer fit."""
    copies = []
    for i, layer in enumerate(layers):
        weight = base_weight(layer).detach()
        buffer = buffers[i] if buffers is not None else None
        if buffer is None or buffer.shape != weight.shape or buffer.dtype != weight.dtype or buffer.device != weight.device:
            buffer = torch.empty_like(weight)
        copies.append(buffer.copy_(weight))
    return copies


@torch.no_grad()
def restore_weights(layers: list, copies: list[torch.Tensor]) -> None:
    """Put the saved base weights back and clear peft's record of merged adapters, so it runs the LoRA unmerged again."""
    for layer, copy in zip(layers, copies, strict=True):
        base_weight(layer).copy_(copy)
        layer.merged_adapters.clear()


class LoraMerge:
    """Merges a UNet's active LoRA for sampling and restores its exact base weights afterwards."""

    def __init__(self, unet):
        self.layers = adapted_layers(unet)
        if not all(merges_weight_only(layer) for layer in self.layers):
            raise ValueError("merging for sampling handles plain LoRA only (no LoRA bias, no DoRA)")
        self._copies: list[torch.Tensor] | None = None  # the base weights, kept allocated across rounds

    @contextmanager
    def merged(self) -> Iterator[None]:
        """The UNet with its LoRA merged; on leaving, by return or by any exception, its base weights as before, bit for bit.

        Adapters that are disabled run the base weights already (and peft would unmerge
        a merged layer on its next call, lossily), and adapters already merged stay as
        they are: in both cases nothing is merged here.
        """
        if any(layer.disable_adapters or layer.merged for layer in self.layers):
            yield
            return
        if self._copies is None:
            size = sum(base_weight(layer).nbytes for layer in self.layers)
            log.info("keeping a copy of the %d LoRA-adapted base weights (%.1f MB) to sample merged", len(self.layers), size / 2**20)
        self._copies = copy_weights(self.layers, self._copies)
        try:
            for layer in self.layers:
                layer.merge(safe_merge=False)  # adds the float32 delta in place, rounding once to the base precision
            yield
        finally:
            restore_weights(self.layers, self._copies)
