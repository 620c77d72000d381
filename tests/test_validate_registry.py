"""Start-up checks against the sensor registry, and table labels of one sample that disagree
(the merge of the registry, issue 11, with the bad-input checks, issue 12)."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from gpvae.config import validate_config
from gpvae.errors import InputError
from gpvae.preprocess.table import table_to_pixels
from gpvae.validate import input_sensors, startup_checks

SPLIT = {"train": 0.5, "val": 0.25, "test": 0.25}


def check(cfg: dict) -> list[str]:
    cfg = validate_config(copy.deepcopy(cfg))
    tiles = [] if cfg["inputs"].get("table") else cfg["tiles"]
    return startup_checks(cfg, sensors=input_sensors(cfg), tiles=tiles, source="c.yaml")


def test_unknown_sensors_and_bands_are_named_with_the_registry_fix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x_T31TCJ.nc").write_bytes(b"")
    (tmp_path / "p_T31TCJ.gpkg").write_bytes(b"")
    base = {"tiles": ["T31TCJ"], "sample": {"split": SPLIT},
            "inputs": {"DRONE": {"path": "x_{tile}.nc", "bands": {"r": "red", "nir": "n"}},
                       "parcels": {"path": "p_{tile}.gpkg"}}}
    with pytest.raises(InputError) as err:
        check(base)
    msg = str(err.value)
    assert "unknown sensor 'DRONE'" in msg and "field: inputs.DRONE" in msg
    assert "declare it under sensors.DRONE" in msg
    declared = {**base, "sensors": {"DRONE": {"kind": "optical", "resolution_m": 1,
                                              "bands": ["r", "g"]}},
                "extract": {"bands": {"DRONE": ["r", "zz"]}},
                "models": {"m": {"type": "iid_vae", "bands": {"DRONE": ["q"]}}}}
    with pytest.raises(InputError) as err:
        check(declared)
    msg = str(err.value)
    for band, field in (("nir", "inputs.DRONE.bands"), ("zz", "extract.bands.DRONE"),
                        ("q", "models.m.bands.DRONE")):
        assert f"band '{band}' is not a band of sensor DRONE" in msg and f"field: {field}" in msg
    assert "unknown sensor" not in msg


def test_a_table_sensor_unknown_to_the_registry(tmp_path):
    src = tmp_path / "t.csv"
    pd.DataFrame({"sid": [0, 0], "date": ["2021-01-01", "2021-02-01"],
                  "v": [0.1, 0.2]}).to_csv(src, index=False)
    cfg = {"inputs": {"table": {"path": str(src), "layout": "long",
                                "columns": {"sample_id": "sid", "time": "date",
                                            "bands": {"SENTINEL3": {"B1": "v"}}}}},
           "sample": {"split": SPLIT}}
    with pytest.raises(InputError, match="unknown sensor 'SENTINEL3'") as err:
        check(cfg)
    assert "inputs.table.columns.bands.SENTINEL3" in str(err.value)


def test_rows_of_one_sample_must_agree_on_its_label(tmp_path):
    rng = np.random.default_rng(0)
    rows = [{"sid": i, "date": d, "crop": ["a", "b"][i % 2], "ndvi": rng.uniform(0.2, 0.8)}
            for i in range(12) for d in ("2021-03-01", "2021-06-01", "2021-09-01")]
    df = pd.DataFrame(rows)
    df.loc[df.sid.isin([0, 1]), "crop"] = None  # samples 0 and 1: unlabelled, kept
    cols = {"sample_id": "sid", "time": "date", "label": "crop",
            "bands": {"MOD13Q1": {"NDVI": "ndvi"}}}
    src = tmp_path / "ok.csv"
    df.to_csv(src, index=False)
    table_to_pixels(src, tmp_path / "ok.nc", layout="long", columns=cols,
                    split_fractions=SPLIT, seed=0)
    df.loc[7, "crop"] = None  # sample 2: labelled on two rows, not on this one
    bad = tmp_path / "bad.csv"
    df.to_csv(bad, index=False)
    with pytest.raises(InputError, match=r"no label in column 'crop': row 8 \(line 9\)") as err:
        table_to_pixels(bad, tmp_path / "bad.nc", layout="long", columns=cols,
                        split_fractions=SPLIT, seed=0)
    assert "field: crop" in str(err.value) and "stays unlabelled" in str(err.value)
