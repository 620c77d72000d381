"""Sen2Cor L2A SAFE reader: radiometry by baseline, 10/20 m bands, SCL, zip, bad input."""

from __future__ import annotations

import affine
import numpy as np
import pytest

from gpvae.errors import InputError
from gpvae.io.cube import open_cube
from gpvae.io.quality import invalid_from_quality
from gpvae.io.sen2cor import (
    extract_s2_sen2cor,
    find_sen2cor_products,
    parse_mtd_msil2a,
    write_sen2cor_product,
)

H = W = 16
CRS = "EPSG:32631"
TRANSFORM = affine.Affine(10.0, 0.0, 300000.0, 0.0, -10.0, 5000000.0)
BANDS = ["B02", "B04", "B08", "B05", "B11"]


def scene(seed: int):
    """Reflectance per band at native resolution (constant in 2x2 blocks) and SCL at 20 m."""
    rng = np.random.default_rng(seed)
    refl = {}
    for b in BANDS:
        r20 = rng.uniform(0.02, 0.5, (H // 2, W // 2))
        refl[b] = np.kron(r20, np.ones((2, 2))) if b in ("B02", "B04", "B08") else r20
    refl["B04"][0, 0] = np.nan  # one 10 m no-data pixel
    scl = rng.choice([0, 3, 4, 5, 8, 9, 10], (H // 2, W // 2)).astype(np.uint8)
    scl[scl == 0] = 4
    scl[-1, -1] = 0  # no data in SCL
    return refl, scl


def write(tmp_path, seed=0, day="2022-03-01T10:30:00", **kw):
    refl, scl = scene(seed)
    path = write_sen2cor_product(tmp_path / "in", tile="T31TCJ", acquired=np.datetime64(day),
                                 platform="SENTINEL2B", reflectance=refl, scl=scl, crs=CRS,
                                 transform=TRANSFORM, **kw)
    return path, refl, scl


@pytest.mark.parametrize("baseline, zipped", [("05.09", False), ("04.00", True),
                                               ("02.14", False)])
def test_reflectance_offset_by_baseline_and_zip(tmp_path, baseline, zipped):
    path, refl, scl = write(tmp_path, baseline=baseline, zipped=zipped)
    assert path.name.endswith(".SAFE.zip" if zipped else ".SAFE")
    ds = open_cube(extract_s2_sen2cor(tmp_path / "in", "T31TCJ", tmp_path / "S2.nc",
                                      bands=BANDS))
    assert list(ds.band.values) == ["B02", "B04", "B05", "B08", "B11"]
    assert ds.attrs["quality_kind"] == "scl" and ds.attrs["reader"] == "sen2cor"
    assert ds.platform.values[0] == "SENTINEL2B" and ds.relative_orbit.values[0] == 51
    scl10 = np.kron(scl, np.ones((2, 2), np.uint8))
    np.testing.assert_array_equal(ds.quality.values[0], scl10)
    valid = ds.valid.values[0].astype(bool)
    assert not valid[0, 0] and not valid[-1, -1] and valid.sum() == H * W - 1 - 4
    # 10 m band: exact (DN rounding only) whatever the baseline: offset undone
    got = ds.data.sel(band="B08").values[0]
    np.testing.assert_allclose(got[valid], refl["B08"][valid], atol=0.6e-4)
    # 20 m band on the 10 m grid: bilinear, so within the range of its neighbours
    b05 = ds.data.sel(band="B05").values[0]
    assert np.nanmin(b05) >= refl["B05"].min() - 1e-4
    assert np.nanmax(b05) <= refl["B05"].max() + 1e-4
    inv = invalid_from_quality(ds, scl_classes=[3, 8, 9, 10]).values[0]
    np.testing.assert_array_equal(inv, np.isin(scl10, [3, 8, 9, 10]))


def test_mtd_offset_read_per_band():
    text = """<r><PROCESSING_BASELINE>05.10</PROCESSING_BASELINE>
    <BOA_QUANTIFICATION_VALUE>10000</BOA_QUANTIFICATION_VALUE>
    <Spectral_Information bandId="1" physicalBand="B2"/>
    <Spectral_Information bandId="8" physicalBand="B8A"/>
    <BOA_ADD_OFFSET band_id="1">-1000</BOA_ADD_OFFSET>
    <BOA_ADD_OFFSET band_id="8">-900</BOA_ADD_OFFSET></r>"""
    rad, _ = parse_mtd_msil2a(text)
    assert rad.offsets["B02"] == -1000 and rad.offsets["B8A"] == -900
    np.testing.assert_allclose(rad.reflectance("B8A", np.array([1900, 0])), [0.1, np.nan])
    old, _ = parse_mtd_msil2a(text.replace("05.10", "03.01"))
    assert old.offsets["B02"] == 0  # keyed on the baseline, offsets ignored before 04.00


def test_zip_and_folder_mixed_dates_sorted_and_date_range(tmp_path):
    write(tmp_path, seed=1, day="2022-03-11T10:30:00", zipped=True)
    write(tmp_path, seed=2, day="2022-03-01T10:30:00")
    write(tmp_path, seed=3, day="2022-03-21T10:30:00")
    assert len(find_sen2cor_products(tmp_path / "in", "31TCJ")) == 3
    ds = open_cube(extract_s2_sen2cor(tmp_path / "in", "T31TCJ", tmp_path / "S2.nc",
                                      bands=["B04"], end="2022-03-15",
                                      aoi=(300020.0, 4999880.0, 300060.0, 4999960.0)))
    assert ds.sizes["time"] == 2 and (np.diff(ds.time.values).astype(int) > 0).all()
    assert ds.sizes["x"] == 4 and ds.x.values[0] == 300025.0


def test_missing_mtd_fails_clearly(tmp_path):
    write(tmp_path, with_mtd=False)
    with pytest.raises(InputError, match="MTD_MSIL2A.xml") as err:
        extract_s2_sen2cor(tmp_path / "in", "T31TCJ", tmp_path / "S2.nc", bands=["B04"])
    assert "SAFE" in str(err.value) and "fix" in str(err.value)
    assert not (tmp_path / "S2.nc").exists()


def test_band_of_wrong_resolution_fails(tmp_path):
    write(tmp_path, resolutions={"B05": 60})
    with pytest.raises(InputError, match="documented 20") as err:
        extract_s2_sen2cor(tmp_path / "in", "T31TCJ", tmp_path / "S2.nc", bands=BANDS)
    assert "B05" in str(err.value)
    assert not (tmp_path / "S2.nc").exists()


def test_no_product_for_tile(tmp_path):
    write(tmp_path)
    with pytest.raises(InputError, match="no Sen2Cor L2A product of T32ULU"):
        extract_s2_sen2cor(tmp_path / "in", "T32ULU", tmp_path / "S2.nc")


def test_two_products_one_day_keeps_the_more_complete(tmp_path):
    refl, scl = scene(5)
    holes = scl.copy()
    holes[:4] = 0  # half the tile without data
    for s, hh in ((holes, "10:30:00"), (scl, "10:31:00")):
        write_sen2cor_product(tmp_path / "in", tile="T31TCJ",
                              acquired=np.datetime64(f"2022-04-02T{hh}"),
                              platform="SENTINEL2A", reflectance=refl, scl=s, crs=CRS,
                              transform=TRANSFORM, orbit=8 if s is holes else 94)
    ds = open_cube(extract_s2_sen2cor(tmp_path / "in", "T31TCJ", tmp_path / "S2.nc",
                                      bands=["B04"]))
    assert ds.sizes["time"] == 1 and ds.relative_orbit.values[0] == 94
