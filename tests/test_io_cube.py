"""Canonical cube writer/opener (docs/contracts.md section 1)."""

from __future__ import annotations

import json

import affine
import netCDF4
import numpy as np
import pytest
import rasterio.crs

import gpvae
from gpvae.errors import InputError
from gpvae.io.cube import cube_grid, open_cube, pixel_centres, write_cube

CRS = "EPSG:32631"
TRANSFORM = affine.Affine(10.0, 0.0, 300000.0, 0.0, -10.0, 4800020.0)


def cube(path, rng, nt=3, **kw):
    args = dict(data=rng.uniform(0, 0.5, (nt, 2, 6, 4)).astype(np.float32),
                valid=rng.integers(0, 2, (nt, 6, 4)).astype(np.uint8),
                times=np.datetime64("2022-01-01T10:00") + np.arange(nt) * np.timedelta64(5, "D"),
                bands=["VV", "VH"], crs=CRS, transform=TRANSFORM, sensor="S1_ASC",
                tile="T31TCJ", radiometry="sigma0_linear",
                per_date={"platform": ["s1a"] * nt, "orbit_direction": ["ASC"] * nt,
                          "relative_orbit": [30] * nt},
                attrs={"reader": "test", "source_files": ["a.tif", "b.tif"]})
    args.update(kw)
    return write_cube(path, **args), args


def test_round_trip_and_contract(tmp_path):
    rng = np.random.default_rng(0)
    path, args = cube(tmp_path / "c.nc", rng)
    args["data"][0, 1, 2, 3] = np.nan
    write_cube(path, **args)
    ds = open_cube(path)
    assert ds["data"].dims == ("time", "band", "y", "x") and ds["data"].dtype == np.float32
    assert np.array_equal(ds["data"].values, args["data"], equal_nan=True)
    assert ds["valid"].dtype == np.uint8 and np.array_equal(ds["valid"].values, args["valid"])
    assert np.array_equal(ds["time"].values, args["times"].astype("datetime64[ns]"))
    assert list(ds["band"].values) == ["VV", "VH"]
    assert list(ds["orbit_direction"].values) == ["ASC"] * 3
    assert ds["relative_orbit"].dtype == np.int16
    assert ds["data"].attrs["grid_mapping"] == "spatial_ref"
    assert "UTM zone 31N" in ds["spatial_ref"].attrs["crs_wkt"]
    assert ds.attrs["gpvae_version"] == gpvae.__version__
    assert json.loads(ds.attrs["source_files"]) == ["a.tif", "b.tif"]
    # pixel centres: half a pixel in from the corner
    assert ds["x"].values[0] == 300005.0 and ds["y"].values[0] == 4800015.0
    crs, transform, h, w = cube_grid(ds)
    assert crs == rasterio.crs.CRS.from_user_input(CRS) and transform == TRANSFORM
    assert (h, w) == (6, 4)
    with netCDF4.Dataset(path) as nc:   # compressed and chunked
        assert nc["data"].filters()["zlib"] and nc["data"].chunking()[0] == 1


def test_quality_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    q = rng.integers(0, 256, (2, 6, 4)).astype(np.uint8)
    path, _ = cube(tmp_path / "s2.nc", rng, nt=2, quality=q)
    assert np.array_equal(open_cube(path)["quality"].values, q)


def test_pixel_centres_negative_y_step():
    y, x = pixel_centres(TRANSFORM, 2, 3)
    assert np.allclose(x, [300005, 300015, 300025]) and np.allclose(y, [4800015, 4800005])


def test_times_must_increase(tmp_path):
    rng = np.random.default_rng(2)
    times = np.array(["2022-01-05", "2022-01-01", "2022-01-09"], "datetime64[ns]")
    with pytest.raises(ValueError, match="increasing"):
        cube(tmp_path / "c.nc", rng, times=times)
    assert not (tmp_path / "c.nc").exists() and list(tmp_path.iterdir()) == []


def test_open_missing_file(tmp_path):
    with pytest.raises(InputError) as e:
        open_cube(tmp_path / "none.nc")
    assert "none.nc" in str(e.value) and "extract" in str(e.value)


def test_open_rejects_missing_variable(tmp_path):
    rng = np.random.default_rng(3)
    path, _ = cube(tmp_path / "c.nc", rng)
    with netCDF4.Dataset(path, "a") as nc:
        nc.renameVariable("valid", "mask")
    with pytest.raises(InputError) as e:
        open_cube(path)
    assert "c.nc" in str(e.value) and "field: valid" in str(e.value)


def test_open_rejects_wrong_bands_for_sensor(tmp_path):
    rng = np.random.default_rng(4)
    path, _ = cube(tmp_path / "c.nc", rng, sensor="S2", radiometry="surface_reflectance")
    with pytest.raises(InputError) as e:
        open_cube(path)
    assert "field: band" in str(e.value)
