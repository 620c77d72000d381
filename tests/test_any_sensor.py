"""Any sensor, any band, any span, at the library level: a user-declared sensor from a table
over Sep-Aug seasons through training, gap filling and embeddings, with no config after the
table stage (the pixel dataset and the checkpoint carry the sensor definitions and the span).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from gpvae.data.checkpoint import read_checkpoint
from gpvae.data.dataset import dataset_info
from gpvae.errors import InputError
from gpvae.evaluate.downstream import classify
from gpvae.evaluate.embed import embed_pixels, embed_raw_linear, reference_days
from gpvae.evaluate.gapfill import gapfill_model
from gpvae.evaluate.hiding import make_hidden
from gpvae.models.build import build_model, load_model
from gpvae.preprocess.table import table_to_pixels
from gpvae.train.loop import train_model

SENSORS = {"DRONE": {"kind": "optical", "resolution_m": 0.5,
                     "bands": {"red": {"range": [0, 1]}, "nir": {"range": [0, 1]}}},
           "RADAR": {"kind": "sar", "resolution_m": 5, "bands": ["HH"]}}
SPLITS = {"train": 0.5, "val": 0.25, "test": 0.25}


def drone_table(path: Path, *, labelled: bool = True, n: int = 24) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        season = 2020 + i % 2
        peak = 120 + 60 * (i % 3)
        for day in range(5, 360, 12):
            t = pd.Timestamp(f"{season}-10-01") + pd.Timedelta(days=day)
            veg = np.exp(-0.5 * ((day - peak) / 40) ** 2)
            rows.append({"id": i, "t": t, "cls": ["a", "b", "c"][i % 3] if labelled else "",
                         "red": 0.1 - 0.05 * veg + rng.normal(0, 0.005),
                         "nir": 0.2 + 0.3 * veg + rng.normal(0, 0.005),
                         "hh": 10 ** ((-15 + 4 * veg + rng.normal(0, 0.5)) / 10)})
    df = pd.DataFrame(rows)
    df = df[rng.random(len(df)) > 0.2]  # irregular dates
    df.to_parquet(path)
    return path


COLUMNS = {"sample_id": "id", "time": "t", "label": "cls",
           "bands": {"DRONE": {"red": "red", "nir": "nir"}, "RADAR": {"HH": "hh"}}}


@pytest.fixture(scope="module")
def pixels(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("any")
    return table_to_pixels(drone_table(d / "t.parquet"), d / "pixels.nc", layout="long",
                           columns=COLUMNS, split_fractions=SPLITS, seed=0,
                           span={"span": "season", "season_start": "10-01"}, sensors=SENSORS)


def test_file_records_sensors_and_span(pixels):
    info = dataset_info(pixels)
    assert info.sensors == ["DRONE", "RADAR"] and info.bands["DRONE"] == ["red", "nir"]
    assert info.registry["RADAR"].transform == "db" and info.span.kind == "season"
    assert info.span_days in (365.0, 366.0) and info.first_of_kind() == "DRONE"


def test_train_gapfill_embed_without_config(pixels, tmp_path):
    cfg = {"type": "gpvae", "prior": "sparse", "num_inducing": 8, "latent_dim": 2,
           "hidden": 8, "train": {"epochs": 1, "batch_size": 8}}
    best = train_model(pixels, "m", cfg, tmp_path / "m")
    state = read_checkpoint(best)
    span = dataset_info(pixels).time_range
    assert state["model_config"]["time_range"] == list(span)  # null -> the data's span
    assert state["sensors"]["DRONE"]["bands"]["red"]["range"] == [0, 1]
    model, meta = load_model(best, device="cpu")
    assert meta["sensors"]["DRONE"].kind == "optical"
    hidden = make_hidden(pixels, tmp_path / "hidden.nc", seed=1)
    with xr.open_dataset(hidden) as h:
        assert h.attrs["sensor"] == "DRONE" and "hidden_DRONE" in h
    pred = gapfill_model(pixels, hidden, best, tmp_path / "g.nc", tmp_path / "g.csv",
                         device="cpu")
    with xr.open_dataset(pred) as g:
        assert g["pred_mean"].dims == ("sample", "time_DRONE", "band_DRONE")
        assert np.isfinite(g["pred_mean"].values).any()
    ref = reference_days(0, None, 30, span)
    assert ref[0] == 0 and ref[-1] == 360
    emb = embed_pixels(pixels, best, tmp_path / "e.nc", ref_days=ref, device="cpu")
    raw = embed_raw_linear(pixels, tmp_path / "r.nc", ref_days=ref)
    with xr.open_dataset(emb) as e, xr.open_dataset(raw) as r:
        assert e["mean"].shape[1] == ref.size and r.attrs["sensor"] == "DRONE"
        assert list(r["feature"].values) == ["red", "nir"]
        starts = e["start"].values.astype("datetime64[D]").astype(str)
        assert set(starts) == {"2020-10-01", "2021-10-01"}


def test_time_range_follows_the_span_given_to_build_model():
    bands = {"DRONE": ["red", "nir"]}
    assert build_model({"prior": "sparse"}, bands, span=(0.0, 730.0)).config["time_range"] == [
        0.0, 730.0]
    assert build_model({"type": "banded_gpvae", "time_range": [-10, 100]}, bands,
                       span=(0.0, 730.0)).config["time_range"] == [-10, 100]


def test_reference_days_need_two_dates():
    with pytest.raises(InputError, match="at least 2"):
        reference_days(0, 5, 10, None)


def test_unlabelled_only_table_asked_for_classification(tmp_path):
    pixels = table_to_pixels(drone_table(tmp_path / "u.parquet", labelled=False),
                             tmp_path / "u.nc", layout="long", columns=COLUMNS,
                             split_fractions=SPLITS, seed=0, span={"span": "all"},
                             sensors=SENSORS)
    with xr.open_dataset(pixels) as ds:
        assert (ds["label"].values == -1).all() and ds.sizes["class"] == 0
    raw = embed_raw_linear(pixels, tmp_path / "raw.nc",
                           ref_days=reference_days(0, None, 60, dataset_info(pixels).time_range))
    with pytest.raises(InputError, match="labelled samples of at least 2 classes") as err:
        classify(raw, tmp_path / "c.csv", tmp_path / "cm.csv", tmp_path / "rf.joblib")
    assert "columns.label" in str(err.value)
