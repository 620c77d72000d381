"""Theia/MAJA L2A writer and reader (format: docs/contracts.md section 0, notes/formats.md)."""

from __future__ import annotations

import affine
import numpy as np
import pytest
import rasterio

from gpvae.errors import InputError
from gpvae.io.sensors import S2_10M, S2_BANDS
from gpvae.io.theia import (
    find_theia_products,
    parse_theia_name,
    read_theia_product,
    theia_band_name,
    theia_product_name,
    write_theia_product,
)

CRS = "EPSG:32631"
TRANSFORM = affine.Affine(10.0, 0.0, 300000.0, 0.0, -10.0, 4800020.0)
WHEN = np.datetime64("2022-01-05T10:54:32.123")


def reflectance(rng: np.random.Generator, h: int = 8, w: int = 8) -> dict[str, np.ndarray]:
    return {b: rng.uniform(0.01, 0.6, (h, w) if b in S2_10M else (h // 2, w // 2))
            .astype(np.float32) for b in S2_BANDS}


def write(root, rng, **kw):
    args = dict(tile="T31TCJ", acquired=WHEN, platform="SENTINEL2A", reflectance=reflectance(rng),
                clm_r1=np.zeros((8, 8), np.uint8), edg_r1=np.zeros((8, 8), bool), crs=CRS,
                transform=TRANSFORM)
    args.update(kw)
    return write_theia_product(root, **args)


def test_band_names_follow_theia():
    assert [theia_band_name(b) for b in S2_BANDS] == [
        "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"]


def test_name_round_trip():
    name = theia_product_name(tile="T31TCJ", acquired=WHEN, platform="SENTINEL2B")
    assert name == "SENTINEL2B_20220105-105432-123_L2A_T31TCJ_C_V3-1"
    parsed = parse_theia_name(name)
    assert parsed.acquired == WHEN and parsed.platform == "SENTINEL2B"
    assert parsed.tile == "T31TCJ"
    assert parse_theia_name("S2A_MSIL2A_20220105T105431_N0400_R051_T31TCJ.SAFE") is None


def test_writer_layout_dtypes_and_masks(tmp_path):
    rng = np.random.default_rng(0)
    clm = np.zeros((8, 8), np.uint8)
    clm[0, 0] = 0b0000_0011   # clouds (bits 0, 1)
    clm[5, 6] = 0b0010_0001   # shadow (bits 0, 5)
    edg = np.zeros((8, 8), bool)
    edg[7, 0] = True
    refl = reflectance(rng)
    refl["B04"][2, 3] = np.nan
    p = write(tmp_path, rng, clm_r1=clm, edg_r1=edg, reflectance=refl)
    name = p.name
    for b in ("B2", "B3", "B4", "B8", "B5", "B6", "B7", "B8A", "B11", "B12"):
        assert (p / f"{name}_FRE_{b}.tif").is_file()
    assert (p / f"{name}_MTD_ALL.xml").is_file()
    with rasterio.open(p / f"{name}_FRE_B4.tif") as src:
        dn = src.read(1)
        assert src.dtypes[0] == "int16" and src.nodata == -10000 and src.shape == (8, 8)
        assert src.compression.name.lower() == "deflate"
    assert dn[2, 3] == -10000
    assert dn[0, 1] == round(float(refl["B04"][0, 1]) * 10000)
    with rasterio.open(p / f"{name}_FRE_B11.tif") as src:
        assert src.shape == (4, 4) and src.transform.a == 20.0
    m = p / "MASKS"
    with rasterio.open(m / f"{name}_CLM_R2.tif") as src:
        clm2 = src.read(1)
    assert clm2[0, 0] == 0b11 and clm2[2, 3] == 0b10_0001 and clm2[1, 1] == 0
    with rasterio.open(m / f"{name}_EDG_R2.tif") as src:
        assert src.read(1)[3, 0] == 1 and src.read(1).sum() == 1
    with rasterio.open(m / f"{name}_MG2_R1.tif") as src:
        mg2 = src.read(1)
    assert mg2[0, 0] == 0b10 and mg2[5, 6] == 0b1000 and mg2.sum() == 0b10 + 0b1000
    with rasterio.open(m / f"{name}_SAT_R1.tif") as src:
        assert src.read(1).max() == 0


def test_reader_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    refl = reflectance(rng)
    refl["B05"][1, 1] = np.nan           # 20 m nodata -> 10 m pixels (2:4, 2:4) invalid
    edg = np.zeros((8, 8), bool)
    edg[0, 7] = True
    clm = np.full((8, 8), 4, np.uint8)
    write(tmp_path, rng, reflectance=refl, edg_r1=edg, clm_r1=clm)
    (product,) = find_theia_products(tmp_path, "T31TCJ")
    scene = read_theia_product(product)
    assert scene.reflectance.shape == (10, 8, 8)
    i = S2_BANDS.index("B03")
    ok = scene.valid
    assert np.allclose(scene.reflectance[i][ok], refl["B03"][ok], atol=0.5e-4)
    assert not ok[0, 7] and not ok[2:4, 2:4].any() and ok.sum() == 64 - 1 - 4
    assert np.isnan(scene.reflectance[:, ~ok]).all()
    assert (scene.clm == 4).all()
    # a 20 m nodata pixel (-10000) must not leak into its valid 10 m neighbours
    k = S2_BANDS.index("B05")
    assert np.nanmin(scene.reflectance[k]) >= np.nanmin(refl["B05"]) - 1e-4
    # bilinear 20 m -> 10 m stays within the range of the 20 m source values
    j = S2_BANDS.index("B11")
    src = refl["B11"]
    assert np.nanmin(scene.reflectance[j]) >= src.min() - 1e-4
    assert np.nanmax(scene.reflectance[j]) <= src.max() + 1e-4


def test_missing_product_folder(tmp_path):
    with pytest.raises(InputError) as e:
        find_theia_products(tmp_path / "nope", "T31TCJ")
    assert "nope" in str(e.value) and "inputs.S2.path" in str(e.value)


def test_no_product_for_tile(tmp_path):
    write(tmp_path, np.random.default_rng(0))
    with pytest.raises(InputError, match="T31TDJ"):
        find_theia_products(tmp_path, "T31TDJ")


def test_missing_band_file(tmp_path):
    p = write(tmp_path, np.random.default_rng(0))
    (p / f"{p.name}_FRE_B8A.tif").unlink()
    (product,) = find_theia_products(tmp_path, "T31TCJ")
    with pytest.raises(InputError) as e:
        read_theia_product(product)
    assert "B8A" in str(e.value) and f"{p.name}_FRE_B8A.tif" in str(e.value)


def test_writer_failure_leaves_no_folder(tmp_path):
    rng = np.random.default_rng(0)
    refl = reflectance(rng)
    refl["B11"] = refl["B11"][:3]        # wrong shape
    with pytest.raises(ValueError, match="B11"):
        write(tmp_path, rng, reflectance=refl)
    assert list(tmp_path.iterdir()) == []
