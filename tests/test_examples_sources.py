"""The multi-source, update and add-sensor examples through the pipeline, at tiny size
(one 32 x 32 px tile, one year, two training passes: test_examples.TEST_TRAIN): Landsat and
MODIS products read and fused, a tile's products updated from new acquisitions only (equal to
a recomputation over all dates), a sensor added to a trained model with the rest frozen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from test_examples import example, run_example

from gpvae.data.checkpoint import read_checkpoint
from gpvae.evaluate.downstream import fit_predict, load_embeddings
from gpvae.evaluate.embed import reference_days
from gpvae.evaluate.tile import predict_tile
from gpvae.io.readers import extract_cube
from gpvae.preprocess.mask import compute_mask

pytestmark = pytest.mark.slow

TILE = "T31TCJ"


def tiny(name: str, **scene) -> dict:
    """An example config at test size: one tile, one 32 px year, small models trained for
    two passes (set by :func:`test_examples.example`)."""
    cfg = example(name)
    cfg["tiles"] = [TILE]
    cfg["scene"].update(size_px=32, years=[2022], seed=7, **scene)
    cfg["sample"].update(per_class=20, per_parcel_cap=8, erosion_px=0)
    for m in cfg["models"].values():
        m.update(latent_dim=4, hidden=16)
    return cfg


def test_multisource_example(tmp_path: Path) -> None:
    cfg = tiny("multisource")
    cfg["models"] = {k: cfg["models"][k] for k in ("s2_s1", "s2_s1_landsat_modis")}
    results = run_example(tmp_path, cfg, "results/maps/s2_s1_landsat_modis/T31TCJ.nc",
                          "results/metrics/gapfill_s2_s1_landsat_modis.csv")
    ds = xr.open_dataset(results / "samples" / "pixels.nc")
    assert set(ds.attrs["sensors"].split()) == {"S2", "S1_ASC", "S1_DES", "LANDSAT",
                                                 "MOD13Q1"}
    assert (ds["cell_LANDSAT"].values >= 0).all() and (ds["cell_MOD13Q1"].values >= 0).all()
    # a cell's pixels share its series; Landsat cells hold 3 x 3 pixels, MODIS 25 x 25
    assert np.unique(ds["cell_MOD13Q1"].values).size <= 4
    assert np.isfinite(ds["values_LANDSAT"].values).mean() > 0.2
    for s in ("LANDSAT", "MOD13Q1"):
        with xr.open_dataset(results / "cubes" / TILE / f"{s}.nc") as cube:
            res = abs(float(np.ravel(cube.attrs["transform"])[1]))
            assert res == {"LANDSAT": 30.0, "MOD13Q1": 250.0}[s]
    ds.close()
    state = read_checkpoint(results / "models" / "s2_s1_landsat_modis" / "best.pt")
    assert set(state["sensor_bands"]) == {"S2", "S1_ASC", "S1_DES", "LANDSAT", "MOD13Q1"}
    with xr.open_dataset(results / "maps" / "s2_s1_landsat_modis" / f"{TILE}.nc") as m:
        assert m["valid"].values.mean() > 0.9
    m = pd.read_csv(results / "metrics" / "gapfill_s2_s1_landsat_modis.csv")
    assert np.isfinite(m["value"]).all()


def test_update_example_equals_a_recomputation(tmp_path: Path) -> None:
    """The products updated from the October-December acquisitions equal the products of
    the same model over all dates of the year."""
    cfg = tiny("update")
    model = "gpvae_markov"
    results = run_example(tmp_path, cfg, f"results/update/{model}/{TILE}.nc",
                          f"results/maps/{model}/{TILE}.nc")
    work = tmp_path / "full"
    work.mkdir()
    demo = tmp_path / cfg["scene"]["out_dir"] / TILE
    cubes, masks = {}, {}
    for sensor, fmt, folder in (("S2", "theia", "S2"), ("S1_ASC", "s1tiling", "S1"),
                                ("S1_DES", "s1tiling", "S1")):
        cubes[sensor] = extract_cube(fmt, sensor, demo / folder, TILE, work / f"{sensor}.nc")
        masks[sensor] = compute_mask(cubes[sensor], work / f"{sensor}_mask.nc",
                                     work / f"{sensor}.csv",
                                     dilation_px=1 if sensor == "S2" else 0)
    ckpt = results / "models" / model / "best.pt"
    ref = reference_days(0, None, 10, read_checkpoint(ckpt)["span"])
    full = predict_tile(cubes, masks, ckpt, results / "downstream" / model /
                        "classifier.joblib", work / "full.nc", ref_days=ref, device="cpu")
    with xr.open_dataset(full) as a, \
            xr.open_dataset(results / "update" / model / f"{TILE}.nc") as b, \
            xr.open_dataset(results / "maps" / model / f"{TILE}.nc") as base:
        np.testing.assert_array_equal(a["valid"].values, b["valid"].values)
        # both packed (embedding step 1e-3, variance 2e-4): one step apart at most
        np.testing.assert_allclose(b["embedding"].values, a["embedding"].values, atol=1.2e-3)
        np.testing.assert_allclose(b["embedding_var"].values, a["embedding_var"].values,
                                   atol=4e-4)
        assert (a["class_map"].values == b["class_map"].values).mean() > 0.99
        # the base products (to 30 September) differ in the last months
        late = a["ref_day"].values > 280
        assert np.abs(base["embedding"].values[late] - a["embedding"].values[late]).max() > 0.01
    state = xr.open_dataset(results / "update" / model / f"{TILE}_state.nc")
    assert np.nanmax(state["t_last"].values) > 273  # the last date is now in Q4
    state.close()


def test_add_sensor_example(tmp_path: Path) -> None:
    cfg = tiny("add_sensor", landsat=True)
    base, added = "gpvae_s2_s1", "gpvae_s2_s1_landsat"
    results = run_example(tmp_path, cfg, f"results/embeddings/{base}.nc",
                          f"results/embeddings/{added}.nc",
                          f"results/metrics/gapfill_{base}.csv",
                          f"results/metrics/gapfill_{added}.csv")
    old, new = (read_checkpoint(results / "models" / m / "best.pt") for m in (base, added))
    assert all(torch.equal(v, new["model_state"][k]) for k, v in old["model_state"].items())
    assert new["init_from"]["model_name"] == base
    tables = {m: load_embeddings(results / "embeddings" / f"{m}.nc") for m in (base, added)}
    fit = np.isin(tables[base].split, ("train", "val"))
    test = tables[base].split == "test"
    acc = {}
    for m, t in tables.items():
        _, pred = fit_predict("logreg", 0, tables[base].features[fit],
                              tables[base].labels[fit], t.features[test])
        acc[m] = float((pred == t.labels[test]).mean())
    assert acc[added] >= acc[base] - 0.15, acc
    mae = {}
    for m in (base, added):
        g = pd.read_csv(results / "metrics" / f"gapfill_{m}.csv")
        mae[m] = float(g[(g.metric == "MAE") & (g.band == "all")
                         & (g.protocol == "hidden")].value.iloc[0])
    assert mae[added] <= 1.1 * mae[base], mae
