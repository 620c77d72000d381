"""Generic netCDF / zarr cubes: band map, mask rules, CRS, time order, duplicates, units."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from gpvae.errors import InputError
from gpvae.io.cube import open_cube
from gpvae.io.generic import extract_generic
from gpvae.io.quality import invalid_from_quality

NT, NY, NX = 4, 6, 8


def make_cube(*, times=None, south_up=False, qa=None, seed=0, grid_mapping=True,
              s1_values=None) -> xr.Dataset:
    """A FORCE-like cube: int16 bands (scale 1e-4), a QAI variable, a CF grid mapping."""
    rng = np.random.default_rng(seed)
    times = pd.to_datetime(times or ["2021-03-01", "2021-03-11", "2021-03-21", "2021-03-31"])
    nt = len(times)
    y = 4_000_095.0 - 10.0 * np.arange(NY)
    x = 500_005.0 + 10.0 * np.arange(NX)
    if south_up:
        y = y[::-1]
    dn = rng.integers(200, 4000, (nt, NY, NX)).astype(np.int16)
    dn[0, 0, 0] = -9999  # no data
    qa = rng.integers(0, 256, (nt, NY, NX)).astype(np.uint16) if qa is None else qa
    attrs = {"grid_mapping": "spatial_ref"} if grid_mapping else {}
    ds = xr.Dataset(
        {"blue": (("time", "y", "x"), dn, attrs),
         "red": (("time", "y", "x"), np.where(dn == -9999, dn, dn + 100).astype(np.int16),
                 attrs),
         "qai": (("time", "y", "x"), qa)},
        coords={"time": times, "y": y, "x": x})
    for v in ("blue", "red"):
        ds[v].encoding["_FillValue"] = -9999
    if grid_mapping:
        ds["spatial_ref"] = xr.DataArray(0, attrs={"crs_wkt": "EPSG:32631"})
    if s1_values is not None:
        ds["vv"] = (("time", "y", "x"), s1_values, attrs)
        ds["vh"] = (("time", "y", "x"), s1_values / 4, attrs)
    return ds


def extract(ds, tmp_path, name="cube.nc", **kw):
    src = tmp_path / "in.nc"
    ds.to_netcdf(src)
    kw.setdefault("sensor", "S2")
    kw.setdefault("bands", {"B04": "red", "B02": "blue"})
    # S2 DN -> reflectance (DN read as reflectance would be refused); others as they are
    kw.setdefault("scale", 1e-4 if kw["sensor"] == "S2" else 1.0)
    return open_cube(extract_generic(src, "T31TCJ", tmp_path / name, **kw))


def test_bands_scale_nodata_and_classes_mask(tmp_path):
    ds = make_cube()
    out = extract(ds, tmp_path, scale=1e-4,
                  mask={"variable": "qai", "kind": "classes", "invalid": [3, 8, 9]})
    assert list(out.band.values) == ["B02", "B04"]  # canonical order
    np.testing.assert_allclose(out.data.sel(band="B04").values[1],
                               ds.red.values[1] * 1e-4, rtol=1e-6)
    assert np.isnan(out.data.values[0, :, 0, 0]).all() and out.valid.values[0, 0, 0] == 0
    assert out.valid.values.sum() == NT * NY * NX - 1
    assert out.attrs["quality_kind"] == "classes"
    assert json.loads(out.attrs["quality_invalid"]) == [3, 8, 9]
    inv = invalid_from_quality(out).values
    np.testing.assert_array_equal(inv, np.isin(ds.qai.values, [3, 8, 9]))
    assert "EPSG" in out.attrs["crs"] or "UTM zone 31N" in out.attrs["crs"]


def test_bits_rule_wide_codes_evaluated_on_read(tmp_path):
    qa = np.random.default_rng(3).integers(0, 2 ** 15, (NT, NY, NX)).astype(np.uint16)
    out = extract(make_cube(qa=qa), tmp_path,
                  mask={"variable": "qai", "kind": "bits", "invalid": [1, 3, 9]})
    # bit 9 does not fit the uint8 quality byte: the rule is applied on read
    assert out.attrs["quality_kind"] == "boolean"
    expected = (qa & ((1 << 1) | (1 << 3) | (1 << 9))) != 0
    np.testing.assert_array_equal(invalid_from_quality(out).values, expected)


def test_bits_rule_low_bits_kept_raw(tmp_path):
    qa = np.random.default_rng(4).integers(0, 256, (NT, NY, NX)).astype(np.uint8)
    out = extract(make_cube(qa=qa), tmp_path,
                  mask={"variable": "qai", "kind": "bits", "invalid": [0, 5]})
    assert out.attrs["quality_kind"] == "bits"
    np.testing.assert_array_equal(out.quality.values, qa)
    np.testing.assert_array_equal(invalid_from_quality(out).values, (qa & 0b100001) != 0)


def test_boolean_mask_where_true_means_valid(tmp_path):
    qa = np.random.default_rng(5).integers(0, 2, (NT, NY, NX)).astype(np.uint8)
    out = extract(make_cube(qa=qa), tmp_path,
                  mask={"variable": "qai", "kind": "boolean", "invalid_if": False})
    np.testing.assert_array_equal(invalid_from_quality(out).values, qa == 0)


def test_south_up_grid_is_flipped(tmp_path):
    ds = make_cube(south_up=True)
    out = extract(ds, tmp_path)
    assert (np.diff(out.y.values) < 0).all()
    np.testing.assert_array_equal(out.y.values, ds.y.values[::-1])
    np.testing.assert_allclose(out.data.sel(band="B04").values[2],
                               ds.red.values[2][::-1] * 1e-4, rtol=1e-6)
    assert out.attrs["transform"][3] == ds.y.values.max() + 5.0


def test_unsorted_times_are_sorted(tmp_path):
    ds = make_cube(times=["2021-03-21", "2021-03-01", "2021-03-31", "2021-03-11"])
    out = extract(ds, tmp_path)
    assert (np.diff(out.time.values).astype(np.int64) > 0).all()
    src_index = {t: i for i, t in enumerate(ds.time.values)}
    for k, t in enumerate(out.time.values):
        expected = ds.red.values[src_index[t]].astype(float)
        expected[expected == -9999] = np.nan
        np.testing.assert_allclose(out.data.sel(band="B04").values[k], expected * 1e-4,
                                   rtol=1e-6)


def test_duplicated_times_merged_first_with_data_wins(tmp_path):
    ds = make_cube(times=["2021-03-01", "2021-03-11", "2021-03-01", "2021-03-31"])
    blue = ds.blue.values.copy()
    blue[0, 2:4, :] = -9999  # the first 03-01 observation lacks rows 2-3
    ds["blue"] = (ds.blue.dims, blue, ds.blue.attrs)
    ds.blue.encoding["_FillValue"] = -9999
    out = extract(ds, tmp_path, mask={"variable": "qai", "kind": "classes", "invalid": [1]})
    assert out.sizes["time"] == 3
    first_ok = blue[0] != -9999
    assert (~first_ok).sum() == 1 + 2 * NX  # rows 2-3 and the (0, 0) no-data pixel
    expected = np.where(first_ok, blue[0], blue[2]) * 1e-4  # 2nd fills the gaps
    np.testing.assert_allclose(out.data.sel(band="B02").values[0], expected, rtol=1e-6)
    np.testing.assert_array_equal(out.quality.values[0],
                                  np.where(first_ok, ds.qai.values[0], ds.qai.values[2]))
    assert out.valid.values[0].all()


def test_zarr_store(tmp_path):
    pytest.importorskip("zarr")
    ds = make_cube()
    store = tmp_path / "in.zarr"
    ds.to_zarr(store, consolidated=False)
    out = open_cube(extract_generic(store, "T31TCJ", tmp_path / "z.nc", sensor="S2",
                                    bands={"B04": "red"}, scale=1e-4))
    np.testing.assert_allclose(out.data.values[1, 0], ds.red.values[1] * 1e-4, rtol=1e-6)


def test_crs_from_config_when_no_grid_mapping(tmp_path):
    ds = make_cube(grid_mapping=False)
    with pytest.raises(InputError, match="no CF grid mapping"):
        extract(ds, tmp_path)
    out = extract(ds, tmp_path, crs="EPSG:32630")
    assert "UTM zone 30N" in out.attrs["crs"]


def test_bad_band_variable_and_time_var(tmp_path):
    with pytest.raises(InputError, match="not in the cube"):
        extract(make_cube(), tmp_path, bands={"B04": "nope"})
    with pytest.raises(InputError, match="time variable"):
        extract(make_cube(), tmp_path, time_var="date")
    with pytest.raises(InputError, match="'VV' is not a band of sensor S2") as err:
        extract(make_cube(), tmp_path, bands={"VV": "red"})
    assert "declare it under sensors.S2.bands" in str(err.value)


def test_s1_units_checked_both_ways(tmp_path):
    rng = np.random.default_rng(7)
    linear = rng.uniform(0.005, 0.3, (NT, NY, NX)).astype(np.float32)
    db = (10 * np.log10(linear)).astype(np.float32)
    bands = {"VV": "vv", "VH": "vh"}
    with pytest.raises(InputError, match="look like backscatter in dB"):
        extract(make_cube(s1_values=db), tmp_path, sensor="S1_ASC", bands=bands)
    with pytest.raises(InputError, match="look like linear"):
        extract(make_cube(s1_values=linear), tmp_path, sensor="S1_ASC", bands=bands,
                sar_units="db")
    out = extract(make_cube(s1_values=db), tmp_path, sensor="S1_ASC", bands={"VV": "vv"},
                  sar_units="db")
    np.testing.assert_allclose(out.data.values[:, 0], linear, rtol=1e-4)
    assert set(out.orbit_direction.values) == {"ASC"}


def test_several_mask_rules_combine(tmp_path):
    """Cloud bits of one variable AND saturation bits of another: invalid where any is set."""
    rng = np.random.default_rng(6)
    cloud = rng.integers(0, 2 ** 10, (NT, NY, NX)).astype(np.uint16)
    radsat = rng.integers(0, 2 ** 7, (NT, NY, NX)).astype(np.uint16)
    ds = make_cube(qa=cloud)
    ds["radsat"] = (("time", "y", "x"), radsat)
    rules = [{"variable": "qai", "kind": "bits", "invalid": [1, 3, 4]},
             {"variable": "radsat", "kind": "bits", "invalid": [3]}]
    out = extract(ds, tmp_path, mask=rules)
    expected = ((cloud & 0b11010) != 0) | ((radsat & 0b1000) != 0)
    assert out.attrs["quality_kind"] == "boolean" and "radsat" in out.attrs["quality_rules"]
    np.testing.assert_array_equal(invalid_from_quality(out).values, expected)
    # the old single-rule form is the one-rule list
    one = extract(make_cube(qa=cloud), tmp_path, name="one.nc", mask=rules[0])
    np.testing.assert_array_equal(invalid_from_quality(one).values, (cloud & 0b11010) != 0)
    with pytest.raises(InputError, match="mask variable 'radsat'"):
        extract(make_cube(qa=cloud), tmp_path, name="bad.nc", mask=rules)


def test_unset_scale_is_the_sensors_for_integer_dn_and_none_for_floats(tmp_path):
    ds = make_cube()  # int16 DN
    dn = extract(ds, tmp_path, name="dn.nc", scale=None)
    np.testing.assert_allclose(dn.data.sel(band="B04").values[1], ds.red.values[1] * 1e-4,
                               rtol=1e-6)
    physical = ds.copy()
    physical["red"] = ds["red"].astype(np.float32) * 1e-4
    physical["blue"] = ds["blue"].astype(np.float32) * 1e-4
    fl = extract(physical, tmp_path, name="fl.nc", scale=None)
    np.testing.assert_allclose(fl.data.sel(band="B04").values[1],
                               physical.red.values[1], rtol=1e-6)
    # any sensor and band name of the registry: LANDSAT DN -> DN * 2.75e-5 - 0.2
    ls = extract(ds, tmp_path, name="ls.nc", sensor="LANDSAT", scale=None,
                 bands={"SR_B4": "red", "SR_B2": "blue"})
    assert list(ls.band.values) == ["SR_B2", "SR_B4"] and ls.attrs["sensor"] == "LANDSAT"
    np.testing.assert_allclose(ls.data.sel(band="SR_B4").values[1],
                               ds.red.values[1] * 2.75e-5 - 0.2, rtol=1e-5)
    assert '"SR_B7"' in ls.attrs["sensor_definition"]
