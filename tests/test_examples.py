"""Every config/examples/*.yaml through the whole pipeline (`rule all`), on real files or
fixtures: the data stages give a physically plausible pixel dataset and the model trains.

The example configs are loaded as written; only input paths, `results` and `device` are
rewritten into the test's working folder. Real files (../shared/data/real) are optional:
their tests skip when absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from conftest import ROOT, run_snakemake, tiny_workdir
from example_fixtures import (
    LANDSAT_FROM_S2,
    SCL_CLOUD,
    TILE,
    SceneSeries,
    landsat_series,
    scene_series,
    write_generic_cube,
    write_generic_s1_cube,
    write_grid_parcels,
    write_landsat_cube,
    write_landsat_parcels,
    write_parcels,
    write_sen2cor_set,
    write_stac_catalog,
)

pytestmark = pytest.mark.slow

EXAMPLES = ROOT / "config" / "examples"
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
OPENEO_S2 = REAL / "openeo_gfmap" / "s2_l2a_belgium_2023-04.nc"
OPENEO_S1 = REAL / "openeo_gfmap" / "s1_grd_belgium_2023-04.nc"
WORLDCEREAL = REAL / "worldcereal" / "worldcereal_public_extractions_2017.parquet"
SITS = REAL / "sits" / "samples_modis_4bands.parquet"


def real(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"real data absent: {path}")
    return path


#: Training settings of the tests: the examples train with the default budget (3000 steps),
#: which checks nothing more than two passes do and would take far too long here.
TEST_TRAIN = {"epochs": 2, "batch_size": 64}


def example(name: str) -> dict:
    """An example config as a user gets it, run on CPU into `results/` of the workdir, its
    models trained for two passes only (:data:`TEST_TRAIN`)."""
    cfg = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    cfg.update(results="results", device="cpu")
    for model in cfg["models"].values():
        model["train"] = {**TEST_TRAIN, **(model.get("train") or {})}
    return cfg


def run_example(work: Path, cfg: dict, *extra: str) -> Path:
    """Run ``cfg`` in ``work`` up to its trained models (+ ``extra`` targets, e.g. the
    classification table); returns the results folder. The full `rule all` of every input
    kind is the same chain as the demo's, which tests/test_pipeline.py runs end to end."""
    tiny_workdir(work, yaml.safe_dump(cfg, sort_keys=False))
    targets = [f"results/models/{m}/best.pt" for m in cfg["models"]] + list(extra)
    proc = run_snakemake(work, *targets)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    return work / "results"


def check_model(results: Path, model: str, epochs: int) -> None:
    folder = results / "models" / model
    assert (folder / "best.pt").stat().st_size > 0
    m = pd.read_csv(folder / "metrics.csv")
    assert {"train", "val"} <= set(m["split"]) and m["epoch"].max() == epochs
    assert np.isfinite(m[["elbo", "recon", "kl"]].to_numpy()).all()


def check_s2(ds: xr.Dataset) -> np.ndarray:
    """S2 reflectance in 0..1.5 with finite values; returns them."""
    v = ds["values_S2"].values
    assert np.isfinite(v).mean() > 0.05
    assert np.nanmin(v) >= 0.0 and np.nanmax(v) <= 1.5
    return v


def check_s1(ds: xr.Dataset, sensor: str) -> None:
    """S1 stored linear (> 0) with dB medians of real backscatter, VV above VH."""
    v = ds[f"values_{sensor}"]
    assert np.isfinite(v.values).any() and np.nanmin(v.values) > 0
    db = {p: float(np.nanmedian(10 * np.log10(v.sel({f"band_{sensor}": p}).values)))
          for p in ("VV", "VH")}
    assert -25 < db["VV"] < 0 and -35 < db["VH"] < db["VV"] - 2, db


def check_labels(ds: xr.Dataset, classes: set[str]) -> None:
    assert set(ds["class_name"].values.astype(str)) == classes
    label = ds["label"].values
    assert (label >= 0).all() and (label < len(classes)).all()
    assert {"train", "val"} <= set(ds["split"].values.astype(str))


# ---- fixture-backed examples (always run) ------------------------------------------------

@pytest.fixture(scope="module")
def series() -> SceneSeries:
    return scene_series()


def check_fixture_run(results: Path, series: SceneSeries, sensors: set[str]) -> xr.Dataset:
    """Pixel dataset of a fixture run: sensors, labels, reflectance = the encoded truth at
    clear pixels, every cloud (SCL 9) observation masked."""
    ds = xr.open_dataset(results / "samples" / "pixels.nc")
    assert set(ds.attrs["sensors"].split()) == sensors
    check_labels(ds, set(series.parcels["class"]))
    v = check_s2(ds)
    np.testing.assert_array_equal(ds["time_S2"].values.astype("datetime64[D]"),
                                  series.times.astype("datetime64[D]"))
    row, col = ds["row"].values, ds["col"].values
    cloudy = series.scl10()[:, row, col].T == SCL_CLOUD  # (sample, time)
    assert cloudy.any() and np.isnan(v[cloudy]).all()
    b04 = list(ds["band_S2"].values).index("B04")
    truth = series.reflectance[:, 2, row, col].T  # B04 is the third canonical band
    clear = np.isfinite(v[..., b04])
    assert clear.mean() > 0.4
    np.testing.assert_allclose(v[..., b04][clear], truth[clear], atol=1.5e-4)
    return ds


def test_sen2cor_example(tmp_path: Path, series: SceneSeries) -> None:
    cfg = example("sen2cor")
    cfg["inputs"]["S2"]["path"] = str(write_sen2cor_set(tmp_path / "safe", series))
    cfg["inputs"]["parcels"]["path"] = str(write_parcels(tmp_path / "parcels.gpkg", series))
    cfg["tiles"] = [TILE]
    results = run_example(tmp_path / "work", cfg)
    ds = check_fixture_run(results, series, {"S2"})
    assert len(ds["band_S2"]) == 10
    check_model(results, "gpvae_s2", 2)


def test_stac_example(tmp_path: Path, series: SceneSeries) -> None:
    pytest.importorskip("pystac")
    cfg = example("stac")
    cfg["inputs"]["S2"]["path"] = str(write_stac_catalog(tmp_path / "stac", series))
    cfg["inputs"]["parcels"]["path"] = str(write_parcels(tmp_path / "parcels.gpkg", series))
    cfg["tiles"] = [TILE]
    results = run_example(tmp_path / "work", cfg)
    check_fixture_run(results, series, {"S2"})
    check_model(results, "gpvae_s2", 2)


def test_generic_example(tmp_path: Path, series: SceneSeries) -> None:
    cfg = example("generic")
    inputs = cfg["inputs"]
    inputs["S2"]["path"] = str(write_generic_cube(tmp_path / "cubes" / "S2.nc", series))
    inputs["S1"]["path"] = str(write_generic_s1_cube(tmp_path / "cubes" / "S1.nc", series))
    inputs["parcels"]["path"] = str(write_parcels(tmp_path / "parcels.gpkg", series))
    cfg["tiles"] = [TILE]
    results = run_example(tmp_path / "work", cfg)
    ds = check_fixture_run(results, series, {"S2", "S1_DES"})
    # the no-data strip of the first date (QAI bit 0, fill value) is masked
    strip = ds["row"].values < 2
    assert strip.any() and np.isnan(ds["values_S2"].values[strip, 0]).all()
    check_s1(ds, "S1_DES")
    # S1 values are the cube's dB converted back to linear sigma0
    row, col = ds["row"].values, ds["col"].values
    vv = ds["values_S1_DES"].sel(band_S1_DES="VV").values
    truth = series.sigma0["VV"][:, row, col].T
    ok = np.isfinite(vv)
    np.testing.assert_allclose(vv[ok], truth[ok], rtol=1e-4)
    check_model(results, "gpvae_fused", 2)


def test_landsat_multiyear_example(tmp_path: Path) -> None:
    """Any sensor, any band, many years: a 2-year Landsat C2 L2 cube (uint16 DN, QA_PIXEL and
    QA_RADSAT rules combined), one sample per pixel over the whole range, a sparse GP-VAE
    whose inducing dates cover that range, gap filling, classification and the tile map."""
    series = landsat_series()
    cfg = example("landsat")
    inputs = cfg["inputs"]
    inputs["LANDSAT"]["path"] = str(write_landsat_cube(tmp_path / "cubes" / "ls.nc", series))
    inputs["parcels"]["path"] = str(write_landsat_parcels(tmp_path / "parcels.gpkg", series))
    cfg["tiles"] = [TILE]
    results = run_example(tmp_path / "work", cfg, "results/metrics/all.csv",
                          f"results/report/maps/{TILE}.png")
    ds = xr.open_dataset(results / "samples" / "pixels.nc")
    assert ds.attrs["sensors"] == "LANDSAT"
    assert list(ds["band_LANDSAT"].values) == list(LANDSAT_FROM_S2)
    # span all: one sample per pixel, from the first date to the day after the last
    first, last = series.times[[0, -1]].astype("datetime64[D]")
    assert (ds["start"].values.astype("datetime64[D]") == first).all()
    assert (ds["end"].values.astype("datetime64[D]") == last + 1).all()
    assert len(set(zip(ds["row"].values, ds["col"].values, strict=True))) == ds.sizes["sample"]
    # DN * 2.75e-5 - 0.2 (the sensor's scale: no scale in the config); cloud AND saturation
    # flags both masked
    v = ds["values_LANDSAT"].values
    row, col = ds["row"].values, ds["col"].values
    truth = series.reflectance[:, :, row, col].transpose(2, 0, 1)  # (sample, time, band)
    clear = np.isfinite(v)
    assert clear.mean() > 0.5
    np.testing.assert_allclose(v[clear], truth[clear], atol=3e-5)
    assert np.isnan(v[series.cloud[:, row, col].T]).all()
    saturated = series.saturated[:, row, col].T
    assert saturated.any() and np.isnan(v[saturated]).all()
    # the model's inducing dates follow the data's span (time_range null), stored resolved
    from gpvae.data.checkpoint import read_checkpoint
    state = read_checkpoint(results / "models" / "gpvae_sparse" / "best.pt")
    span_days = float((last + 1 - first).astype(int))
    assert state["span"] == [0.0, span_days]
    assert state["model_config"]["time_range"] == [0.0, span_days]
    assert state["sensors"]["LANDSAT"]["scale"] == 2.75e-5
    emb = xr.open_dataset(results / "embeddings" / "gpvae_sparse.nc")
    assert emb["ref_day"].values[-1] > 365 and emb["ref_day"].values[-1] <= span_days
    tile = xr.open_dataset(results / "maps" / "gpvae_sparse" / f"{TILE}.nc")
    assert tile.attrs["span_start"] == str(first) and list(tile["band"].values)[3] == "SR_B4"
    metrics = pd.read_csv(results / "metrics" / "all.csv")
    gap = metrics[(metrics.task == "gapfill") & (metrics.metric == "MAE")]
    # the model and every baseline of the example (linear, whittaker, scene_mean, ...)
    baselines = set(cfg["gapfill"]["baselines"])
    assert "linear" in baselines
    assert set(gap.model) == {"gpvae_sparse", *baselines} and np.isfinite(gap.value).all()
    check_model(results, "gpvae_sparse", 2)


# ---- real files (skip when ../shared is absent) -------------------------------------------

def test_openeo_example_on_real_cubes(tmp_path: Path) -> None:
    s2, s1 = real(OPENEO_S2), real(OPENEO_S1)
    cfg = example("openeo")
    assert cfg["inputs"]["S2"]["path"].endswith(OPENEO_S2.name)
    assert cfg["inputs"]["S1"]["path"].endswith(OPENEO_S1.name)
    with xr.open_dataset(s2) as ds:  # parcels over the cubes' grid (10 m, pixel centres)
        x, y = ds["x"].values, ds["y"].values
    bounds = (x.min() - 5, y.min() - 5, x.max() + 5, y.max() + 5)
    classes = ("wheat", "maize", "grassland", "potato")
    parcels = write_grid_parcels(tmp_path / "parcels.gpkg", bounds=bounds, crs="EPSG:32631",
                                 classes=classes)
    cfg["inputs"]["S2"]["path"] = str(s2)
    cfg["inputs"]["S1"]["path"] = str(s1)
    cfg["inputs"]["parcels"]["path"] = str(parcels)
    tile = cfg["tiles"][0]
    results = run_example(tmp_path / "work", cfg, f"results/report/maps/{tile}.png")
    ds = xr.open_dataset(results / "samples" / "pixels.nc")
    assert set(ds.attrs["sensors"].split()) == {"S2", "S1_ASC"}
    check_labels(ds, set(classes))
    assert list(ds["band_S2"].values) == ["B04", "B08", "B11"]
    v = check_s2(ds)
    # no BOA offset in the harmonised values: vegetation red stays positive and low
    assert 0.0 < np.nanmedian(v[..., 0]) < 0.15
    # SCL clouds masked: no bright red (clouds are > 0.15 in B04 in these cubes)
    assert np.nanpercentile(v[..., 0], 99) < 0.2
    check_s1(ds, "S1_ASC")
    assert set(ds["year"].values.tolist()) == {2023}
    check_model(results, "gpvae_fused", 2)


def test_worldcereal_example_on_real_table(tmp_path: Path) -> None:
    src = real(WORLDCEREAL)
    cfg = example("worldcereal")
    assert cfg["inputs"]["table"]["path"].endswith(WORLDCEREAL.name)
    cfg["inputs"]["table"]["path"] = str(src)
    results = run_example(tmp_path / "work", cfg,
                          "results/metrics/classification_gpvae_fused.csv")
    ds = xr.open_dataset(results / "samples" / "pixels.nc")
    df = pd.read_parquet(src)
    assert ds.sizes["sample"] == len(df)
    assert set(ds.attrs["sensors"].split()) == {"S2", "S1_DES"}
    check_labels(ds, set(df["sampling_label"].astype(str)))
    names = ds["class_name"].values.astype(str)[ds["label"].values]
    np.testing.assert_array_equal(names, df["sampling_label"].to_numpy().astype(str))
    v = check_s2(ds)
    assert np.nanpercentile(v, 99) < 1.0
    check_s1(ds, "S1_DES")
    check_model(results, "gpvae_fused", 2)
    # crop-type classification from the embeddings, scored on the held-out test split
    scores = pd.read_csv(results / "metrics" / "classification_gpvae_fused.csv")
    oa = scores[(scores["metric"] == "OA") & (scores["protocol"] == "parcel")]["value"]
    assert len(oa) > 0 and (oa > 1.0 / ds["class_name"].size).all()


def test_sits_example_on_real_table(tmp_path: Path) -> None:
    """The sits MODIS table (MOD13Q1 NDVI, EVI, NIR, MIR; one Sep-Aug season per sample) through
    training, gap filling and classification, split grouped by point."""
    src = real(SITS)
    cfg = example("sits")
    assert cfg["inputs"]["table"]["path"].endswith(SITS.name)
    cfg["inputs"]["table"]["path"] = str(src)
    results = run_example(tmp_path / "work", cfg,
                          "results/metrics/gapfill_gpvae_markov.csv",
                          "results/metrics/gapfill_linear.csv",
                          "results/metrics/classification_gpvae_markov.csv")
    ds = xr.open_dataset(results / "samples" / "pixels.nc")
    df = pd.read_parquet(src)
    assert ds.sizes["sample"] == df["sample_id"].nunique() == 1218
    assert ds.attrs["sensors"] == "MOD13Q1"
    assert list(ds["band_MOD13Q1"].values) == ["NDVI", "EVI", "NIR", "MIR"]
    check_labels(ds, set(df["label"]))
    # values are the table's (already physical), 23 dates per sample, all inside its season
    v = ds["values_MOD13Q1"].values
    assert (np.isfinite(v[..., 0]).sum(axis=1) == 23).all()
    first = df.sort_values(["sample_id", "date"]).groupby("sample_id").first()
    np.testing.assert_allclose(np.nanmax(v[..., 0], axis=1).max(), df["NDVI"].max(), rtol=1e-6)
    start = ds["start"].values.astype("datetime64[D]")
    assert (start.astype(str).astype("U10") == np.char.add(
        start.astype("datetime64[Y]").astype(str), "-09-01")).all()
    assert (start <= pd.to_datetime(first["date"]).to_numpy().astype("datetime64[D]")).all()
    # grouped by point: no (longitude, latitude) in two splits
    points = pd.DataFrame({"x": ds["x"].values, "y": ds["y"].values,
                           "split": ds["split"].values})
    assert points.groupby(["x", "y"])["split"].nunique().max() == 1
    assert points.groupby(["x", "y"]).ngroups == 732
    hidden = xr.open_dataset(results / "gapfill" / "hidden.nc")
    assert hidden.attrs["sensor"] == "MOD13Q1" and int(hidden["hidden_MOD13Q1"].sum()) > 0
    gap = pd.concat([pd.read_csv(results / "metrics" / f"gapfill_{m}.csv")
                     for m in ("gpvae_markov", "linear")])
    mae = gap[(gap.metric == "MAE") & (gap.band == "all") & (gap.protocol == "hidden")]
    assert len(mae) == 2 and (mae.value < 0.5).all()
    check_model(results, "gpvae_markov", 2)
    scores = pd.read_csv(results / "metrics" / "classification_gpvae_markov.csv")
    oa = scores[(scores["metric"] == "OA") & (scores["protocol"] == "parcel")]["value"]
    assert len(oa) > 0 and (oa > 0.5).all()  # 4 classes: chance is about 0.3
