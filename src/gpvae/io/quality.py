"""Quality rules: an input's quality variables -> the cube's ``quality`` byte -> invalid flags.

Readers apply the config's mask rules (:class:`MaskRules`) and store the producer's quality
byte untouched (or, for several combined rules, the evaluated flag) with the dataset
attribute ``quality_kind``; the mask stage calls :func:`invalid_from_quality`. Kinds:

- ``theia_clm``: Theia/MAJA CLM bits; invalid when any of ``clm_bits`` is set.
- ``scl``: Sen2Cor scene classification; invalid when the class is in ``scl_classes``.
- ``bits``: generic bit field; invalid when any bit in attr ``quality_invalid`` is set.
- ``classes``: generic classes; invalid when the class is in attr ``quality_invalid``.
- ``boolean``: 1 = invalid (readers normalise boolean masks to this).
"""

from __future__ import annotations

import dataclasses
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


@dataclasses.dataclass(frozen=True)
class MaskRule:
    """Quality variable of an input and its rule: kind (:data:`QUALITY_KINDS`), the invalid
    bits or classes, and for ``boolean`` which value means invalid."""

    variable: str
    kind: str
    invalid: tuple[int, ...] = ()
    invalid_if: bool = True

    @classmethod
    def from_config(cls, mask: dict, *, file: object = None, field: str = "mask") -> MaskRule:
        """Parse ``{"variable", "kind", "invalid": [...], "invalid_if": true}``."""
        fix = ("give mask as {variable: NAME, kind: boolean|classes|bits|scl|theia_clm, "
               "invalid: [codes or bits]} (or a list of such rules)")
        if not isinstance(mask, dict) or "variable" not in mask or mask.get(
                "kind") not in QUALITY_KINDS:
            raise InputError(f"bad mask rule {mask}", file=file, field=field, fix=fix)
        invalid = tuple(int(v) for v in mask.get("invalid", ()))
        if mask["kind"] in ("classes", "bits") and not invalid:
            raise InputError(f"mask kind {mask['kind']} needs a non-empty invalid list",
                             file=file, field=f"{field}.invalid", fix=fix)
        return cls(variable=str(mask["variable"]), kind=str(mask["kind"]), invalid=invalid,
                   invalid_if=bool(mask.get("invalid_if", True)))

    def stored_kind(self, values: xr.DataArray) -> str:
        """Kind of the stored quality byte: the rule's own kind when the raw codes fit a byte
        (and bit rules use bits 0-7), else ``boolean`` (the rule is evaluated on read)."""
        if self.kind in ("boolean", "scl", "theia_clm"):
            return self.kind  # byte codes by definition
        lo, hi = value_range(values)
        if lo >= 0 and hi <= 255 and not (self.kind == "bits" and max(self.invalid) > 7):
            return self.kind
        return "boolean"

    def evaluate(self, raw: np.ndarray) -> np.ndarray:
        """Invalid flag of raw quality codes (``scl`` / ``theia_clm`` rules without an
        ``invalid`` list use the default classes / bits)."""
        raw = np.nan_to_num(np.asarray(raw, dtype=np.float64), nan=0.0).astype(np.int64)
        if self.kind == "boolean":
            return (raw != 0) == self.invalid_if
        if self.kind in ("bits", "theia_clm"):
            return any_bit_set(raw, self.invalid or DEFAULT_CLM_BITS)
        return in_classes(raw, self.invalid or DEFAULT_SCL_INVALID)

    def stored(self, raw: np.ndarray, kind: str) -> np.ndarray:
        """Quality byte of raw codes for a stored ``kind`` (boolean: 1 = invalid)."""
        if kind != "boolean":
            return np.nan_to_num(np.asarray(raw, dtype=np.float64), nan=0.0).astype(np.uint8)
        return self.evaluate(raw).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class MaskRules:
    """One or several quality rules of an input, combined: invalid where ANY rule says so
    (e.g. Landsat QA_PIXEL cloud bits and QA_RADSAT saturation bits).

    One rule keeps the producer's byte (:meth:`MaskRule.stored_kind`), so the mask stage's
    ``clm_bits`` / ``scl_classes`` apply; several rules are evaluated at extraction and stored
    as one boolean flag (give ``invalid`` in scl / theia_clm rules of a list)."""

    rules: tuple[MaskRule, ...]

    @classmethod
    def from_config(cls, mask: dict | list | None, *, file: object = None) -> MaskRules | None:
        """Parse one rule (a mapping) or a list of rules; None or an empty list: no mask."""
        if not mask:
            return None
        items = mask if isinstance(mask, list) else [mask]
        return cls(tuple(MaskRule.from_config(m, file=file, field=f"mask[{i}]"
                                              if isinstance(mask, list) else "mask")
                         for i, m in enumerate(items)))

    @property
    def variables(self) -> list[str]:
        return [r.variable for r in self.rules]

    def stored_kind(self, ds: xr.Dataset) -> str:
        """Kind of the stored quality byte (see the class docstring)."""
        if len(self.rules) == 1:
            return self.rules[0].stored_kind(ds[self.rules[0].variable])
        return "boolean"

    def stored(self, planes: dict[str, np.ndarray], kind: str) -> np.ndarray:
        """Quality byte (y, x) from each rule variable's raw plane."""
        if len(self.rules) == 1:
            rule = self.rules[0]
            return rule.stored(planes[rule.variable], kind)
        invalid = np.zeros(np.shape(next(iter(planes.values()))), bool)
        for rule in self.rules:
            invalid |= rule.evaluate(planes[rule.variable])
        return invalid.astype(np.uint8)

    def attrs(self, kind: str) -> dict[str, str]:
        """Cube attributes describing the stored quality byte."""
        out = {"quality_kind": kind}
        if kind in ("bits", "classes"):
            out["quality_invalid"] = json.dumps(list(self.rules[0].invalid))
        if len(self.rules) > 1:
            out["quality_rules"] = json.dumps([dataclasses.asdict(r) for r in self.rules])
        return out


def value_range(values: xr.DataArray, max_bytes: int = 32 * 2**20) -> tuple[float, float]:
    """(min, max) of a lazily opened variable, NaN ignored, read in slabs of about
    ``max_bytes`` along its first two dimensions (never the whole variable at once)."""
    if values.ndim == 0 or values.size == 0:
        v = np.asarray(values.values, dtype=np.float64)
        return (float(np.nanmin(v)), float(np.nanmax(v))) if v.size else (np.nan, np.nan)
    lo, hi = np.inf, -np.inf
    row = values.dtype.itemsize * int(np.prod(values.shape[1:]))
    lead = values.dims[0]
    step0 = max(1, max_bytes // max(row, 1))
    second = values.dims[1] if values.ndim > 1 and step0 == 1 else None
    step1 = (max(1, max_bytes * values.shape[1] // row) if second else None)
    for i in range(0, values.shape[0], step0):
        sel = {lead: slice(i, i + step0)}
        parts = ([values.isel(sel)] if second is None else
                 [values.isel({**sel, second: slice(j, j + step1)})
                  for j in range(0, values.shape[1], step1)])
        for part in parts:
            v = np.asarray(part.values, dtype=np.float64)
            if np.isfinite(v).any():
                lo, hi = min(lo, float(np.nanmin(v))), max(hi, float(np.nanmax(v)))
    return (lo, hi) if lo <= hi else (np.nan, np.nan)


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
