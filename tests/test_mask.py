"""Mask stage: CLM bit logic, dilation, S1 pass-through, CSV (docs/contracts.md 1b)."""

from __future__ import annotations

import affine
import numpy as np
import pandas as pd
import pytest

from gpvae.errors import InputError
from gpvae.io.cube import write_cube
from gpvae.io.maskfile import open_mask
from gpvae.preprocess.mask import clm_cloud, compute_mask, dilate, disk

CRS = "EPSG:32631"
TRANSFORM = affine.Affine(10.0, 0.0, 300000.0, 0.0, -10.0, 4800090.0)
TIMES = np.array(["2022-01-05T10:54", "2022-01-15T10:54"], "datetime64[ns]")


def s2_cube(path, quality, valid=None):
    nt, h, w = quality.shape
    valid = np.ones((nt, h, w), np.uint8) if valid is None else valid
    return write_cube(path, data=np.full((nt, 10, h, w), 0.1, np.float32), valid=valid,
                      times=TIMES[:nt], bands=["B02", "B03", "B04", "B05", "B06", "B07", "B08",
                                               "B8A", "B11", "B12"],
                      crs=CRS, transform=TRANSFORM, sensor="S2", tile="T31TCJ",
                      radiometry="surface_reflectance", quality=quality)


def test_clm_bits_select_flags():
    clm = np.array([0, 1, 2, 32, 33, 128], np.uint8)
    assert clm_cloud(clm, [0]).tolist() == [False, True, False, False, True, False]
    assert clm_cloud(clm, [5]).tolist() == [False, False, False, True, True, False]
    assert clm_cloud(clm, [1, 7]).tolist() == [False, False, True, False, False, True]
    assert not clm_cloud(clm, []).any()


def test_dilation_grows_by_radius():
    m = np.zeros((9, 9), bool)
    m[4, 4] = True
    d1, d2 = dilate(m, 1), dilate(m, 2)
    assert d1.sum() == 5 and d1[3, 4] and not d1[3, 3]          # 4-neighbourhood disk
    assert d2[4, 6] and d2[3, 3] and not d2[2, 2] and not d2[4, 7]
    assert (dilate(m, 0) == m).all() and disk(2).sum() == 13


def test_mask_and_csv(tmp_path):
    h = w = 9
    q = np.zeros((2, h, w), np.uint8)
    q[0, 4, 4] = 0b1        # cloud (bit 0) at the centre on date 0
    q[1, 0, 0] = 0b100000   # bit 5 only: not selected by bits [0]
    valid = np.ones((2, h, w), np.uint8)
    valid[1, :, 8] = 0      # last column no data on date 1
    cube = s2_cube(tmp_path / "S2.nc", q, valid)
    out = compute_mask(cube, tmp_path / "m" / "S2.nc", tmp_path / "m" / "S2_cloud_cover.csv",
                       clm_bits=[0], dilation_px=1)
    m = open_mask(out)["valid"].values
    assert m.dtype == np.uint8
    assert m[0].sum() == h * w - 5 and not m[0, 3:6, 4].any() and not m[0, 4, 3:6].any()
    assert m[1, 0, 0] == 1 and m[1].sum() == h * w - h
    ds = open_mask(out)
    assert "CLM bits [0]" in ds.attrs["mask_policy"] and int(ds.attrs["dilation_px"]) == 1
    csv = pd.read_csv(tmp_path / "m" / "S2_cloud_cover.csv")
    assert list(csv.columns) == ["date", "tile", "sensor", "valid_fraction", "cloud_fraction",
                                 "nodata_fraction"]
    assert csv["date"].tolist() == ["2022-01-05", "2022-01-15"]
    assert csv.loc[0, "cloud_fraction"] == pytest.approx(5 / 81, abs=1e-6)
    assert csv.loc[1, "nodata_fraction"] == pytest.approx(9 / 81, abs=1e-6)
    total = csv[["valid_fraction", "cloud_fraction", "nodata_fraction"]].sum(axis=1)
    assert np.allclose(total, 1, atol=1e-5)


def test_cloud_over_nodata_counts_as_nodata(tmp_path):
    q = np.full((2, 4, 4), 1, np.uint8)
    q[1] = 0  # a clear second date
    valid = np.zeros((2, 4, 4), np.uint8)
    valid[0, :2] = 1
    valid[1] = 1
    compute_mask(s2_cube(tmp_path / "S2.nc", q, valid), tmp_path / "m.nc", tmp_path / "m.csv")
    row = pd.read_csv(tmp_path / "m.csv").iloc[0]
    assert row["cloud_fraction"] == pytest.approx(0.5) and row["valid_fraction"] == 0


def test_all_cloud_cube_stops_with_no_output(tmp_path):
    cube = s2_cube(tmp_path / "S2.nc", np.full((2, 4, 4), 1, np.uint8))
    with pytest.raises(InputError, match=r"no usable observation.*cloud 100%.*fix: check mask"):
        compute_mask(cube, tmp_path / "m.nc", tmp_path / "m.csv")
    assert not (tmp_path / "m.nc").exists() and not (tmp_path / "m.csv").exists()


def test_s1_mask_is_cube_valid(tmp_path):
    rng = np.random.default_rng(0)
    valid = rng.integers(0, 2, (2, 5, 5)).astype(np.uint8)
    cube = write_cube(tmp_path / "S1_ASC.nc", data=np.ones((2, 2, 5, 5), np.float32),
                      valid=valid, times=TIMES, bands=["VV", "VH"], crs=CRS,
                      transform=TRANSFORM, sensor="S1_ASC", tile="T31TCJ",
                      radiometry="sigma0_linear")
    out = compute_mask(cube, tmp_path / "m.nc", tmp_path / "m.csv", dilation_px=3)
    assert np.array_equal(open_mask(out)["valid"].values, valid)
    assert (pd.read_csv(tmp_path / "m.csv")["cloud_fraction"] == 0).all()


def test_bad_bits_no_output(tmp_path):
    cube = s2_cube(tmp_path / "S2.nc", np.zeros((1, 4, 4), np.uint8))
    with pytest.raises(InputError, match="field: clm_bits"):
        compute_mask(cube, tmp_path / "m.nc", tmp_path / "m.csv", clm_bits=[9])
    assert not (tmp_path / "m.nc").exists() and not (tmp_path / "m.csv").exists()


def test_missing_cube(tmp_path):
    with pytest.raises(InputError) as e:
        compute_mask(tmp_path / "S2.nc", tmp_path / "m.nc", tmp_path / "m.csv")
    assert "S2.nc" in str(e.value)
    assert not (tmp_path / "m.nc").exists()
