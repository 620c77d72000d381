"""Parcel-grouped train/val/test split, stratified by class."""

from __future__ import annotations

import math

import numpy as np

from gpvae.errors import InputError


def allocate(n: int, fractions: list[float]) -> list[int]:
    """Split ``n`` items by ``fractions`` (largest remainder).

    Every part with a positive fraction gets >= 1 item when n >= the number of such parts.
    """
    raw = [n * f for f in fractions]
    counts = [math.floor(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    positive = [i for i, f in enumerate(fractions) if f > 0]
    if n >= len(positive):
        for i in positive:
            if counts[i] == 0:
                counts[int(np.argmax(counts))] -= 1
                counts[i] = 1
    return counts


def split_parcels(parcel_ids: np.ndarray, classes: np.ndarray,
                  fractions: dict[str, float], seed: int | np.random.SeedSequence
                  ) -> dict[int, str]:
    """Assign each parcel to one split: per class, parcels shuffled and cut by ``fractions``.

    A class with at least as many parcels as splits gets at least one parcel in each split.
    """
    names = list(fractions)
    values = [float(fractions[k]) for k in names]
    if not names or min(values) < 0 or abs(sum(values) - 1) > 1e-6:
        raise InputError(f"split fractions {fractions} must be >= 0 and sum to 1",
                         field="split_fractions", fix="e.g. {train: 0.7, val: 0.15, test: 0.15}")
    rng = np.random.default_rng(seed)
    parcel_ids, classes = np.asarray(parcel_ids, np.int64), np.asarray(classes)
    out: dict[int, str] = {}
    for cls in sorted(set(classes.tolist())):
        ids = np.unique(parcel_ids[classes == cls])
        ids = rng.permutation(ids)
        start = 0
        for name, count in zip(names, allocate(len(ids), values), strict=True):
            out.update({int(i): name for i in ids[start:start + count]})
            start += count
    return out
