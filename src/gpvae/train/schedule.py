"""Learning-rate schedule: linear warm-up, then cosine decay to a floor."""

from __future__ import annotations

import math


def lr_factor(step: int, total: int, warmup: int, floor: float = 0.1) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based): (step+1)/warmup
    during warm-up, then floor + (1 - floor) (1 + cos(pi p)) / 2 with p the share of the
    remaining steps done (Loshchilov & Hutter 2017, without restarts)."""
    if step < warmup:
        return (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(total - warmup, 1))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * p))
