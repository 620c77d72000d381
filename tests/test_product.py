"""Tile product encodings (gpvae.io.product): packed values round-trip within half a
quantisation step, through the netCDF file and xarray's CF decoding too."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from gpvae.errors import InputError
from gpvae.io.ncstream import VarSpec, stream_netcdf
from gpvae.io.product import (
    EMBEDDING_PACKING,
    EMBEDDING_VAR_PACKING,
    Packing,
    check_products,
    date_indices,
    sensor_packing,
    std_packing,
)
from gpvae.io.sensors import builtin


@pytest.mark.parametrize("packing, lo, hi", [
    (EMBEDDING_PACKING, -30.0, 30.0), (EMBEDDING_VAR_PACKING, 0.0, 13.0),
    (sensor_packing(builtin("S2"), ["B02", "B12"]), -0.5, 1.6),
    (std_packing(sensor_packing(builtin("S2"), ["B04"])), 0.0, 0.5),
    (Packing("int16", 0.01, 300.0), 0.0, 600.0)])
def test_pack_round_trip_within_half_a_step(packing, lo, hi):
    rng = np.random.default_rng(0)
    x = rng.uniform(lo, hi, 10_000).astype(np.float32)
    x[:7] = np.nan
    packed, clipped = packing.pack(x)
    assert packed.dtype == np.dtype(packing.dtype) and clipped == 0
    assert (packed[:7] == packing.fill).all() and (packed[7:] != packing.fill).all()
    back = packing.unpack(packed)
    assert np.isnan(back[:7]).all()
    assert np.abs(back[7:] - x[7:]).max() <= packing.scale / 2 * (1 + 1e-3) + 1e-6 * hi


def test_out_of_range_values_are_clipped_and_counted():
    packed, clipped = EMBEDDING_PACKING.pack(np.array([40.0, -40.0, 1.0, np.inf]))
    assert clipped == 2 and packed[:2].tolist() == [32767, -32767]
    assert packed[3] == EMBEDDING_PACKING.fill  # not finite: missing
    assert EMBEDDING_PACKING.unpack(packed)[2] == pytest.approx(1.0)
    packed, clipped = EMBEDDING_VAR_PACKING.pack(np.array([-1.0, 20.0]))
    assert clipped == 2 and packed.tolist() == [0, 65534]  # 65535 is the fill value


def test_netcdf_round_trip_through_cf_decoding(tmp_path):
    """Packed on disk (int16 + scale_factor / add_offset + _FillValue), xarray gives back
    float values within half a step and NaN where the value was missing."""
    rng = np.random.default_rng(1)
    refl = rng.uniform(-0.1, 1.2, (3, 4, 5)).astype(np.float32)
    refl[0, 0, 0] = np.nan
    packing = sensor_packing(builtin("S2"), ["B04"])
    skeleton = xr.Dataset(coords={"time": np.arange(3), "y": np.arange(4), "x": np.arange(5)})
    spec = VarSpec(("time", "y", "x"), packing.dtype, (1, 4, 5), packing.attrs(),
                   fill=packing.fill, complevel=4, shuffle=True)
    with stream_netcdf(tmp_path / "p.nc", skeleton, {"refl": spec}) as variables:
        variables["refl"][:] = packing.pack(refl)[0]
    with xr.open_dataset(tmp_path / "p.nc") as ds:
        assert ds["refl"].encoding["dtype"] == np.dtype("int16")
        back = ds["refl"].values
    assert np.isnan(back[0, 0, 0]) and np.isfinite(back.ravel()[1:]).all()
    assert np.nanmax(np.abs(back - refl)) <= 0.5e-4 * (1 + 1e-3)


def test_sensor_steps_follow_the_registry_ranges():
    assert sensor_packing(builtin("S2"), ["B02", "B08"]).scale == pytest.approx(1e-4)
    assert sensor_packing(builtin("LANDSAT"), ["SR_B4"]).scale == pytest.approx(5e-5)
    assert sensor_packing(builtin("MOD13Q1"), ["NDVI", "EVI"]).scale == pytest.approx(1e-4)
    sar = sensor_packing(builtin("S1_ASC"), ["VV"])  # open range: kept as float32
    assert not sar.packed and sar.pack(np.array([0.1, np.nan]))[0].dtype == np.float32


def test_products_dates_and_geotiffs_are_checked():
    assert check_products(None) == (["embedding", "embedding_var", "gapfilled",
                                     "gapfilled_std", "class_map"],
                                    ["class_map", "embedding_rgb", "rgb"])
    assert check_products(["class_map", "embedding"], ["embedding_rgb"])[0] == [
        "embedding", "class_map"]
    with pytest.raises(InputError, match="unknown products"):
        check_products(["embeddings"])
    with pytest.raises(InputError, match="need the products"):
        check_products(["class_map"], ["rgb"])
    ref = np.arange(0.0, 370.0, 10.0)
    assert date_indices(ref, None).tolist() == list(range(37))
    assert date_indices(ref, [92, 181, 179]).tolist() == [9, 18]
    with pytest.raises(InputError, match="empty"):
        date_indices(ref, [])
