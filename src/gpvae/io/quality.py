"""Turn a cube's raw ``quality`` layer into an invalid (cloud, shadow...) mask by its kind.

Readers store the producer's quality byte untouched with the dataset attribute
``quality_kind``; the mask stage calls :func:`invalid_from_quality`. Kinds:

- ``theia_clm``: Theia/MAJA CLM bits; invalid when any of ``clm_bits`` is set.
- ``scl``: Sen2Cor scene classification; invalid when the class is in ``scl_classes``.
- ``bits``: generic bit field; invalid when any bit in attr ``quality_invalid`` is set.
- ``classes``: generic classes; invalid when the class is in attr ``quality_invalid``.
- ``boolean``: 1 = invalid (readers normalise boolean masks to this).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import numpy as np
import xarray as xr

from gpvae.errors import InputError

#: Quality kinds a cube may declare.
QUALITY_KINDS = ("theia_clm", "scl", "bits", "classes", "boolean")
#: Sen2Cor SCL classes masked by default (iota2): no data, saturated, cloud shadow,
#: cloud medium / high probability, thin cirrus.
DEFAULT_SCL_INVALID: tuple[int, ...] = (0, 1, 3, 8, 9, 10)
#: Theia CLM bits masked by default: bit 0 = all clouds except the thinnest + all shadows.
DEFAULT_CLM_BITS: tuple[int, ...] = (0,)


def any_bit_set(values: np.ndarray, bits: Iterable[int]) -> np.ndarray:
    """Boolean: (values AND sum_k 2^bit_k) != 0."""
    mask = 0
    for bit in bits:
        if not 0 <= int(bit) < 63:
            raise InputError(f"bit index {bit} out of range", field="bits",
                             fix="give bit positions 0 (least significant) and up")
        mask |= 1 << int(bit)
    return (np.asarray(values).astype(np.int64) & mask) != 0


def in_classes(values: np.ndarray, classes: Iterable[int]) -> np.ndarray:
    """Boolean: value is one of ``classes``."""
    return np.isin(np.asarray(values), np.asarray(list(classes), dtype=np.int64))


def quality_rule(ds: xr.Dataset) -> list[int]:
    """The ``quality_invalid`` attribute (JSON list of bits or classes) of a cube."""
    raw = ds.attrs.get("quality_invalid")
    if raw is None:
        raise InputError(f"cube quality kind {ds.attrs.get('quality_kind')!r} needs the "
                         "attribute quality_invalid", field="quality_invalid",
                         fix="re-extract the cube with a mask rule (mask.invalid in the config)")
    return [int(v) for v in (json.loads(raw) if isinstance(raw, str) else np.ravel(raw))]


def quality_invalid(q: np.ndarray, kind: str, *, clm_bits: Iterable[int] = DEFAULT_CLM_BITS,
                    scl_classes: Iterable[int] = DEFAULT_SCL_INVALID,
                    rule: Iterable[int] | None = None) -> np.ndarray:
    """Invalid flag of quality values ``q`` (any shape) of the given ``kind``.

    ``rule``: the cube's own bits or classes for the generic ``bits`` / ``classes`` kinds.
    """
    if kind == "theia_clm":
        return any_bit_set(q, clm_bits)
    if kind == "scl":
        return in_classes(q, scl_classes)
    if kind in ("bits", "classes"):
        if rule is None:
            raise InputError(f"quality kind {kind!r} needs its rule", field="quality_invalid",
                             fix="re-extract the cube with a mask rule (mask.invalid)")
        return any_bit_set(q, rule) if kind == "bits" else in_classes(q, rule)
    if kind == "boolean":
        return np.asarray(q) != 0
    raise InputError(f"unknown quality_kind {kind!r}; expected one of {QUALITY_KINDS}",
                     field="quality_kind", fix="re-extract the cube with this version")


def cube_quality_kind(ds: xr.Dataset) -> tuple[str | None, list[int] | None]:
    """(kind, generic rule) of a cube; (None, None) when it has no ``quality`` layer.

    A cube with ``quality`` but no ``quality_kind`` attribute is a Theia cube.
    """
    if "quality" not in ds:
        return None, None
    kind = ds.attrs.get("quality_kind", "theia_clm")
    return kind, quality_rule(ds) if kind in ("bits", "classes") else None


def invalid_from_quality(ds: xr.Dataset, *, clm_bits: Iterable[int] = DEFAULT_CLM_BITS,
                         scl_classes: Iterable[int] = DEFAULT_SCL_INVALID) -> xr.DataArray:
    """Invalid mask (time, y, x) bool from the cube's ``quality`` layer and ``quality_kind``.

    A cube without ``quality`` has nothing masked (all False).
    """
    kind, rule = cube_quality_kind(ds)
    if kind is None:
        return xr.zeros_like(ds["valid"], dtype=bool).rename("invalid")
    q = ds["quality"]
    out = quality_invalid(q.values, kind, clm_bits=clm_bits, scl_classes=scl_classes, rule=rule)
    return xr.DataArray(out, coords=q.coords, dims=q.dims, name="invalid")
