"""The seeded generators: every random draw of a session comes from one seeded by (seed, round, purpose).

Each generator is made fresh from the session's seed, the round and what it is
for, so a session reopened in a new process draws exactly what an uninterrupted
one would. The formula and the purposes' numbers are part of every stored
session: changing either changes what a resumed session draws.
"""

from __future__ import annotations

import torch

# Purposes of the seeded generators (see generator).
NOISE, STEPS, ENCODER, POLICY, INIT, SAMPLE, ALIGN = range(7)


def seed(base: int, round_: int, purpose: int) -> int:
    return (base * 1_000_003 + (round_ + 1) * 1_009 + purpose) % (2**63)


def generator(base: int, round_: int, purpose: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed(base, round_, purpose))
