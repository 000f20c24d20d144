"""Feedback-guided initial noise: the next round starts near the noises that worked."""

from __future__ import annotations

import math

import torch


def refine_noise(source: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
    """z = sqrt(1 - eps^2) * source + eps * xi, xi ~ N(0, I): unit variance is kept."""
    xi = torch.randn(source.shape, generator=generator, dtype=torch.float32)
    return math.sqrt(1 - eps**2) * source.float().cpu() + eps * xi


def feedback_guided_noise(
    best_noise: torch.Tensor,
    good_noises: torch.Tensor,
    n: int,
    *,
    eps: float,
    best_ratio: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """``n`` initial noises: round(best_ratio * n) around the best, the rest around random good ones."""
    n_best = round(best_ratio * n)
    choice = torch.randint(len(good_noises), (n - n_best,), generator=generator)
    sources = torch.cat([best_noise.unsqueeze(0).expand(n_best, *best_noise.shape).cpu(), good_noises.cpu()[choice]])
    return refine_noise(sources, eps, generator)


def plain_noise(n: int, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    return torch.randn((n, *shape), generator=generator, dtype=torch.float32)
