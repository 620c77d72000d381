"""Unit tests of the report figures (gpvae.report) on small synthetic files that follow
docs/contracts.md (cloud cover 1b, pixels 2, metrics.csv 3, embeddings 4, gap filling 5,
tidy metrics and confusion 6, tile products 7)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from matplotlib.image import imread

from gpvae.errors import InputError
from gpvae.report.cli import add_figures_parser
from gpvae.report.cost_table import cost_table, write_cost_html
from gpvae.report.embedding_figures import principal_components
from gpvae.report.gapfill_figures import coverage_curve, pick_examples
from gpvae.report.make import FIGURES, ReportInputs, make_report_figures
from gpvae.report.map_figures import class_names_of, embedding_rgb, stretch
from gpvae.report.metric_figures import overall_rows
from gpvae.report.palette import model_colour, model_palette

BANDS = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
CLASSES = ["maize", "wheat", "forest"]
MODELS = ["gpvae_exact", "iid_vae"]
TILES = ["T31TCJ"]


def _times(n: int, start: str, step: int) -> np.ndarray:
    return np.datetime64(start, "ns") + np.arange(n) * np.timedelta64(step, "D")


def write_pixels(path: Path, n: int = 60, seed: int = 0) -> xr.Dataset:
    """A pixel dataset (contracts 2) with S2 and S1_ASC, one year, three classes."""
    rng = np.random.default_rng(seed)
    t2, t1 = _times(36, "2022-01-05", 10), _times(30, "2022-01-03", 12)
    label = np.arange(n) % len(CLASSES)
    phase = np.linspace(0, 2 * np.pi, t2.size)
    truth = (0.2 + 0.1 * np.sin(phase)[None, :, None] * (1 + label)[:, None, None]
             + 0.01 * np.arange(len(BANDS))[None, None, :]).astype(np.float32)
    values = truth + rng.normal(0, 0.01, truth.shape).astype(np.float32)
    values[rng.random(values.shape[:2]) < 0.3] = np.nan
    s1 = rng.uniform(0.01, 0.3, (n, t1.size, 2)).astype(np.float32)
    ds = xr.Dataset(
        {"values_S2": (("sample", "time_S2", "band_S2"), values),
         "truth_S2": (("sample", "time_S2", "band_S2"), truth),
         "values_S1_ASC": (("sample", "time_S1_ASC", "band_S1_ASC"), s1),
         "class_name": (("class",), np.array(CLASSES))},
        coords={"time_S2": t2, "band_S2": BANDS, "time_S1_ASC": t1,
                "band_S1_ASC": ["VV", "VH"],
                "x": ("sample", rng.uniform(0, 100, n)), "y": ("sample", rng.uniform(0, 100, n)),
                "row": ("sample", np.arange(n, dtype=np.int32)),
                "col": ("sample", np.arange(n, dtype=np.int32)),
                "tile": ("sample", np.array(["T31TCJ"] * n)),
                "parcel_id": ("sample", np.arange(n, dtype=np.int64) // 3),
                "label": ("sample", label.astype(np.int16)),
                "split": ("sample", np.array(["train", "val", "test", "test"] * (n // 4))),
                "region": ("sample", np.array(["T31TCJ"] * n)),
                "year": ("sample", np.full(n, 2022, dtype=np.int16))},
        attrs={"sensors": "S2 S1_ASC", "epoch": "2000-01-01", "seed": seed})
    ds.to_netcdf(path)
    return ds


def write_hidden_and_gapfill(results: Path, pixels: xr.Dataset, spread: dict[str, float]
                             ) -> np.ndarray:
    """hidden.nc and one gapfill/<model>.nc per entry of ``spread`` (its predictive std)."""
    rng = np.random.default_rng(1)
    test = np.where(pixels["split"].values == "test")[0]
    obs = pixels["values_S2"].values[test]
    hidden = (np.isfinite(obs[..., 0]) & (rng.random(obs.shape[:2]) < 0.25)).astype(np.uint8)
    coords = {"sample": test, "time_S2": pixels["time_S2"].values}
    (results / "gapfill").mkdir(parents=True, exist_ok=True)
    xr.Dataset({"hidden_S2": (("sample", "time_S2"), hidden)}, coords=coords,
               attrs={"seed": 0}).to_netcdf(results / "gapfill" / "hidden.nc")
    truth = pixels["truth_S2"].values[test]
    for model, sd in spread.items():
        h = hidden[..., None].astype(bool)
        mu = np.where(h, truth + rng.normal(0, 0.01, truth.shape), np.nan)
        std = np.where(h, np.full(truth.shape, sd), np.nan)
        dims = ("sample", "time_S2", "band_S2")
        xr.Dataset({"pred_mean": (dims, mu.astype(np.float32)),
                    "pred_std": (dims, std.astype(np.float32))},
                   coords={**coords, "band_S2": BANDS}).to_netcdf(
            results / "gapfill" / f"{model}.nc")
    return test


def write_embeddings(results: Path, pixels: xr.Dataset, model: str) -> None:
    """embeddings/<model>.nc: class-dependent latent means, one invalid sample."""
    rng = np.random.default_rng(2)
    n = pixels.sizes["sample"]
    label = pixels["label"].values
    mean = rng.normal(0, 0.1, (n, 5, 4)) + label[:, None, None]
    valid = np.ones(n, dtype=np.uint8)
    valid[0], mean[0] = 0, np.nan
    (results / "embeddings").mkdir(parents=True, exist_ok=True)
    coords = {k: ("sample", pixels[k].values) for k in ("tile", "parcel_id", "label", "split",
                                                        "region", "year", "x", "y")}
    xr.Dataset({"mean": (("sample", "ref_day", "latent"), mean.astype(np.float32)),
                "var": (("sample", "ref_day", "latent"), np.ones_like(mean, np.float32)),
                "valid": ("sample", valid)},
               coords={"sample": np.arange(n), "ref_day": np.arange(5) * 70.0, **coords},
               attrs={"model": model, "method": "GP posterior at reference dates"}
               ).to_netcdf(results / "embeddings" / f"{model}.nc")


def write_metrics(results: Path, models: list[str]) -> pd.DataFrame:
    """metrics/all.csv (gapfill, classification incl. label protocols, cost) and confusions."""
    rng = np.random.default_rng(3)
    rows = []
    for model in models:
        for seed in (0, 1, 2):
            for protocol in ("hidden", "truth"):
                for metric in ("MAE", "RMSE", "CRPS", "NLL", "coverage90", "width90"):
                    for band in ("all", "B04"):
                        rows.append((model, "gapfill", protocol, "test", seed, metric,
                                     rng.uniform(0.1, 1), band, "", ""))
            for clf in ("rf", "logreg"):
                for protocol in ("parcel", "region", "year", "labels_1pct", "labels_10pct",
                                 "labels_100pct"):
                    for metric in ("OA", "kappa", "macro_f1"):
                        rows.append((model, "classification", protocol, "test", seed, metric,
                                     rng.uniform(0.4, 0.9), "", "", clf))
                    rows.append((model, "classification", protocol, "test", seed, "f1",
                                 0.5, "", "maize", clf))
            rows.append((model, "cost", "train", "train", seed, "train_seconds_per_epoch",
                         2.0 + seed, "", "", ""))
            rows.append((model, "cost", "inference", "test", seed, "pixels_per_second",
                         1000.0, "", "", ""))
    df = pd.DataFrame(rows, columns=["model", "task", "protocol", "split", "seed", "metric",
                                     "value", "band", "class", "classifier"])
    (results / "metrics").mkdir(parents=True, exist_ok=True)
    df.to_csv(results / "metrics" / "all.csv", index=False)
    for model in models:
        conf = [(model, clf, protocol, seed, t, p, int(rng.integers(0, 20)) + 30 * (t == p))
                for clf in ("rf", "logreg") for protocol in ("parcel", "region")
                for seed in (0, 1) for t in CLASSES for p in CLASSES]
        pd.DataFrame(conf, columns=["model", "classifier", "protocol", "seed", "true", "pred",
                                    "count"]).to_csv(
            results / "metrics" / f"confusion_{model}.csv", index=False)
    return df


def write_training(results: Path, model: str, lengthscales: bool) -> None:
    """models/<model>/metrics.csv with or without kernel length-scale columns."""
    rows = []
    for epoch in range(1, 6):
        for split in ("train", "val"):
            row = {"step": 10 * epoch, "epoch": epoch, "split": split,
                   "elbo": -100 / epoch if epoch > 1 else -2.6e7, "recon": -90 / epoch,
                   "kl": 10.0, "seconds": 1.5, "lr": 0.005, "noise_std_S2_B04": 0.5 / epoch}
            if split == "val":
                row |= {"gap_mae": 0.5 / epoch, "active_units": min(epoch, 3)}
            if lengthscales:
                row |= {f"matern32.lengthscale_{i}": 20.0 + epoch * (i + 1) for i in range(3)}
                row |= {f"scale.outputscale_{i}": 1.0 + 0.1 * epoch for i in range(3)}
            rows.append(row)
    (results / "models" / model).mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(results / "models" / model / "metrics.csv", index=False)


def write_cloud_cover(results: Path, tile: str, sensor: str) -> None:
    rng = np.random.default_rng(4)
    dates = pd.date_range("2022-01-01", periods=20, freq="6D")
    cloud = rng.uniform(0, 1, dates.size) if sensor == "S2" else np.zeros(dates.size)
    (results / "masks" / tile).mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"date": dates.strftime("%Y-%m-%d"), "tile": tile, "sensor": sensor,
                  "valid_fraction": 1 - cloud, "cloud_fraction": cloud,
                  "nodata_fraction": 0.0}).to_csv(
        results / "masks" / tile / f"{sensor}_cloud_cover.csv", index=False)


def write_tile(results: Path, tile: str, models: list[str]) -> None:
    """cubes/<tile>/S2.nc, masks/<tile>/S2.nc and maps/<model>/<tile>.nc + _cost.json."""
    rng = np.random.default_rng(5)
    ny = nx = 12
    y, x = np.arange(ny) * 10.0, np.arange(nx) * 10.0
    times = _times(4, "2022-03-01", 20)
    data = rng.uniform(0, 0.3, (4, len(BANDS), ny, nx)).astype(np.float32)
    valid = (rng.random((4, ny, nx)) < np.array([0.2, 0.9, 0.5, 0.6])[:, None, None])
    for d in ("cubes", "masks"):
        (results / d / tile).mkdir(parents=True, exist_ok=True)
    xr.Dataset({"data": (("time", "band", "y", "x"), data),
                "valid": (("time", "y", "x"), np.ones((4, ny, nx), np.uint8))},
               coords={"time": times, "band": BANDS, "y": y, "x": x}).to_netcdf(
        results / "cubes" / tile / "S2.nc")
    xr.Dataset({"valid": (("time", "y", "x"), valid.astype(np.uint8))},
               coords={"time": times, "y": y, "x": x}).to_netcdf(
        results / "masks" / tile / "S2.nc")
    days = np.arange(0, 365, 60.0)
    for model in models:
        cls = (np.arange(ny * nx).reshape(ny, nx) % len(CLASSES)).astype(np.int16)
        cls[0, 0] = -1
        ds = xr.Dataset(
            {"embedding": (("time", "latent", "y", "x"),
                           rng.normal(size=(days.size, 4, ny, nx)).astype(np.float32)),
             "embedding_var": (("time", "latent", "y", "x"),
                               np.ones((days.size, 4, ny, nx), np.float32)),
             "gapfilled": (("time", "band", "y", "x"),
                           rng.uniform(0, 0.3, (days.size, len(BANDS), ny, nx))),
             "gapfilled_std": (("time", "band", "y", "x"),
                               rng.uniform(0, 0.05, (days.size, len(BANDS), ny, nx))),
             "class_map": (("y", "x"), cls, {"class_names": json.dumps(CLASSES)}),
             "valid": (("y", "x"), np.ones((ny, nx), np.uint8))},
            coords={"time": np.datetime64("2022-01-01") + days.astype("timedelta64[D]"),
                    "ref_day": ("time", days), "band": BANDS, "y": y, "x": x})
        (results / "maps" / model).mkdir(parents=True, exist_ok=True)
        ds.to_netcdf(results / "maps" / model / f"{tile}.nc")
        (results / "maps" / model / f"{tile}_cost.json").write_text(json.dumps(
            {"seconds": 3.0, "pixels": ny * nx, "pixels_per_second": 48.0,
             "peak_memory_mib": 120.0, "device": "cpu"}))


def write_synthetic_results(results: Path, models: list[str] = MODELS,
                            tiles: list[str] = TILES) -> dict:
    """Every file the report reads, small and synthetic; returns the ReportInputs fields."""
    results.mkdir(parents=True, exist_ok=True)
    (results / "samples").mkdir(exist_ok=True)
    pixels = write_pixels(results / "samples" / "pixels.nc")
    gap_sets = [*models, "linear", "gp"]
    write_hidden_and_gapfill(results, pixels, {m: 0.01 + 0.01 * i
                                               for i, m in enumerate(gap_sets)})
    for m in ["raw_linear", *models]:
        write_embeddings(results, pixels, m)
    write_metrics(results, ["raw_linear", *models])
    for i, m in enumerate(models):
        write_training(results, m, lengthscales=i == 0)
    for t in tiles:
        for s in ("S2", "S1_ASC"):
            write_cloud_cover(results, t, s)
        write_tile(results, t, models)
    r = results
    return dict(
        cloud_cover=sorted(r.glob("masks/*/*_cloud_cover.csv")),
        pixels=r / "samples" / "pixels.nc", hidden=r / "gapfill" / "hidden.nc",
        training=[r / "models" / m / "metrics.csv" for m in models],
        gapfill=[r / "gapfill" / f"{m}.nc" for m in gap_sets],
        embeddings=[r / "embeddings" / f"{m}.nc" for m in ["raw_linear", *models]],
        metrics=r / "metrics" / "all.csv",
        confusion=[r / "metrics" / f"confusion_{m}.csv" for m in ["raw_linear", *models]],
        maps=[r / "maps" / m / f"{tiles[0]}.nc" for m in models],
        cube=r / "cubes" / tiles[0] / "S2.nc", mask=r / "masks" / tiles[0] / "S2.nc",
        tile_costs=sorted(r.glob("maps/*/*_cost.json")), tile=tiles[0])


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return write_synthetic_results(tmp_path_factory.mktemp("synthetic") / "results")


def _assert_not_blank(png: Path) -> None:
    image = imread(png)
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.02, f"{png} looks blank"


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_every_figure_draws_from_contract_files(synthetic: dict, tmp_path: Path,
                                                name: str) -> None:
    out = make_report_figures(name, tmp_path / f"{name}.png", ReportInputs(**synthetic))
    assert out.exists()
    _assert_not_blank(out)
    assert not list(tmp_path.glob(".*.tmp")), "temporary file left behind"


def test_figures_without_models_are_placeholders_not_errors(synthetic: dict,
                                                            tmp_path: Path) -> None:
    empty = ReportInputs(training=[], embeddings=[], maps=[], confusion=[])
    for name in ("training", "embeddings", "confusion"):
        _assert_not_blank(make_report_figures(name, tmp_path / f"{name}.png", empty))


def test_cost_table_combines_training_metrics_and_tile_costs(synthetic: dict,
                                                             tmp_path: Path) -> None:
    out = make_report_figures("cost", tmp_path / "cost.html", ReportInputs(**synthetic))
    page = out.read_text()
    assert "<table" in page and "<caption>" in page
    for model in MODELS:
        assert model in page
    from gpvae.report import load
    table = cost_table(load.read_training_metrics(synthetic["training"]),
                       load.read_tidy_metrics(synthetic["metrics"]),
                       load.read_json_files(synthetic["tile_costs"]))
    # 5 epochs x (train + val) x 1.5 s
    assert table.loc["gpvae_exact", "train time (s)"] == pytest.approx(15.0)
    assert table.loc["gpvae_exact", "epochs"] == 5
    # seeds 0, 1, 2 -> 2, 3, 4 s per epoch: mean 3
    assert table.loc["iid_vae", "train_seconds_per_epoch"] == pytest.approx(3.0)
    assert table.loc["iid_vae", "maps: peak_memory_mib"] == pytest.approx(120.0)
    assert "maps: device" not in table.columns


def test_empty_cost_table_says_so(tmp_path: Path) -> None:
    page = write_cost_html(pd.DataFrame(), tmp_path / "c.html").read_text()
    assert "No cost information" in page


def test_coverage_curve_is_nominal_for_a_calibrated_gaussian() -> None:
    rng = np.random.default_rng(0)
    sd = rng.uniform(0.5, 2.0, 40000)
    mu = rng.normal(size=sd.size)
    y = mu + sd * rng.normal(size=sd.size)
    levels = np.array([0.5, 0.8, 0.9])
    np.testing.assert_allclose(coverage_curve(y, mu, sd, levels), levels, atol=0.01)
    # an over-confident model (std halved) covers less than nominal
    assert (coverage_curve(y, mu, sd / 2, levels) < levels - 0.1).all()
    y[:10] = np.nan
    assert np.isfinite(coverage_curve(y, mu, sd, levels)).all()
    assert np.isnan(coverage_curve(np.full(3, np.nan), mu[:3], sd[:3], levels)).all()


def test_principal_components_find_the_dominant_direction() -> None:
    rng = np.random.default_rng(0)
    t = rng.normal(size=500)
    x = np.stack([t, t, rng.normal(scale=0.01, size=500)], axis=1)
    scores, explained = principal_components(x, 2)
    assert abs(np.corrcoef(scores[:, 0], t)[0, 1]) > 0.99
    assert explained[0] > 0.6 and explained.sum() <= 1.0 + 1e-9
    scores, explained = principal_components(x[:, :1], 3)
    assert scores.shape == (500, 3) and explained[1] == 0


def test_stretch_maps_to_unit_range_and_nan_to_white() -> None:
    image = np.random.default_rng(0).uniform(0, 0.3, (8, 8, 3))
    image[0, 0] = np.nan
    out = stretch(image)
    assert out.min() >= 0 and out.max() <= 1
    np.testing.assert_array_equal(out[0, 0], 1.0)
    rgb = embedding_rgb(np.random.default_rng(1).normal(size=(4, 6, 6)))
    assert rgb.shape == (6, 6, 3) and np.isfinite(rgb).all()


def test_class_names_attribute_forms() -> None:
    for attr in (json.dumps(CLASSES), "maize, wheat, forest", CLASSES):
        assert class_names_of(xr.DataArray([1], attrs={"class_names": attr})) == CLASSES


def test_examples_are_reproducible_and_have_hidden_points(synthetic: dict) -> None:
    hidden = xr.open_dataset(synthetic["hidden"])["hidden_S2"]
    a, b = pick_examples(hidden, 3, seed=4), pick_examples(hidden, 3, seed=4)
    np.testing.assert_array_equal(a, b)
    assert (hidden.sel(sample=a).sum("time_S2") > 0).all()
    assert pick_examples(hidden * 0, 3, seed=0).size == 0


def test_overall_rows_drop_per_band_and_per_class_rows(synthetic: dict) -> None:
    from gpvae.report.load import read_tidy_metrics
    df = read_tidy_metrics(synthetic["metrics"])
    gap = overall_rows(df, "gapfill")
    assert set(gap["band"]) == {"all"} and len(gap)
    cls = overall_rows(df, "classification")
    assert "f1" not in set(cls["metric"]) and len(cls)


def test_model_colours_are_stable_and_distinct() -> None:
    names = ["gpvae_exact", "gpvae_sparse", "iid_vae", "linear", "gp", "raw_linear"]
    palette = model_palette(names)
    assert len(set(palette.values())) == len(names)
    assert model_colour("my_new_model") == model_colour("my_new_model")
    assert model_palette(reversed(names)) == palette


def test_bad_input_names_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "S2_cloud_cover.csv"
    bad.write_text("date,tile\n2022-01-01,T31TCJ\n")
    with pytest.raises(InputError) as err:
        make_report_figures("timeline", tmp_path / "t.png", ReportInputs(cloud_cover=[bad]))
    assert str(bad) in str(err.value) and "sensor" in str(err.value)
    with pytest.raises(InputError, match="pixels"):
        make_report_figures("classes", tmp_path / "c.png", ReportInputs())
    assert not (tmp_path / "t.png").exists()


def test_cli_parser_accepts_the_rule_arguments(tmp_path: Path) -> None:
    import argparse
    parser = argparse.ArgumentParser()
    add_figures_parser(parser.add_subparsers(dest="command"))
    a = parser.parse_args(["figures", "examples", "--pixels", "p.nc", "--hidden", "h.nc",
                           "--gapfill", "a.nc", "b.nc", "--examples", "3", "--out", "o.png"])
    assert a.figure == "examples" and a.gapfill == ["a.nc", "b.nc"] and a.examples == 3
    a = parser.parse_args(["figures", "training", "--training", "--out", "o.png"])
    assert a.training == []


def test_display_bands_fall_back_to_false_colour_and_grey() -> None:
    from gpvae.io.sensors import builtin
    from gpvae.report.map_figures import display_bands

    s2 = builtin("S2").composites  # the registry's composites, true colour first
    assert display_bands(["B02", "B03", "B04", "B08"], s2) == (["B04", "B03", "B02"], "RGB")
    assert display_bands(["B04", "B08", "B11"], s2) == (["B11", "B08", "B04"], "B11/B08/B04")
    assert display_bands(["B08"], s2) == (["B08", "B08", "B08"], "B08")
    assert display_bands(["B02", "B03", "B04"]) == (["B02", "B02", "B02"], "B02")
