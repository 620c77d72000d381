"""Independent, reproducible random streams for each part of the simulation."""

from __future__ import annotations

import zlib

import numpy as np


def rng_for(seed: int, *keys: str | int) -> np.random.Generator:
    """Generator seeded by (seed, keys): one stream per (tile, year, component), so changing
    one component (e.g. clouds) never shifts the random draws of another."""
    words = [int(seed)] + [zlib.crc32(k.encode()) if isinstance(k, str) else int(k)
                           for k in keys]
    return np.random.default_rng(np.random.SeedSequence(words))
