"""S1Tiling writer/reader (format: docs/contracts.md section 0, notes/formats.md)."""

from __future__ import annotations

import affine
import numpy as np
import pytest
import rasterio

from gpvae.errors import InputError
from gpvae.io.s1tiling import (
    find_s1tiling_images,
    group_s1tiling_images,
    parse_s1tiling_name,
    read_s1tiling_acquisition,
    s1tiling_name,
    write_s1tiling_image,
)

CRS = "EPSG:32631"
TRANSFORM = affine.Affine(10.0, 0.0, 300000.0, 0.0, -10.0, 4800020.0)
WHEN = np.datetime64("2022-01-03T06:12:34")


def write(root, pol, sigma0, **kw):
    args = dict(tile="T31TCJ", acquired=WHEN, platform="s1a", orbit_direction="ASC",
                relative_orbit=30, polarisation=pol, sigma0=sigma0, crs=CRS, transform=TRANSFORM)
    args.update(kw)
    return write_s1tiling_image(root, **args)


def test_name_matches_s1tiling_convention():
    name = s1tiling_name(tile="T31TCJ", acquired=WHEN, platform="s1a", orbit_direction="ASC",
                         relative_orbit=30, polarisation="VV")
    assert name == "s1a_31TCJ_vv_ASC_030_20220103t061234.tif"
    im = parse_s1tiling_name(name)
    assert (im.polarisation, im.orbit_direction, im.relative_orbit) == ("VV", "ASC", 30)
    assert im.acquired == WHEN
    unknown_time = parse_s1tiling_name("s1b_31TCJ_vh_DES_008_20220104txxxxxx.tif")
    assert unknown_time.acquired == np.datetime64("2022-01-04T00:00:00")
    assert parse_s1tiling_name("s1a_31TCJ_vv_ASC_030_20220103t061234_BorderMask.tif") is None


def test_writer_zero_nodata_and_border_mask(tmp_path):
    rng = np.random.default_rng(0)
    s = rng.uniform(0.01, 0.3, (8, 8)).astype(np.float32)
    s[0, 0] = np.nan
    s[1, 1] = 0
    p = write(tmp_path, "VV", s)
    with rasterio.open(p) as src:
        assert src.dtypes[0] == "float32"
        v = src.read(1)
    assert v[0, 0] == 0 and v[1, 1] == 0 and np.allclose(v[2:], s[2:])
    with rasterio.open(p.with_name(p.stem + "_BorderMask.tif")) as src:
        bm = src.read(1)
    assert bm.dtype == np.uint8 and bm[0, 0] == 0 and bm[1, 1] == 0 and bm.sum() == 62


def test_grouping_and_validity(tmp_path):
    rng = np.random.default_rng(1)
    vv = rng.uniform(0.01, 0.3, (8, 8)).astype(np.float32)
    vh = rng.uniform(0.001, 0.05, (8, 8)).astype(np.float32)
    vh[3, 4] = np.nan
    write(tmp_path, "VV", vv)
    write(tmp_path, "VH", vh)
    write(tmp_path, "VV", vv, orbit_direction="DES", relative_orbit=8)
    write(tmp_path, "VH", vh, orbit_direction="DES", relative_orbit=8)
    images = find_s1tiling_images(tmp_path, "T31TCJ", "ASC")
    assert len(images) == 2 and all(im.orbit_direction == "ASC" for im in images)
    (acq,) = group_s1tiling_images(images)
    data, valid, files = read_s1tiling_acquisition(acq)
    assert data.shape == (2, 8, 8) and valid.sum() == 63 and not valid[3, 4]
    assert np.isnan(data[0, 3, 4]) and np.allclose(data[0][valid], vv[valid])
    assert len(files) == 4   # 2 images + 2 border masks


def test_missing_polarisation(tmp_path):
    write(tmp_path, "VV", np.full((8, 8), 0.1, np.float32))
    with pytest.raises(InputError) as e:
        group_s1tiling_images(find_s1tiling_images(tmp_path, "T31TCJ"))
    assert "s1a_31TCJ_vh_ASC_030_20220103t061234.tif" in str(e.value)
    assert "field: VH" in str(e.value)


def test_db_input_rejected(tmp_path):
    rng = np.random.default_rng(2)
    db = rng.uniform(-25, -5, (8, 8)).astype(np.float32)
    write(tmp_path, "VV", db)
    write(tmp_path, "VH", db - 6)
    (acq,) = group_s1tiling_images(find_s1tiling_images(tmp_path, "T31TCJ"))
    with pytest.raises(InputError) as e:
        read_s1tiling_acquisition(acq)
    assert "dB" in str(e.value) and "linear" in str(e.value)
    assert "s1a_31TCJ_vv_ASC" in str(e.value)


def test_missing_folder(tmp_path):
    with pytest.raises(InputError, match="inputs.S1.path"):
        find_s1tiling_images(tmp_path / "absent", "T31TCJ")
