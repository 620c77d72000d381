"""The sensor registry (gpvae.io.sensors): built-ins, user declarations, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gpvae.config import load_config
from gpvae.data.normalise import check_values
from gpvae.errors import InputError
from gpvae.io.sensors import builtin_sensors, registry_from_json, sensor_registry


def test_builtins_declare_bands_units_scales_and_kinds():
    r = builtin_sensors()
    assert list(r) == ["S2", "S1_ASC", "S1_DES", "LANDSAT", "MOD13Q1", "MOD09"]
    assert r["S2"].band_names[:3] == ["B02", "B03", "B04"] and r["S2"].scale == 1e-4
    assert r["S2"].band_resolution("B11") == 20 and r["S2"].band_resolution("B04") == 10
    assert r["S1_ASC"].kind == "sar" and r["S1_ASC"].transform == "db"
    landsat = r["LANDSAT"]
    assert landsat.band_names == [f"SR_B{i}" for i in range(1, 8)]
    assert (landsat.scale, landsat.offset, landsat.resolution_m) == (2.75e-5, -0.2, 30.0)
    modis = r["MOD13Q1"]
    assert modis.kind == "index" and modis.band("NDVI").unit == "1"
    assert modis.band("NIR").unit == "reflectance" and modis.resolution_m == 250
    assert r["MOD09"].band_names[0] == "sur_refl_b01" and r["MOD09"].resolution_m == 500


def test_user_sensors_and_extensions():
    r = sensor_registry({
        "MOD13Q1": {"bands": {"NDWI": {"unit": "1", "range": [-1, 1]}}},
        "DRONE": {"kind": "optical", "resolution_m": 0.1, "bands": ["red", "green", "blue"],
                  "composites": [["red", "green", "blue"]]}})
    assert r["MOD13Q1"].band_names[-1] == "NDWI" and r["MOD13Q1"].scale == 1e-4
    assert r["DRONE"].transform == "identity" and r["DRONE"].band("red").unit == "reflectance"
    assert r["DRONE"].composite(["blue", "green", "red"]) == ("red", "green", "blue")
    # a file's recorded definitions read back without the config, band order kept
    back = registry_from_json(r.to_json(["DRONE", "MOD13Q1"]))
    assert back["DRONE"] == r["DRONE"] and back["MOD13Q1"].band_names == r["MOD13Q1"].band_names


def test_unknown_band_and_unknown_sensor_name_the_fix():
    with pytest.raises(InputError) as err:
        builtin_sensors()["LANDSAT"].check_bands(["SR_B4", "B04"])
    msg = str(err.value)
    assert "'B04'" in msg and "LANDSAT" in msg and "declare it under sensors.LANDSAT.bands" in msg
    with pytest.raises(InputError, match="declare it under sensors.SENTINEL3"):
        builtin_sensors()["SENTINEL3"]


def test_two_sensors_declaring_one_name(tmp_path):
    with pytest.raises(InputError, match="two sensors declare the name 'landsat'"):
        sensor_registry({"landsat": {"kind": "optical", "resolution_m": 30, "bands": ["b"]}})
    with pytest.raises(InputError, match="two sensors declare the name 'Cam'"):
        sensor_registry([("CAM", {"kind": "optical", "resolution_m": 1, "bands": ["r"]}),
                         ("Cam", {"kind": "optical", "resolution_m": 1, "bands": ["g"]})])
    cfg = tmp_path / "c.yaml"
    cfg.write_text("inputs: {}\nsensors:\n  CAM: {kind: optical, resolution_m: 1, bands: [r]}\n"
                   "  CAM: {kind: sar, resolution_m: 5, bands: [VV]}\n")
    with pytest.raises(InputError, match="'CAM' is given twice") as err:
        load_config(cfg)
    assert "c.yaml" in str(err.value)


def test_bad_declarations():
    with pytest.raises(InputError, match="lacks"):
        sensor_registry({"CAM": {"resolution_m": 1, "bands": ["r"]}})
    with pytest.raises(InputError, match="sensors.CAM"):
        sensor_registry({"CAM": {"kind": "thermal", "resolution_m": 1, "bands": ["r"]}})
    with pytest.raises(InputError, match="twice"):
        sensor_registry({"S2": {"bands": ["B04"]}})
    with pytest.raises(InputError, match="composites"):
        sensor_registry({"CAM": {"kind": "optical", "resolution_m": 1, "bands": ["r"],
                                 "composites": [["r", "g", "b"]]}})


def test_plausible_ranges_come_from_the_registry():
    modis = builtin_sensors()["MOD13Q1"]
    ok = np.array([[[0.5, 0.3]]])
    check_values(ok, modis, ["NDVI", "EVI"], file="f", variable="values_MOD13Q1")
    with pytest.raises(InputError, match="band NDVI: value outside its plausible range"):
        check_values(ok * 5000, modis, ["NDVI", "EVI"], file="f", variable="values_MOD13Q1")
    wide = sensor_registry({"MOD13Q1": {"bands": {"T": {"unit": "K", "range": [0, 400]}}}})
    check_values(np.array([[[290.0]]]), wide["MOD13Q1"], ["T"], file="f", variable="v")
    assert json.loads(wide.to_json(["MOD13Q1"]))["MOD13Q1"]["bands"]["T"]["range"] == [0, 400]
