"""Extract stage: Theia / S1Tiling folders -> canonical cubes (docs/contracts.md 0 -> 1)."""

from __future__ import annotations

import logging

import affine
import numpy as np
import pytest

from gpvae.errors import InputError
from gpvae.io.cube import cube_grid, open_cube
from gpvae.io.extract import extract_s1tiling, extract_s2_theia
from gpvae.io.s1tiling import write_s1tiling_image
from gpvae.io.sensors import S2_10M, S2_BANDS
from gpvae.io.theia import write_theia_product

CRS = "EPSG:32631"
TRANSFORM = affine.Affine(10.0, 0.0, 300000.0, 0.0, -10.0, 4800080.0)
TIMES = np.array(["2022-01-05T10:54:32.123", "2022-01-15T10:54:30.000",
                  "2022-02-04T10:54:31.500"], "datetime64[ms]")


def theia(root, rng, when, *, platform="SENTINEL2A", edg=None, transform=TRANSFORM, size=8):
    refl = {b: rng.uniform(0.01, 0.6, (size, size) if b in S2_10M else (size // 2, size // 2))
            .astype(np.float32) for b in S2_BANDS}
    clm = rng.choice(np.array([0, 1, 3, 32, 33], np.uint8), (size, size))
    edg = np.zeros((size, size), bool) if edg is None else edg
    p = write_theia_product(root, tile="T31TCJ", acquired=when, platform=platform,
                            reflectance=refl, clm_r1=clm, edg_r1=edg, crs=CRS,
                            transform=transform)
    return p, refl, clm


@pytest.fixture
def s2_dir(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "s2"
    made = [theia(root, rng, t, platform=pf) for t, pf in
            zip(TIMES, ["SENTINEL2A", "SENTINEL2B", "SENTINEL2A"], strict=True)]
    return root, made


def test_s2_round_trip(tmp_path, s2_dir):
    root, made = s2_dir
    out = extract_s2_theia(root, "T31TCJ", tmp_path / "cubes" / "S2.nc")
    ds = open_cube(out)
    assert ds.attrs["sensor"] == "S2" and ds.attrs["radiometry"] == "surface_reflectance"
    assert ds["data"].shape == (3, 10, 8, 8)
    assert np.array_equal(ds["time"].values, TIMES.astype("datetime64[ns]"))
    assert list(ds["platform"].values) == ["SENTINEL2A", "SENTINEL2B", "SENTINEL2A"]
    for t, (_, refl, clm) in enumerate(made):
        assert np.allclose(ds["data"].values[t, S2_BANDS.index("B08")], refl["B08"],
                           atol=0.5e-4)
        assert np.array_equal(ds["quality"].values[t], clm)
        b12 = ds["data"].values[t, S2_BANDS.index("B12")]
        assert np.abs(b12[::2, ::2] - refl["B12"]).max() < 0.6  # 20 m resampled, same range
    assert ds["valid"].values.all()
    assert cube_grid(ds)[1] == TRANSFORM


def test_s2_aoi_dates_and_bands(tmp_path, s2_dir):
    root, made = s2_dir
    aoi = (300021.0, 4800001.0, 300059.0, 4800039.0)   # cols 2..5, rows 4..7
    out = extract_s2_theia(root, "T31TCJ", tmp_path / "S2.nc", bands=["B04", "B8A"],
                           aoi=aoi, start="2022-01-10", end="2022-02-04")
    ds = open_cube(out)
    assert ds.sizes["time"] == 2 and list(ds["band"].values) == ["B04", "B8A"]
    assert (ds.sizes["y"], ds.sizes["x"]) == (4, 4)
    assert np.allclose(ds["data"].values[0, 0], made[1][1]["B04"][4:8, 2:6], atol=0.5e-4)
    assert cube_grid(ds)[1] == TRANSFORM @ affine.Affine.translation(2, 4)


def test_s2_nodata_is_invalid(tmp_path):
    rng = np.random.default_rng(1)
    edg = np.zeros((8, 8), bool)
    edg[:, :2] = True
    theia(tmp_path / "s2", rng, TIMES[0], edg=edg)
    ds = open_cube(extract_s2_theia(tmp_path / "s2", "T31TCJ", tmp_path / "S2.nc"))
    assert not ds["valid"].values[0][:, :2].any() and ds["valid"].values[0][:, 2:].all()
    assert np.isnan(ds["data"].values[0][:, :, :2]).all()


def test_s2_duplicate_day_keeps_more_valid(tmp_path, caplog):
    rng = np.random.default_rng(2)
    edg = np.zeros((8, 8), bool)
    edg[:4] = True
    theia(tmp_path / "s2", rng, np.datetime64("2022-03-01T10:00:00.000"), edg=edg)
    _, refl, _ = theia(tmp_path / "s2", rng, np.datetime64("2022-03-01T10:00:05.000"),
                       platform="SENTINEL2B")
    with caplog.at_level(logging.WARNING):
        ds = open_cube(extract_s2_theia(tmp_path / "s2", "T31TCJ", tmp_path / "S2.nc"))
    assert ds.sizes["time"] == 1 and ds["platform"].values[0] == "SENTINEL2B"
    assert "dropped" in caplog.text


def test_s2_missing_folder_no_output(tmp_path):
    out = tmp_path / "S2.nc"
    with pytest.raises(InputError) as e:
        extract_s2_theia(tmp_path / "absent", "T31TCJ", out)
    assert "absent" in str(e.value) and not out.exists()


def test_s2_missing_band_no_partial_output(tmp_path, s2_dir):
    root, made = s2_dir
    p = made[2][0]
    (p / f"{p.name}_FRE_B11.tif").unlink()
    out = tmp_path / "S2.nc"
    with pytest.raises(InputError) as e:
        extract_s2_theia(root, "T31TCJ", out)
    assert "B11" in str(e.value) and p.name in str(e.value)
    assert not out.exists() and list(tmp_path.glob(".S2.nc*")) == []


def test_s2_products_on_different_grids(tmp_path):
    rng = np.random.default_rng(3)
    a, _, _ = theia(tmp_path / "s2", rng, TIMES[0])
    b, _, _ = theia(tmp_path / "s2", rng, TIMES[1],
                    transform=TRANSFORM @ affine.Affine.translation(2, 0))
    with pytest.raises(InputError) as e:
        extract_s2_theia(tmp_path / "s2", "T31TCJ", tmp_path / "S2.nc")
    assert a.name in str(e.value) and b.name in str(e.value) and "grid" in str(e.value)


def test_s2_bad_band_name(tmp_path, s2_dir):
    with pytest.raises(InputError, match="field: bands"):
        extract_s2_theia(s2_dir[0], "T31TCJ", tmp_path / "S2.nc", bands=["B10"])


def s1(root, rng, when, direction="ASC", orbit=30, nodata_vh=None, platform="s1a"):
    vv = rng.uniform(0.02, 0.3, (8, 8)).astype(np.float32)
    vh = rng.uniform(0.002, 0.05, (8, 8)).astype(np.float32)
    if nodata_vh is not None:
        vh[nodata_vh] = 0
    for pol, s in (("VV", vv), ("VH", vh)):
        write_s1tiling_image(root, tile="T31TCJ", acquired=when, platform=platform,
                             orbit_direction=direction, relative_orbit=orbit, polarisation=pol,
                             sigma0=s, crs=CRS, transform=TRANSFORM)
    return vv, vh


def test_s1_extract_by_direction(tmp_path):
    rng = np.random.default_rng(4)
    root = tmp_path / "s1"
    vv0, _ = s1(root, rng, np.datetime64("2022-01-03T06:12:34"), nodata_vh=(0, 0))
    s1(root, rng, np.datetime64("2022-01-09T06:12:30"), platform="s1b")
    s1(root, rng, np.datetime64("2022-01-04T17:50:00"), direction="DES", orbit=110)
    ds = open_cube(extract_s1tiling(root, "T31TCJ", "ASC", tmp_path / "S1_ASC.nc"))
    assert ds.attrs["sensor"] == "S1_ASC" and ds.attrs["radiometry"] == "sigma0_linear"
    assert ds.sizes["time"] == 2 and list(ds["band"].values) == ["VV", "VH"]
    assert list(ds["platform"].values) == ["s1a", "s1b"]
    assert list(ds["relative_orbit"].values) == [30, 30]
    assert not ds["valid"].values[0, 0, 0] and ds["valid"].values[0].sum() == 63
    assert np.isnan(ds["data"].values[0, 0, 0, 0])
    assert np.allclose(ds["data"].values[0, 0, 1:], vv0[1:])
    des = open_cube(extract_s1tiling(root, "T31TCJ", "DES", tmp_path / "S1_DES.nc"))
    assert des.sizes["time"] == 1 and des["orbit_direction"].values[0] == "DES"


def test_s1_db_rejected_no_output(tmp_path):
    rng = np.random.default_rng(5)
    for pol in ("VV", "VH"):
        write_s1tiling_image(tmp_path / "s1", tile="T31TCJ", acquired=np.datetime64(
            "2022-01-03T06:12:34"), platform="s1a", orbit_direction="ASC", relative_orbit=30,
            polarisation=pol, sigma0=rng.uniform(-22, -8, (8, 8)), crs=CRS,
            transform=TRANSFORM)
    out = tmp_path / "S1_ASC.nc"
    with pytest.raises(InputError, match="linear"):
        extract_s1tiling(tmp_path / "s1", "T31TCJ", "ASC", out)
    assert not out.exists()


def test_s1_bad_direction(tmp_path):
    with pytest.raises(InputError, match="orbit_direction"):
        extract_s1tiling(tmp_path, "T31TCJ", "north", tmp_path / "x.nc")
