"""Rewards for every image of a round, from the encoder or from the raw labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def similarity_rewards(features: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """r = (1 + cos(f(z), f(z_ref))) / 2 for each row of ``features``; graded, in [0, 1]."""
    return (1 + F.cosine_similarity(features, reference.reshape(1, -1), dim=-1)) / 2


def binary_rewards(good: torch.Tensor) -> torch.Tensor:
    """The ablation "DDPO on raw labels": 1 for a good image, 0 otherwise."""
    return good.float()


def normalized_advantages(rewards: torch.Tensor, clip: float) -> torch.Tensor:
    """Rewards standardized over the batch, clipped to +-clip (zero when all rewards agree)."""
    centered = rewards - rewards.mean()
    std = rewards.std(unbiased=False)
    if std < 1e-8:
        return torch.zeros_like(rewards)
    return (centered / std).clamp(-clip, clip)


def label_agreement(rewards: torch.Tensor, good: torch.Tensor) -> float:
    """Share of (good, not good) pairs in which the good image has the higher reward; a tie counts half.

    1.0: the rewards order the round exactly as its labels do; 0.5: no better than chance.
    """
    good_rewards, bad_rewards = rewards[good].reshape(-1, 1), rewards[~good].reshape(1, -1)
    if good_rewards.numel() == 0 or bad_rewards.numel() == 0:
        return float("nan")
    wins = (good_rewards > bad_rewards).float() + 0.5 * (good_rewards == bad_rewards).float()
    return float(wins.mean())


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks from 0, ties sharing their mean rank (a judge's graded scores tie often)."""
    order = values.argsort()
    ranks = torch.empty(len(values), dtype=torch.float64)
    ranks[order] = torch.arange(len(values), dtype=torch.float64)
    for value in values.unique():
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two score vectors, ties sharing their mean rank; NaN when either is constant."""
    ra, rb = average_ranks(a), average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    norms = ra.norm() * rb.norm()
    return float((ra * rb).sum() / norms) if norms > 0 else float("nan")
