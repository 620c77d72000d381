"""Quality layer -> invalid mask, by kind (theia_clm, scl, bits, classes, boolean)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from gpvae.errors import InputError
from gpvae.io.quality import DEFAULT_SCL_INVALID, invalid_from_quality

SHAPE = (3, 5, 7)


def cube(quality=None, **attrs) -> xr.Dataset:
    ds = xr.Dataset({"valid": (("time", "y", "x"), np.ones(SHAPE, np.uint8))},
                    coords={"time": np.arange(3), "y": np.arange(5.0), "x": np.arange(7.0)})
    if quality is not None:
        ds["quality"] = (("time", "y", "x"), quality.astype(np.uint8))
    ds.attrs.update(attrs)
    return ds


def random_bytes(seed=0):
    return np.random.default_rng(seed).integers(0, 256, SHAPE)


def test_theia_clm_bits_default_and_custom():
    q = random_bytes()
    # no quality_kind attr: a Theia cube, CLM bit 0 by default
    inv = invalid_from_quality(cube(q)).values
    np.testing.assert_array_equal(inv, q % 2 == 1)
    inv = invalid_from_quality(cube(q, quality_kind="theia_clm"), clm_bits=[5, 7]).values
    np.testing.assert_array_equal(inv, ((q >> 5) & 1 | (q >> 7) & 1).astype(bool))


def test_scl_classes():
    q = np.random.default_rng(1).integers(0, 12, SHAPE)
    ds = cube(q, quality_kind="scl")
    inv = invalid_from_quality(ds).values
    assert DEFAULT_SCL_INVALID == (0, 1, 3, 8, 9, 10)
    for c in range(12):
        assert (inv[q == c] == (c in DEFAULT_SCL_INVALID)).all()
    inv2 = invalid_from_quality(ds, scl_classes=[2, 3, 8, 9, 10]).values  # sits also masks 2
    assert inv2[q == 2].all() and not inv2[q == 0].any()


def test_generic_bits_classes_boolean():
    q = random_bytes(2)
    bits = invalid_from_quality(cube(q, quality_kind="bits",
                                     quality_invalid=json.dumps([1, 6]))).values
    np.testing.assert_array_equal(bits, (q & 0b01000010) != 0)
    cls = invalid_from_quality(cube(q, quality_kind="classes",
                                    quality_invalid=json.dumps([7, 200]))).values
    np.testing.assert_array_equal(cls, (q == 7) | (q == 200))
    b = (q > 128).astype(np.uint8)
    np.testing.assert_array_equal(invalid_from_quality(cube(b, quality_kind="boolean")).values,
                                  b == 1)


def test_no_quality_masks_nothing_and_keeps_coords():
    inv = invalid_from_quality(cube())
    assert inv.dtype == bool and not inv.values.any() and inv.dims == ("time", "y", "x")


def test_bad_kind_or_missing_rule():
    with pytest.raises(InputError, match="unknown quality_kind"):
        invalid_from_quality(cube(random_bytes(), quality_kind="fmask"))
    with pytest.raises(InputError, match="quality_invalid"):
        invalid_from_quality(cube(random_bytes(), quality_kind="bits"))
