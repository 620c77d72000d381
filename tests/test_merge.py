"""Merging tidy metrics, training logs and tile cost files into all.csv and summaries."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from gpvae.errors import InputError
from gpvae.evaluate.merge import merge_metrics
from gpvae.evaluate.tidy import COLUMNS, tidy_row, write_tidy_csv


@pytest.fixture()
def inputs(tmp_path):
    clf = [tidy_row("gpvae_exact", "classification", "parcel", "test", seed, "OA", oa,
                    classifier="rf") for seed, oa in ((0, 0.8), (1, 0.9), (2, 1.0))]
    clf += [tidy_row("gpvae_exact", "classification", "parcel", "test", seed, "f1", 0.5,
                     classifier="rf", **{"class": "wheat"}) for seed in (0, 1, 2)]
    gap = [tidy_row("linear", "gapfill", "hidden", "test", 0, "MAE", 0.02, band="B04")]
    a = write_tidy_csv(clf, tmp_path / "classification_gpvae_exact.csv")
    b = write_tidy_csv(gap, tmp_path / "gapfill_linear.csv")
    log = tmp_path / "models" / "iid_vae" / "metrics.csv"
    log.parent.mkdir(parents=True)
    pd.DataFrame({"epoch": [1, 1, 2, 2], "split": ["train", "val"] * 2,
                  "elbo": [-5.0, -6.0, -4.0, -5.5], "recon": 0.0, "kl": 0.0,
                  "seconds": [10.0, 1.0, 14.0, 1.0], "lr": 0.01}).to_csv(log, index=False)
    cost = tmp_path / "maps" / "iid_vae" / "T31TCJ_cost.json"
    cost.parent.mkdir(parents=True)
    cost.write_text(json.dumps({"model": "iid_vae", "tile": "T31TCJ", "pixels": 1000,
                                "seconds": 2.0, "pixels_per_second": 500.0,
                                "peak_rss_mib": 321.0, "device": "cuda:0", "chunk_px": 64}))
    return [a, b, log, cost]


def test_merge_all_and_summaries(inputs, tmp_path):
    out = merge_metrics(inputs, tmp_path / "metrics" / "all.csv", tmp_path / "metrics")
    df = pd.read_csv(out, keep_default_na=False)
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == 6 + 1 + 2 + 3
    assert set(df["task"]) == {"classification", "gapfill", "cost"}
    summary = pd.read_csv(tmp_path / "metrics" / "summary_classification.csv",
                          keep_default_na=False)
    oa = summary[summary["metric"] == "OA"].iloc[0]
    assert oa["mean"] == pytest.approx(0.9) and oa["std"] == pytest.approx(0.1)
    assert oa["n_seeds"] == 3 and oa["classifier"] == "rf"
    f1 = summary[summary["metric"] == "f1"].iloc[0]
    assert f1["class"] == "wheat" and f1["std"] == pytest.approx(0.0)
    cost = pd.read_csv(tmp_path / "metrics" / "summary_cost.csv", keep_default_na=False)
    by = {(r.model, r.protocol, r.metric): r["mean"] for _, r in cost.iterrows()}
    assert by[("iid_vae", "train", "train_seconds_per_epoch")] == pytest.approx(12.0)
    assert by[("iid_vae", "train", "epochs")] == 2
    assert by[("iid_vae", "tile_inference_cuda", "pixels_per_second")] == 500.0
    assert by[("iid_vae", "tile_inference_cuda", "peak_rss_mib")] == 321.0
    assert (tmp_path / "metrics" / "summary_gapfill.csv").is_file()


def test_merge_without_inputs_writes_empty_tables(tmp_path):
    merge_metrics([], tmp_path / "all.csv", tmp_path)
    assert list(pd.read_csv(tmp_path / "all.csv").columns) == list(COLUMNS)
    for task in ("classification", "gapfill", "cost"):
        assert pd.read_csv(tmp_path / f"summary_{task}.csv").empty


def test_bad_cost_file_is_an_input_error(tmp_path):
    bad = tmp_path / "x_cost.json"
    bad.write_text(json.dumps({"pixels": 3}))
    with pytest.raises(InputError, match="pixels_per_second"):
        merge_metrics([bad], tmp_path / "all.csv", tmp_path)
    assert not (tmp_path / "all.csv").exists()
