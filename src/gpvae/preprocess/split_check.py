"""Degenerate splits: classes a parcel-grouped split leaves out of val or test, empty splits.

A class needs at least one parcel per split with a positive fraction (>= 3 for
train/val/test); with fewer, :func:`gpvae.preprocess.split.allocate` leaves it out of the
later splits, and the classifiers are then never scored on it. Used at start-up from the
parcels' attribute table (:func:`expected_gaps`) and by the sample and table stages on the
split they made (:func:`check_coverage`).
"""

from __future__ import annotations

import logging

import numpy as np

from gpvae.errors import InputError
from gpvae.preprocess.split import allocate

log = logging.getLogger(__name__)

FIX = ("add parcels of those classes, merge them into other classes, or leave them out "
       "with sample.classes")


def expected_gaps(parcels_per_class: dict[str, int], fractions: dict[str, float]
                  ) -> dict[str, list[str]]:
    """Split -> classes that get no parcel in it, from the number of parcels per class."""
    names = list(fractions)
    values = [float(fractions[k]) for k in names]
    gaps: dict[str, list[str]] = {}
    for cls, n in sorted(parcels_per_class.items()):
        for name, count, frac in zip(names, allocate(int(n), values), values, strict=True):
            if frac > 0 and count == 0:
                gaps.setdefault(name, []).append(cls)
    return gaps


def describe_gaps(gaps: dict[str, list[str]], parcels_per_class: dict[str, int] | None = None
                  ) -> list[str]:
    """One warning per split that lacks classes, naming them (and their parcel counts)."""
    out = []
    for split, classes in gaps.items():
        named = [f"{c} ({parcels_per_class[c]} parcel{'' if parcels_per_class[c] == 1 else 's'})"
                 if parcels_per_class else c for c in classes[:10]]
        more = f" and {len(classes) - 10} more" if len(classes) > 10 else ""
        out.append(f"classes {', '.join(named)}{more} will have no sample in split "
                   f"{split!r} (a class needs one parcel per split). Fix: {FIX}")
    return out


def empty_splits(split_sizes: dict[str, int], fractions: dict[str, float]) -> list[str]:
    """Splits with a positive fraction and no sample at all."""
    return [s for s, f in fractions.items() if float(f) > 0 and split_sizes.get(s, 0) == 0]


def check_coverage(class_names: list[str], label: np.ndarray, split: np.ndarray,
                   fractions: dict[str, float] | None, *, file: object = None) -> list[str]:
    """Check the split the sample/table stage made: InputError when a split that should
    hold samples (positive fraction) is empty; warnings (logged and returned) for classes
    missing from a split."""
    label, split = np.asarray(label), np.asarray(split).astype(str)
    sizes = {s: int((split == s).sum()) for s in set(split.tolist())}
    if fractions is not None:
        empty = empty_splits(sizes, fractions)
        if empty:
            raise InputError(f"split {'/'.join(empty)} gets no sample ({sizes}): too few "
                             f"parcels per class for the fractions {fractions}", file=file,
                             field="sample.split",
                             fix="add parcels (a class needs one parcel per split, 3 for "
                                 f"train/val/test), or set the fraction of {'/'.join(empty)} "
                                 "to 0")
    gaps = {}
    for s in (fractions or dict.fromkeys(sorted(sizes), 1.0)):
        present = set(label[split == s].tolist())
        missing = [c for k, c in enumerate(class_names) if k not in present]
        if missing and (fractions is None or float(fractions[s]) > 0):
            gaps[s] = missing
    warnings = describe_gaps(gaps)
    for text in warnings:
        log.warning("%s", text)
    return warnings
