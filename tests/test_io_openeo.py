"""openEO netCDF cubes: the three real openeo-gfmap files, and bad input."""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pytest

from gpvae.errors import InputError
from gpvae.io.cube import open_cube
from gpvae.io.openeo import extract_openeo
from gpvae.io.quality import invalid_from_quality
from gpvae.io.sar import linear_to_db

REAL = Path(__file__).parents[2] / "shared" / "data" / "real" / "openeo_gfmap"


def real(name: str) -> Path:
    path = REAL / name
    if not path.is_file():
        pytest.skip(f"real data absent: {path}")
    return path


def raw(path: Path, var: str) -> np.ndarray:
    """Raw stored values, decoded only by the CF `_Unsigned` rule (int16 -> uint16)."""
    with netCDF4.Dataset(path) as nc:
        nc.set_auto_mask(False)
        return np.asarray(nc[var][:]).astype(np.int16).view(np.uint16)


@pytest.mark.parametrize("name, bands", [
    ("s2_l2a_belgium_2023-04.nc", ["B04", "B08", "B11"]),
    ("s2_l2a_belgium_2023-q4.nc", ["B02", "B03", "B04", "B08"]),
])
def test_real_s2_reflectance_and_scl(tmp_path, name, bands):
    src = real(name)
    ds = open_cube(extract_openeo(src, "T31UES", tmp_path / "S2.nc", sensor="S2"))
    assert list(ds.band.values) == bands  # canonical order, B01/AOT dropped
    assert ds.attrs["quality_kind"] == "scl" and ds.attrs["reader"] == "openeo"
    assert ds.attrs["radiometry"] == "surface_reflectance"
    # reflectance = DN / 10000 (producer convention), no further offset
    dn = raw(src, "S2-L2A-B04").astype(np.float64)
    np.testing.assert_allclose(ds.data.sel(band="B04").values, dn / 1e4, rtol=1e-6)
    # SCL codes are Sen2Cor classes 0..11 and stored untouched
    scl = ds.quality.values
    assert set(np.unique(scl)) <= set(range(12))
    np.testing.assert_array_equal(scl, raw(src, "S2-L2A-SCL"))
    # vegetation (SCL 4): NIR well above red, red reflectance in a physical range
    veg = scl == 4
    red, nir = ds.data.sel(band="B04").values[veg], ds.data.sel(band="B08").values[veg]
    assert 0.0 < np.median(red) < 0.1 and np.median(nir) > 2 * np.median(red)
    # clouds (SCL 8/9) brighter than vegetation in the red
    assert np.median(ds.data.sel(band="B04").values[np.isin(scl, [8, 9])]) > 0.15
    # the mask stage's default SCL rule flags exactly the classes {0,1,3,8,9,10}
    inv = invalid_from_quality(ds).values
    np.testing.assert_array_equal(inv, np.isin(scl, [0, 1, 3, 8, 9, 10]))
    # grid: 10 m UTM 31N, pixel centres as in the file
    assert ds.attrs["transform"][1] == 10.0 and ds.attrs["transform"][5] == -10.0
    assert "UTM zone 31N" in ds.attrs["crs"]
    with netCDF4.Dataset(src) as nc:
        np.testing.assert_array_equal(ds.x.values, nc["x"][:])
        np.testing.assert_array_equal(ds.y.values, nc["y"][:])


def test_real_s1_uint16_db_decoded_to_linear(tmp_path):
    src = real("s1_grd_belgium_2023-04.nc")
    ds = open_cube(extract_openeo(src, "T31UES", tmp_path / "S1.nc", sensor="S1_DES"))
    assert list(ds.band.values) == ["VV", "VH"]
    assert ds.attrs["radiometry"] == "sigma0_linear"
    assert set(ds.orbit_direction.values) == {"DES"}
    vv, vh = (ds.data.sel(band=b).values for b in ("VV", "VH"))
    assert np.nanmin(vv) > 0  # linear, never dB
    # dB = 20 log10(DN) - 83 (openeo-gfmap): check one value against the formula
    dn = raw(src, "S1-SIGMA0-VV").astype(np.float64)
    np.testing.assert_allclose(linear_to_db(vv), 20 * np.log10(dn) - 83, atol=1e-4)
    # plausible backscatter over Belgian farmland: VV around -12 dB, VH ~6 dB lower
    vv_db, vh_db = np.nanmedian(linear_to_db(vv)), np.nanmedian(linear_to_db(vh))
    assert -18 < vv_db < -6 and -26 < vh_db < -12 and 3 < vv_db - vh_db < 10


def test_date_range_and_aoi(tmp_path):
    src = real("s2_l2a_belgium_2023-q4.nc")
    ds = open_cube(extract_openeo(src, "T31UES", tmp_path / "S2.nc", sensor="S2",
                                  start="2023-11-01", end="2023-11-30",
                                  aoi=(587900.0, 5685000.0, 588000.0, 5685100.0)))
    times = ds.time.values
    assert times.min() >= np.datetime64("2023-11-01") and times.max() < np.datetime64(
        "2023-12-01")
    assert ds.sizes["x"] <= 12 and ds.sizes["y"] <= 12
    assert ds.x.values.min() < 587900 + 10 and ds.x.values.max() > 588000 - 10


def write_fake_openeo(path: Path, *, grid_mapping: bool, sigma0: np.ndarray | None = None):
    """A tiny cube laid out as openEO writes it (t/y/x, S1-SIGMA0-* variables)."""
    nt, ny, nx = 3, 4, 5
    rng = np.random.default_rng(0)
    values = sigma0 if sigma0 is not None else rng.uniform(0.01, 0.3, (nt, ny, nx))
    with netCDF4.Dataset(path, "w") as nc:
        for dim, n in (("t", nt), ("y", ny), ("x", nx)):
            nc.createDimension(dim, n)
        t = nc.createVariable("t", "i4", ("t",))
        t.units = "days since 1990-01-01"
        t[:] = [12000, 12006, 12012]
        nc.createVariable("x", "f8", ("x",))[:] = 500005.0 + 10 * np.arange(nx)
        nc.createVariable("y", "f8", ("y",))[:] = 4000095.0 - 10 * np.arange(ny)
        if grid_mapping:
            crs = nc.createVariable("crs", "S1", ())
            crs.crs_wkt = "EPSG:32631"
        for pol in ("VV", "VH"):
            v = nc.createVariable(f"S1-SIGMA0-{pol}", "f4", ("t", "y", "x"))
            if grid_mapping:
                v.grid_mapping = "crs"
            v[:] = values
    return path


def test_missing_grid_mapping_fails_clearly(tmp_path):
    src = write_fake_openeo(tmp_path / "nogm.nc", grid_mapping=False)
    with pytest.raises(InputError, match="grid mapping") as err:
        extract_openeo(src, "T31TCJ", tmp_path / "S1.nc", sensor="S1_ASC")
    assert "nogm.nc" in str(err.value) and "fix" in str(err.value)
    assert not (tmp_path / "S1.nc").exists()
    # the CRS can be given instead
    ds = open_cube(extract_openeo(src, "T31TCJ", tmp_path / "S1.nc", sensor="S1_ASC",
                                  crs="EPSG:32631"))
    assert ds.sizes["time"] == 3


def test_float_db_where_linear_expected_fails(tmp_path):
    db = np.random.default_rng(1).uniform(-25, -5, (3, 4, 5))
    src = write_fake_openeo(tmp_path / "db.nc", grid_mapping=True, sigma0=db)
    with pytest.raises(InputError, match="look like backscatter in dB"):
        extract_openeo(src, "T31TCJ", tmp_path / "S1.nc", sensor="S1_ASC")
    assert not (tmp_path / "S1.nc").exists()


def test_sar_encodings_round_trip_and_sniffing():
    from gpvae.io.sar import (
        db_to_linear,
        decode_db_uint16,
        encode_db_uint16,
        sar_to_linear,
        sniff_sar_units,
    )

    rng = np.random.default_rng(3)
    lin = rng.uniform(0.001, 0.5, 200)
    np.testing.assert_allclose(db_to_linear(linear_to_db(lin)), lin, rtol=1e-12)
    dn = encode_db_uint16(lin)
    assert dn.dtype == np.uint16 and dn.min() >= 1
    # linear ~ DN^2: rounding DN costs at most 2 * 0.5 / DN relative (DN >= 446 at -30 dB)
    np.testing.assert_allclose(decode_db_uint16(dn), lin, rtol=1.0 / 446)
    assert np.isnan(decode_db_uint16(np.array([0, 65535]))).all()
    assert sniff_sar_units(lin) == "linear"
    assert sniff_sar_units(linear_to_db(lin)) == "db"
    assert sniff_sar_units(dn) == "db_uint16"
    with pytest.raises(InputError, match="look like linear"):
        sar_to_linear(lin, "db")
    with pytest.raises(InputError, match="uint16 dB code"):
        sar_to_linear(dn.astype(float), "linear")
    assert np.isnan(sar_to_linear(np.zeros(4), "db_uint16")).all()  # all no data: no sniffing
