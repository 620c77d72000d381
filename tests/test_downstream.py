"""Downstream classification on a small synthetic embeddings file (contracts section 4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from gpvae.evaluate.downstream import classify, label_subset, load_classifier

CLASSES = ["wheat", "maize", "grassland"]
REF_DAYS = np.arange(0.0, 365.0, 73.0)  # 5 reference dates
LATENT = 3


def write_embeddings(path: Path, *, n: int = 240, invalid: int = 12, seed: int = 0) -> Path:
    """Separable classes (class-specific latent trajectories + noise), 2 regions, 2 years;
    the first ``invalid`` samples have valid 0 and NaN embeddings."""
    rng = np.random.default_rng(seed)
    label = (np.arange(n) // 2 % 3).astype(np.int16)
    parcel = np.arange(n) // 2
    split = np.array(["train", "train", "val", "test"])[parcel % 4]
    region = np.where(np.arange(n) % 2 == 0, "T31TCJ", "T31UDQ")
    year = np.where((np.arange(n) // 8) % 2 == 0, 2022, 2023).astype(np.int16)
    centres = rng.normal(0.0, 2.0, (3, REF_DAYS.size, LATENT))
    mean = centres[label] + rng.normal(0.0, 0.4, (n, REF_DAYS.size, LATENT))
    var = np.full_like(mean, 0.1)
    valid = np.ones(n, np.uint8)
    valid[:invalid] = 0
    mean[:invalid] = np.nan
    var[:invalid] = np.nan
    ds = xr.Dataset(
        {"mean": (("sample", "ref_day", "latent"), mean.astype(np.float32)),
         "var": (("sample", "ref_day", "latent"), var.astype(np.float32)),
         "valid": ("sample", valid),
         "class_name": ("class", np.array(CLASSES))},
        coords={"ref_day": REF_DAYS, "tile": ("sample", region), "region": ("sample", region),
                "parcel_id": ("sample", parcel.astype(np.int64)), "label": ("sample", label),
                "split": ("sample", split), "year": ("sample", year),
                "x": ("sample", np.arange(n, dtype=float)), "y": ("sample", np.zeros(n))},
        attrs={"model": "toy", "method": "synthetic"})
    ds.to_netcdf(path, engine="netcdf4")
    return path


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    d = tmp_path_factory.mktemp("downstream")
    emb = write_embeddings(d / "toy.nc")
    out = classify(emb, d / "classification_toy.csv", d / "confusion_toy.csv", d / "rf.joblib",
                   seeds=(0, 1, 2))
    return d, pd.read_csv(out, keep_default_na=False), pd.read_csv(d / "confusion_toy.csv")


def test_all_protocols_classifiers_seeds(result):
    _, df, _ = result
    assert set(df.columns) >= {"model", "task", "protocol", "split", "seed", "metric", "value",
                               "band", "class", "classifier"}
    assert set(df["protocol"]) == {"parcel", "region", "year", "labels_1pct", "labels_10pct",
                                   "labels_100pct"}
    assert set(df["classifier"]) == {"rf", "logreg", "mlp"}
    assert (df["task"] == "classification").all() and (df["model"] == "toy").all()
    oa = df[df["metric"] == "OA"]
    # every protocol run has all 3 seeds x 3 classifiers
    assert (oa.groupby(["protocol", "split"]).size() == 9).all()
    assert set(oa[oa["protocol"] == "region"]["split"]) == {"test:T31TCJ", "test:T31UDQ"}
    assert set(oa[oa["protocol"] == "year"]["split"]) == {"test:2022", "test:2023"}
    f1 = df[df["metric"] == "f1"]
    assert set(f1["class"]) == set(CLASSES)
    assert set(df["metric"]) >= {"OA", "kappa", "macro_f1", "f1"}


def test_separable_classes_are_learned(result):
    _, df, _ = result
    full = df[(df["metric"] == "OA") & df["protocol"].isin(["parcel", "region", "year"])]
    assert full["value"].min() > 0.9
    kappa = df[(df["metric"] == "kappa") & (df["protocol"] == "parcel")]
    assert kappa["value"].min() > 0.85


def test_invalid_samples_excluded_and_label_fractions(result):
    _, df, conf = result
    n, invalid = 240, 12
    keep = np.arange(n) >= invalid
    split = np.array(["train", "train", "val", "test"])[np.arange(n) // 2 % 4]
    n_test = int((keep & (split == "test")).sum())
    n_fit = int((keep & (split != "test")).sum())
    counts = df[(df["protocol"] == "parcel") & (df["metric"] == "n_test")]["value"]
    assert (counts == n_test).all()
    fit = df[df["metric"] == "n_train"].groupby("protocol")["value"].max()
    assert fit["labels_100pct"] == n_fit
    assert fit["labels_1pct"] == 3  # 1% of ~170 rounds to 2 per class -> at least 1 per class
    assert fit["labels_10pct"] < fit["labels_100pct"]
    parcel = conf[(conf["protocol"] == "parcel") & (conf["classifier"] == "rf")
                  & (conf["seed"] == 0)]
    assert parcel["count"].sum() == n_test and len(parcel) == 9


def test_saved_forest_predicts(result):
    d, _, _ = result
    bundle = load_classifier(d / "rf.joblib")
    assert bundle["class_names"] == CLASSES
    assert bundle["layout"]["dims"] == ["ref_day", "latent"]
    assert bundle["layout"]["sizes"] == [REF_DAYS.size, LATENT]
    with xr.open_dataset(d / "toy.nc") as ds:
        x = ds["mean"].values[12:].reshape(228, -1)
        y = ds["label"].values[12:]
    assert (bundle["pipeline"].predict(x) == y).mean() > 0.95


def test_label_subset_per_class():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [500, 50, 3])
    pos = label_subset(labels, 0.1, rng)
    assert np.bincount(labels[pos]).tolist() == [50, 5, 1]
    assert np.unique(pos).size == pos.size
    assert label_subset(labels, 1.0, rng).size == labels.size


def _trained(path: Path, seed: int = 0) -> Path:
    """A synthetic embeddings file that says it comes from a trained model (a checkpoint)."""
    write_embeddings(path, seed=seed)
    with xr.open_dataset(path) as ds:
        ds = ds.load()
    ds.attrs["checkpoint"] = "models/toy/best.pt"
    ds.to_netcdf(path, engine="netcdf4")
    return path


def test_transfer_protocols_need_held_out_domain_models(tmp_path):
    """A trained model's region/year protocols run only on embeddings of models trained
    without the held-out domain; the features of each run come from that domain's file."""
    emb = _trained(tmp_path / "toy.nc")
    out = classify(emb, tmp_path / "a.csv", tmp_path / "ca.csv", tmp_path / "a.joblib",
                   classifiers=("logreg",), seeds=(0,), protocols=("parcel", "region"))
    assert set(pd.read_csv(out).protocol) == {"parcel"}  # region skipped: no transfer files
    held = tmp_path / "region"
    held.mkdir()
    _trained(held / "T31TCJ.nc", seed=1)
    # the other held-out region's file has no usable sample of that region
    bad = _trained(held / "T31UDQ.nc", seed=2)
    with xr.open_dataset(bad) as ds:
        ds = ds.load()
    ds["valid"][ds["region"].values == "T31UDQ"] = 0
    ds.to_netcdf(bad, engine="netcdf4")
    out = classify(emb, tmp_path / "b.csv", tmp_path / "cb.csv", tmp_path / "b.joblib",
                   classifiers=("logreg",), seeds=(0,), protocols=("parcel", "region"),
                   transfer={"region": held})
    df = pd.read_csv(out)
    assert set(df[df.protocol == "region"].split) == {"test:T31TCJ"}  # T31UDQ: no sample


def test_raw_features_need_no_transfer_models(tmp_path):
    emb = write_embeddings(tmp_path / "raw.nc")  # no checkpoint: no training involved
    out = classify(emb, tmp_path / "a.csv", tmp_path / "c.csv", tmp_path / "a.joblib",
                   classifiers=("logreg",), seeds=(0,), protocols=("region",))
    assert set(pd.read_csv(out).split) == {"test:T31TCJ", "test:T31UDQ"}
