"""The feedback-aligned encoder: a small CNN over final latents, trained with triplets.

The anchor is the best image, the positive a good one and the negative a bad
one; the distance is d(a, b) = (1 - cos(a, b)) / 2. Rewards use the backbone
features only (the projection head is dropped, as in contrastive learning).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

POOLING_GRIDS = {"grid": 4, "global": 1}  # cells per side the backbone averages its last feature map over


class FeedbackEncoder(nn.Module):
    """CNN backbone over a 4 x h x w latent, then an MLP projection head.

    ``pooling`` is how the backbone summarizes its last feature map: "grid" keeps a
    4 x 4 layout of averages, so where things are weighs in every feature; "global"
    averages over the whole map, so a feature says how much of something the image
    holds wherever it is (a count of objects becomes an amount).
    """

    def __init__(self, latent_channels: int = 4, width: int = 32, feature_dim: int = 256, embed_dim: int = 128,
                 pooling: str = "grid"):
        super().__init__()
        cells = POOLING_GRIDS[pooling]
        self.backbone = nn.Sequential(
            nn.Conv2d(latent_channels, width, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, width * 2, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(width * 2, width * 4, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.AdaptiveAvgPool2d(cells),
            nn.Flatten(),
            nn.Linear(width * 4 * cells * cells, feature_dim),
        )
        self.head = nn.Sequential(nn.SiLU(), nn.Linear(feature_dim, feature_dim), nn.SiLU(), nn.Linear(feature_dim, embed_dim))

    def features(self, latents: torch.Tensor) -> torch.Tensor:
        return self.backbone(latents.float())

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(latents))


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """d(a, b) = (1 - cos(a, b)) / 2, in [0, 1]."""
    return (1 - F.cosine_similarity(a, b, dim=-1)) / 2


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float) -> torch.Tensor:
    return F.relu(cosine_distance(anchor, positive) - cosine_distance(anchor, negative) + margin).mean()


def train_encoder(
    encoder: FeedbackEncoder,
    optimizer: torch.optim.Optimizer,
    best: torch.Tensor,
    good: torch.Tensor,
    bad: torch.Tensor,
    *,
    epochs: int,
    triplets: int,
    margin: float,
    generator: torch.Generator,
    on_progress: Callable[[int, int], None] | None = None,
    on_features: bool = False,
) -> list[float]:
    """Triplet-train ``encoder`` on one round's labels; returns the loss of each step.

    ``best`` is one latent [C, h, w]; ``good`` and ``bad`` are stacks of latents.
    Each step draws ``triplets`` positives and negatives uniformly with replacement.
    The loss is on the projection head's output; with ``on_features`` the same
    triplets' loss on the backbone features is added. Rewards are read from those
    features, and a head that separates the round's labels does not make them do so
    once earlier rounds have shaped the backbone.
    """
    device = next(encoder.parameters()).device
    # Each step embeds every labeled latent once and draws the triplets from those embeddings:
    # the same loss and gradients as embedding each drawn latent, at a fraction of the cost.
    latents = torch.cat([best.unsqueeze(0), good, bad]).to(device)
    n_good = len(good)
    losses = []
    encoder.train()
    if on_progress:
        on_progress(0, epochs)  # the stage's start, which a front end times it from
    for step in range(epochs):
        pos = torch.randint(n_good, (triplets,), generator=generator).to(device)
        neg = torch.randint(len(bad), (triplets,), generator=generator).to(device)
        features = encoder.features(latents)
        embeddings = encoder.head(features)
        anchor, good_emb, bad_emb = embeddings[:1], embeddings[1 : 1 + n_good], embeddings[1 + n_good :]
        loss = triplet_loss(anchor.expand(triplets, -1), good_emb[pos], bad_emb[neg], margin)
        if on_features:
            f_anchor, f_good, f_bad = features[:1], features[1 : 1 + n_good], features[1 + n_good :]
            loss = loss + triplet_loss(f_anchor.expand(triplets, -1), f_good[pos], f_bad[neg], margin)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if on_progress:
            on_progress(step + 1, epochs)
    encoder.eval()
    return losses
