"""Bounded memory: extract and mask work in spatial blocks, and the result does not depend on
the block size (a block-wise read equals the whole-grid read, 20 m resampling and the mask
dilation included). Memory itself is measured in benchmarks/bench_memory.py."""

from __future__ import annotations

import affine
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import gpvae.io.window as window_module
from gpvae.io.cube import write_cube
from gpvae.io.extract import extract_s1tiling, extract_s2_theia
from gpvae.io.generic import extract_generic
from gpvae.io.s1tiling import write_s1tiling_image
from gpvae.io.sen2cor import extract_s2_sen2cor, write_sen2cor_product
from gpvae.io.sensors import S2_10M, S2_BANDS
from gpvae.io.theia import write_theia_product
from gpvae.io.window import spatial_blocks
from gpvae.preprocess.mask import compute_mask

CRS = "EPSG:32631"
TRANSFORM = affine.Affine(10.0, 0.0, 300000.0, 0.0, -10.0, 4800080.0)
H, W = 14, 22  # not multiples of the test block sizes
DAYS = np.array(["2022-01-05T10:54", "2022-01-15T10:54"], "datetime64[ms]")


def _both(monkeypatch, run, block: int):
    """``run(tag)`` with the default blocks (whole grid here) and with ``block`` px blocks."""
    whole = run("whole")
    monkeypatch.setattr(window_module, "BLOCK_PX", block)
    return whole, run(f"b{block}")


def _identical(a, b):
    with xr.open_dataset(a) as x, xr.open_dataset(b) as y:
        xr.testing.assert_identical(x.load(), y.load())


def test_spatial_blocks_tile_the_grid():
    blocks = spatial_blocks(7, 10, 4)
    cover = np.zeros((7, 10), int)
    for b in blocks:
        cover[b.row_off:b.row_off + b.height, b.col_off:b.col_off + b.width] += 1
    assert (cover == 1).all() and len(blocks) == 2 * 3


@pytest.mark.parametrize("block", [4, 6])
def test_theia_and_s1tiling_blocks_equal_whole_reads(tmp_path, monkeypatch, block):
    rng = np.random.default_rng(0)
    for k, day in enumerate(DAYS):
        refl = {b: rng.uniform(0.01, 0.6, (H, W) if b in S2_10M else (H // 2, W // 2))
                .astype(np.float32) for b in S2_BANDS}
        refl["B11"][2, 3] = np.nan  # a 20 m no-data pixel next to block edges
        edg = np.zeros((H, W), bool)
        edg[:, :3] = k == 1
        write_theia_product(tmp_path / "s2", tile="T31TCJ", acquired=day, platform="SENTINEL2A",
                            reflectance=refl, clm_r1=rng.integers(0, 4, (H, W), np.uint8),
                            edg_r1=edg, crs=CRS, transform=TRANSFORM)
        for pol in ("vv", "vh"):
            sigma0 = rng.uniform(0.01, 0.3, (H, W)).astype(np.float32)
            sigma0[5, 7] = np.nan
            write_s1tiling_image(tmp_path / "s1", tile="T31TCJ", acquired=day, platform="s1a",
                                 orbit_direction="ASC", relative_orbit=30, polarisation=pol,
                                 sigma0=sigma0, crs=CRS, transform=TRANSFORM)
    aoi = (300021.0, 4799941.0, 300199.0, 4800079.0)  # an AOI window offset into the grid

    def run(tag):
        return (extract_s2_theia(tmp_path / "s2", "T31TCJ", tmp_path / tag / "S2.nc", aoi=aoi),
                extract_s1tiling(tmp_path / "s1", "T31TCJ", "ASC", tmp_path / tag / "S1.nc"))

    whole, blocked = _both(monkeypatch, run, block)
    for a, b in zip(whole, blocked, strict=True):
        _identical(a, b)


def test_sen2cor_blocks_equal_whole_reads(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    refl = {b: rng.uniform(0.02, 0.5, (H, W) if b in S2_10M else (H // 2, W // 2))
            for b in ("B02", "B04", "B05", "B11")}
    scl = rng.choice(np.array([3, 4, 5, 8], np.uint8), (H // 2, W // 2))
    write_sen2cor_product(tmp_path / "in", tile="T31TCJ", acquired=np.datetime64(DAYS[0]),
                          platform="SENTINEL2B", reflectance=refl, scl=scl, crs=CRS,
                          transform=TRANSFORM)
    whole, blocked = _both(monkeypatch, lambda tag: extract_s2_sen2cor(
        tmp_path / "in", "T31TCJ", tmp_path / tag / "S2.nc", bands=list(refl)), 4)
    _identical(whole, blocked)


def test_generic_south_up_blocks_equal_whole_reads(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    y = 4_000_005.0 + 10.0 * np.arange(H)  # south-up: flipped on read
    x = 500_005.0 + 10.0 * np.arange(W)
    dn = rng.integers(200, 4000, (2, H, W)).astype(np.int16)
    ds = xr.Dataset({"red": (("time", "y", "x"), dn, {"grid_mapping": "spatial_ref"}),
                     "qa": (("time", "y", "x"), rng.integers(0, 300, (2, H, W)).astype(np.int16))},
                    coords={"time": pd.to_datetime(DAYS.astype("datetime64[ns]")), "y": y,
                            "x": x})
    ds["spatial_ref"] = xr.DataArray(0, attrs={"crs_wkt": "EPSG:32631"})
    ds.to_netcdf(tmp_path / "in.nc")
    whole, blocked = _both(monkeypatch, lambda tag: extract_generic(
        tmp_path / "in.nc", "T31TCJ", tmp_path / tag / "S2.nc", sensor="S2",
        bands={"B04": "red"}, mask={"variable": "qa", "kind": "bits", "invalid": [0, 8]},
        aoi=(500_025.0, 4_000_015.0, 500_185.0, 4_000_125.0)), 4)
    _identical(whole, blocked)


@pytest.mark.parametrize("block, dilation", [(4, 2), (6, 1), (5, 0)])
def test_mask_blocks_with_a_dilation_halo_equal_the_whole_grid(tmp_path, monkeypatch, block,
                                                                dilation):
    rng = np.random.default_rng(3)
    nt = 3
    quality = (rng.random((nt, H, W)) < 0.08).astype(np.uint8)  # CLM bit 0: sparse clouds
    quality[1, 0, 0] = quality[2, -1, -1] = 1                 # on the grid's edges
    valid = (rng.random((nt, H, W)) > 0.1).astype(np.uint8)
    cube = write_cube(tmp_path / "cube.nc", data=np.full((nt, 1, H, W), 0.1, np.float32),
                      valid=valid, times=DAYS[[0, 1, 1]].astype("datetime64[ns]")
                      + np.arange(nt).astype("timedelta64[h]"), bands=["B02"], crs=CRS,
                      transform=TRANSFORM, sensor="S2", tile="T31TCJ",
                      radiometry="surface_reflectance", quality=quality)

    def run(tag):
        (tmp_path / tag).mkdir()
        return compute_mask(cube, tmp_path / tag / "m.nc", tmp_path / tag / "cc.csv",
                            dilation_px=dilation)

    whole, blocked = _both(monkeypatch, run, block)
    _identical(whole, blocked)
    assert (tmp_path / "whole" / "cc.csv").read_bytes() == \
        (tmp_path / f"b{block}" / "cc.csv").read_bytes()
    with xr.open_dataset(whole) as m:  # and it is the dilation of the whole grid
        from gpvae.preprocess.mask import dilate
        expected = valid.astype(bool) & ~(dilate(quality.astype(bool), dilation)
                                          & valid.astype(bool))
        np.testing.assert_array_equal(m["valid"].values.astype(bool), expected)
