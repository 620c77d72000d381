"""Tile products (contracts section 7): grid kept, chunking invisible, all-cloudy pixels NaN."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import affine
import netCDF4
import numpy as np
import pytest
import rasterio
import torch
import xarray as xr
from fixtures_pixels import CLASS_NAMES, write_pixels
from rasterio.windows import Window

import gpvae.evaluate.tile as tile_module
from gpvae.errors import InputError
from gpvae.evaluate.downstream import EmbeddingTable, make_classifier, save_classifier
from gpvae.evaluate.tile import (
    auto_sizes,
    list_blocks,
    predict_block,
    predict_pixels,
    predict_tile,
    read_ahead,
    tile_blocks,
)
from gpvae.evaluate.tile_gather import gather_tile
from gpvae.evaluate.tile_geotiff import ScatterMoments, geotiff_paths
from gpvae.evaluate.tile_inputs import TileInputs
from gpvae.io.cube import open_cube, write_cube
from gpvae.io.maskfile import mask_writer
from gpvae.io.product import mid_index
from gpvae.io.sensors import S1_BANDS, S2_BANDS
from gpvae.models.build import load_model
from gpvae.train.loop import train_model

H, W = 37, 29  # not divisible by the chunk size 16
CRS = "EPSG:32631"
TRANSFORM = affine.Affine(10.0, 0.0, 300000.0, 0.0, -10.0, 4800000.0)
REF_DAYS = np.arange(0.0, 365.0, 30.0)
CLOUDY = (slice(0, 5), slice(0, 6))  # every date masked for every sensor there
MODEL_CFG = {"type": "gpvae", "prior": "sparse", "num_inducing": 8, "latent_dim": 3, "hidden": 16,
             "decoder_layers": 0, "sensors": ["S2", "S1_ASC"],
             "train": {"epochs": 1, "batch_size": 24, "seed": 0}}


def _cube_and_mask(d, sensor: str, times: np.ndarray, rng: np.random.Generator,
                   all_cloudy: bool) -> tuple:
    """A cube with plausible values and a mask file (30 % clouds, CLOUDY block masked)."""
    doy = (times.astype("datetime64[D]") - times.astype("datetime64[Y]")).astype(float)
    peak = rng.uniform(120, 220, (H, W))
    veg = np.exp(-((doy[:, None, None] - peak) / 40.0) ** 2)  # (T, H, W)
    if sensor == "S2":
        soil = np.linspace(0.08, 0.25, 10)[None, :, None, None]
        green = np.linspace(0.03, 0.4, 10)[None, :, None, None]
        data = soil + veg[:, None] * (green - soil)
        bands = S2_BANDS
    else:
        db = np.stack([-14 + 5 * veg, -21 + 7 * veg], axis=1)
        data = 10 ** (db / 10)
        bands = S1_BANDS
    data = data + rng.normal(0, 0.003 if sensor == "S2" else 0.0005, data.shape)
    valid = np.ones((times.size, H, W), np.uint8)
    valid[(slice(None),) + CLOUDY] = 0  # outside the swath for S1, no data for S2
    data = np.where(valid[:, None].astype(bool), data, np.nan).astype(np.float32)
    cube_path = write_cube(d / f"{sensor}.nc", data=data, valid=valid, times=times,
                           bands=bands, crs=CRS, transform=TRANSFORM, sensor=sensor,
                           tile="T31TCJ", radiometry="surface_reflectance" if sensor == "S2"
                           else "sigma0_linear")
    usable = valid & (rng.random(valid.shape) > (0.3 if sensor == "S2" else 0.0))
    if all_cloudy:
        usable[:] = 0
    with open_cube(cube_path) as cube, mask_writer(d / f"mask_{sensor}.nc", cube,
                                                   attrs={"mask_policy": "test"}) as var:
        var[:] = usable.astype(np.uint8)
    return cube_path, d / f"mask_{sensor}.nc"


def write_tile(d, *, all_cloudy: bool = False) -> tuple[dict, dict]:
    """S2 every 10 days over 2020-12 .. 2021-12 (latest year 2021), S1_ASC every 12 days."""
    rng = np.random.default_rng(3)
    d.mkdir(parents=True, exist_ok=True)
    s2 = (np.datetime64("2020-12-02") + np.arange(0, 390, 10).astype("timedelta64[D]"))
    s1 = (np.datetime64("2021-01-03") + np.arange(0, 360, 12).astype("timedelta64[D]"))
    cubes, masks = {}, {}
    for sensor, times in (("S2", s2), ("S1_ASC", s1)):
        cubes[sensor], masks[sensor] = _cube_and_mask(
            d, sensor, times.astype("datetime64[ns]") + np.timedelta64(10, "h"), rng,
            all_cloudy)
    return cubes, masks


def write_classifier(path, ref_days: np.ndarray, latent_dim: int):
    """A random forest on random features of the (ref_day, latent) layout."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, ref_days.size * latent_dim))
    y = np.arange(60) % len(CLASS_NAMES)
    pipe = make_classifier("rf", 0).fit(x, y)
    layout = {"variables": ["mean"], "dims": ["ref_day", "latent"],
              "sizes": [ref_days.size, latent_dim], "ref_day": ref_days.tolist()}
    table = EmbeddingTable(x, y, np.array([]), np.array([]), np.array([]), list(CLASS_NAMES),
                           "tiny", layout)
    return save_classifier(path, pipe, table)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("tile")
    pixels = write_pixels(d / "pixels.nc", n_samples=48, sensors=("S2", "S1_ASC"))
    ckpt = train_model(pixels, "tiny", MODEL_CFG, d / "model", device="cpu")
    cubes, masks = write_tile(d / "tile")
    clf = write_classifier(d / "rf.joblib", REF_DAYS, MODEL_CFG["latent_dim"])
    chunked = predict_tile(cubes, masks, ckpt, clf, d / "maps" / "T31TCJ.nc",
                           ref_days=REF_DAYS, chunk_px=16, device="cpu", batch_size=100)
    blocks = predict_tile(cubes, masks, ckpt, clf, d / "blocks" / "T31TCJ.nc",
                          ref_days=REF_DAYS, chunk_px=16, device="cpu", batch_size=100,
                          block_px=16)
    whole = predict_tile(cubes, masks, ckpt, clf, d / "whole" / "T31TCJ.nc",
                         ref_days=REF_DAYS, chunk_px=64, device="cpu")
    return {"d": d, "ckpt": ckpt, "cubes": cubes, "masks": masks, "clf": clf,
            "chunked": chunked, "blocks": blocks, "whole": whole}


def test_product_keeps_grid_and_layout(setup):
    with xr.open_dataset(setup["chunked"]) as ds, open_cube(setup["cubes"]["S2"]) as cube:
        assert ds["embedding"].dims == ("time", "latent", "y", "x")
        assert ds["embedding"].shape == (REF_DAYS.size, 3, H, W)
        assert ds["gapfilled"].dims == ("time", "band", "y", "x")
        assert ds["gapfilled_std"].shape == (REF_DAYS.size, 10, H, W)
        assert ds["class_map"].dtype == np.int16 and ds["valid"].dtype == np.uint8
        assert json.loads(ds["class_map"].attrs["class_names"]) == CLASS_NAMES
        assert ds["class_map"].attrs["flag_meanings"].split() == CLASS_NAMES
        np.testing.assert_array_equal(ds["x"].values, cube["x"].values)
        np.testing.assert_array_equal(ds["y"].values, cube["y"].values)
        np.testing.assert_array_equal(ds["ref_day"].values, REF_DAYS)
        # a real time axis: the span's start (2021-01-01) plus the reference days
        assert np.issubdtype(ds["time"].dtype, np.datetime64)
        assert str(ds["time"].values[0])[:10] == "2021-01-01"
        assert str(ds["time"].values[1])[:10] == "2021-01-31"
        assert ds["embedding"].attrs["grid_mapping"] == "spatial_ref"
        gt = [float(v) for v in ds["spatial_ref"].attrs["GeoTransform"].split()]
        assert affine.Affine.from_gdal(*gt) == TRANSFORM
        assert rasterio.crs.CRS.from_wkt(ds["spatial_ref"].attrs["crs_wkt"]) == \
            rasterio.crs.CRS.from_user_input(CRS)
        assert ds.attrs["year"] == 2021  # latest year of the S2 cube
        assert ds.attrs["method"].startswith("gpvae/sparse: Gaussian-process posterior")
        classes = ds["class_map"].values
        assert set(np.unique(classes)) <= {-1, 0, 1, 2}
        g = ds["gapfilled"].values[:, :, ds["valid"].values == 1]
        assert np.isfinite(g).all() and (ds["gapfilled_std"].values[
            :, :, ds["valid"].values == 1] > 0).all()
        assert np.nanmedian(g) == pytest.approx(0.2, abs=0.15)  # reflectance, not normalised
        times = ds["time"].values
    with netCDF4.Dataset(setup["chunked"]) as nc:  # packed on disk
        for name, dtype, scale in (("embedding", "int16", 1e-3), ("embedding_var", "uint16",
                                                                   2e-4),
                                   ("gapfilled", "int16", 1e-4), ("gapfilled_std", "uint16",
                                                                   1e-4)):
            var = nc.variables[name]
            assert var.dtype == np.dtype(dtype), name
            assert var.getncattr("scale_factor") == pytest.approx(scale, rel=1e-6), name
    paths = geotiff_paths(setup["chunked"], ["class_map", "embedding_rgb", "rgb"])
    mid = mid_index(REF_DAYS)
    for name, path in paths.items():
        with rasterio.open(path) as src:
            assert src.crs == rasterio.crs.CRS.from_user_input(CRS), name
            assert src.transform == TRANSFORM and (src.height, src.width) == (H, W)
            assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG", name
            if name == "class_map":
                np.testing.assert_array_equal(src.read(1), np.where(classes < 0, 255, classes))
                assert src.nodata == 255 and src.dtypes[0] == "uint8"
                assert src.colormap(1)[0][:3] == (0x1F, 0x77, 0xB4)  # tab10 blue
            elif name == "rgb":
                date = str(times[mid])[:10]
                assert src.descriptions == (f"B04 {date}", f"B03 {date}", f"B02 {date}")
                assert src.dtypes[0] == "int16" and src.scales[0] == pytest.approx(1e-4)
            else:
                assert src.count == 3 and src.descriptions[0].startswith("PC1 ")
    aux = ET.parse(f"{paths['class_map']}.aux.xml").getroot()
    assert [c.text for c in aux.iter("Category")] == CLASS_NAMES
    rows = [[f.text for f in row] for row in aux.iter("Row")]
    assert [r[1] for r in rows] == CLASS_NAMES and rows[0][:1] == ["0"]
    cost = json.loads(setup["chunked"].with_name("T31TCJ_cost.json").read_text())
    assert cost["pixels"] == H * W and cost["chunk_px"] == 16 and cost["device"] == "cpu"
    assert cost["pixels_per_second"] > 0 and cost["peak_rss_mib"] > 0
    assert cost["bytes"] == sum(setup["chunked"].with_name(f).stat().st_size
                                for f in cost["files"])


def test_block_mosaic_is_byte_identical_to_the_whole_map(setup):
    """A map cut into 16 px blocks (3 x 2 of them, ragged at the edges) and gathered equals
    the one-block map byte for byte: netCDF, GeoTIFFs and their sidecars."""
    one, cut = setup["chunked"], setup["blocks"]
    assert json.loads(cost_of(cut))["blocks"] == 6 and json.loads(cost_of(one))["blocks"] == 1
    files = sorted(p.name for p in one.parent.iterdir() if not p.name.endswith("_cost.json"))
    assert files == sorted(p.name for p in cut.parent.iterdir()
                           if not p.name.endswith("_cost.json"))
    assert len(files) == 5  # .nc, 3 GeoTIFFs, the class map's aux.xml; no block left over
    for name in files:
        assert (one.parent / name).read_bytes() == (cut.parent / name).read_bytes(), name


def cost_of(nc):
    return nc.with_name(f"{nc.stem}_cost.json").read_text()


def test_chunked_run_equals_whole_tile_run(setup):
    with xr.open_dataset(setup["chunked"]) as a, xr.open_dataset(setup["whole"]) as b:
        np.testing.assert_array_equal(a["valid"].values, b["valid"].values)
        for name in ("embedding", "embedding_var", "gapfilled", "gapfilled_std"):
            np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-4, atol=2e-3,
                                       equal_nan=True, err_msg=name)
        assert (a["class_map"].values == b["class_map"].values).mean() > 0.99


def test_unobserved_pixels_are_nan_and_flagged(setup):
    with xr.open_dataset(setup["chunked"]) as ds:
        valid = ds["valid"].values
        assert (valid[CLOUDY] == 0).all()
        outside = np.ones((H, W), bool)
        outside[CLOUDY] = False
        assert (valid[outside] == 1).all()
        assert np.isnan(ds["embedding"].values[:, :, valid == 0]).all()
        assert np.isnan(ds["embedding_var"].values[:, :, valid == 0]).all()
        assert np.isnan(ds["gapfilled"].values[:, :, valid == 0]).all()
        assert (ds["class_map"].values[valid == 0] == -1).all()
        assert np.isfinite(ds["embedding"].values[:, :, valid == 1]).all()


def test_all_cloudy_tile_does_not_crash(setup, tmp_path):
    cubes, masks = write_tile(tmp_path / "cloudy", all_cloudy=True)
    out = predict_tile(cubes, masks, setup["ckpt"], setup["clf"], tmp_path / "c.nc",
                       ref_days=REF_DAYS, chunk_px=16, device="cpu")
    with xr.open_dataset(out) as ds:
        assert (ds["valid"].values == 0).all()
        assert np.isnan(ds["embedding"].values).all()
        assert (ds["class_map"].values == -1).all()


def test_classifier_layout_mismatch_is_an_input_error(setup, tmp_path):
    clf = write_classifier(tmp_path / "other.joblib", np.arange(0.0, 365.0, 10.0), 3)
    with pytest.raises(InputError, match="classifier"):
        predict_tile(setup["cubes"], setup["masks"], setup["ckpt"], clf, tmp_path / "x.nc",
                     ref_days=REF_DAYS, device="cpu")
    assert not (tmp_path / "x.nc").exists()


def test_pca_and_mid_index():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3)) * np.array([5.0, 1.0, 0.2]) + np.array([1.0, 2.0, 3.0])
    acc = ScatterMoments.zeros(3)
    for part in np.array_split(x, 7):
        acc.update(part)
    acc.update(np.full((4, 3), np.nan))  # NaN rows ignored
    mean, axes = acc.principal_axes(2)
    np.testing.assert_allclose(mean, x.mean(0))
    assert abs(axes[0, 0]) > 0.99 and abs(axes[1, 1]) > 0.99
    assert mid_index(np.arange(0, 365, 10)) == 18


def test_explicit_year_with_a_sensor_without_dates(setup, tmp_path):
    # 2020: three S2 dates in December, no S1 date at all
    out = predict_tile(setup["cubes"], setup["masks"], setup["ckpt"], setup["clf"],
                       tmp_path / "y2020.nc", ref_days=REF_DAYS, year=2020, chunk_px=64,
                       device="cpu")
    with xr.open_dataset(out) as ds, xr.open_dataset(setup["masks"]["S2"]) as mask:
        assert ds.attrs["year"] == 2020
        in_2020 = mask["time"].values < np.datetime64("2021-01-01")
        seen = mask["valid"].values[in_2020].any(axis=0)
        np.testing.assert_array_equal(ds["valid"].values == 1, seen)
        assert np.isfinite(ds["embedding"].values[:, :, seen]).all()


def _window_series(setup, size: int = 12):
    model, meta = load_model(setup["ckpt"], "cpu")
    with TileInputs(setup["cubes"], setup["masks"], meta["sensor_bands"]) as tiles:
        series = tiles.window(slice(6, 6 + size), slice(6, 6 + size))
        days = {s: src.days for s, src in tiles.sources.items()}
        origin = tiles.origin
    from gpvae.evaluate.downstream import load_classifier
    return model, meta, series, days, origin, load_classifier(setup["clf"])["pipeline"]


def test_out_of_memory_halves_the_batch_and_gives_the_same_outputs(setup, monkeypatch):
    model, meta, series, days, origin, pipe = _window_series(setup)
    ref, used = predict_pixels(model, meta, series, days, origin, REF_DAYS, pipe, 1000)
    assert used == 1000
    real = tile_module._predict_batch
    calls = []

    def small_gpu(model, meta, sensors, origins, *args):
        calls.append(origins.size)
        if origins.size > 40:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, meta, sensors, origins, *args)

    monkeypatch.setattr(tile_module, "_predict_batch", small_gpu)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    out, used = predict_pixels(model, meta, series, days, origin, REF_DAYS, pipe, 1000)
    assert used == 31 and calls[:6] == [144, 144, 144, 125, 62, 31]  # 1000 -> 500 -> ... -> 31
    for k, v in ref.items():
        np.testing.assert_allclose(out[k], v, rtol=1e-5, atol=1e-6, err_msg=k)


def test_read_ahead_keeps_order_and_reads_each_item_once():
    import threading

    seen = []

    def read(i):
        seen.append(i)
        return i * i

    lock = threading.Lock()
    assert list(read_ahead(read, list(range(7)), lock)) == [(i, i * i) for i in range(7)]
    assert sorted(seen) == list(range(7))
    assert list(read_ahead(read, [], lock)) == []


def test_auto_sizes_depend_on_the_device():
    assert auto_sizes("auto", "auto", torch.device("cpu")) == (64, 4096)
    assert auto_sizes("auto", "auto", torch.device("cuda")) == (256, 65536)
    assert auto_sizes(32, 100, torch.device("cuda")) == (32, 100)


@pytest.mark.parametrize("bad", [{"chunk_px": 0}, {"batch_size": "big"}, {"chunk_px": 2.5},
                                 {"num_samples": 0}])
def test_bad_sizes_are_input_errors(setup, tmp_path, bad):
    kw = {"chunk_px": 16, "batch_size": 100, **bad}
    with pytest.raises(InputError, match="chunk_px and batch_size"):
        predict_tile(setup["cubes"], setup["masks"], setup["ckpt"], setup["clf"],
                     tmp_path / "x.nc", ref_days=REF_DAYS, device="cpu", **kw)
    assert not (tmp_path / "x.nc").exists()


def test_products_dates_and_aoi_are_configurable(setup, tmp_path):
    """Only the asked variables, dates and GeoTIFFs are written; the class map still uses
    every reference date; an AOI maps a window of the tile on the tile's grid."""
    aoi = (300000.0 + 10 * 5, 4800000.0 - 10 * 30, 300000.0 + 10 * 25, 4800000.0 - 10 * 8)
    out = predict_tile(setup["cubes"], setup["masks"], setup["ckpt"], setup["clf"],
                       tmp_path / "T31TCJ.nc", ref_days=REF_DAYS, chunk_px=16, device="cpu",
                       batch_size=100, products=["gapfilled", "class_map"], dates=[95, 181],
                       geotiffs=["class_map", "rgb", "gapfilled"], aoi=aoi, block_px=16)
    with xr.open_dataset(out) as ds, xr.open_dataset(setup["chunked"]) as full:
        assert set(ds.data_vars) == {"gapfilled", "class_map", "valid", "spatial_ref"}
        np.testing.assert_array_equal(ds["ref_day"].values, [90.0, 180.0])
        assert (ds.sizes["y"], ds.sizes["x"]) == (22, 20)
        window = full.isel(y=slice(8, 30), x=slice(5, 25))
        np.testing.assert_array_equal(ds["class_map"].values, window["class_map"].values)
        np.testing.assert_array_equal(ds["gapfilled"].values,
                                      window["gapfilled"].sel(time=ds["time"]).values)
    tifs = {p.name for p in tmp_path.glob("*.tif")}
    assert tifs == {"T31TCJ_class_map.tif", "T31TCJ_rgb.tif", "T31TCJ_gapfilled.tif"}
    with rasterio.open(tmp_path / "T31TCJ_gapfilled.tif") as src:
        assert src.count == 2 * 10
        assert src.descriptions[0] == "B02 2021-04-01" and src.descriptions[-1] == "B12 2021-06-30"
        assert src.transform == TRANSFORM @ affine.Affine.translation(5, 8)
    with pytest.raises(InputError, match="need the products"):
        predict_tile(setup["cubes"], setup["masks"], setup["ckpt"], setup["clf"],
                     tmp_path / "x.nc", ref_days=REF_DAYS, device="cpu",
                     products=["class_map"], geotiffs=["embedding_rgb"])


def test_blocks_are_multiples_of_the_window_and_listed_from_the_cube(setup, tmp_path):
    blocks = tile_blocks(37, 29, 20, 16)  # 20 -> 32 px (a multiple of the 16 px windows)
    assert [b for b, _ in blocks] == ["r0c0", "r1c0"]
    assert blocks[1][1] == Window(0, 32, 29, 5)
    auto = tile_blocks(600, 700, 300, "auto")  # 300 -> 512: a multiple of 64 and of 256
    assert [b for b, _ in auto] == ["r0c0", "r0c1", "r1c0", "r1c1"]
    assert auto[3][1] == Window(512, 512, 188, 88)
    assert tile_blocks(37, 29, None, 16) == [("r0c0", Window(0, 0, 29, 37))]
    ids = json.loads(list_blocks(setup["cubes"]["S2"], tmp_path / "b.json", block_px=16,
                                 chunk_px=16).read_text())
    assert ids == ["r0c0", "r0c1", "r1c0", "r1c1", "r2c0", "r2c1"]


def test_gather_refuses_missing_or_foreign_blocks(setup, tmp_path):
    kw = {"ref_days": REF_DAYS, "chunk_px": 16, "device": "cpu", "block_px": 16,
          "products": ["class_map"]}
    a = predict_block(setup["cubes"], setup["masks"], setup["ckpt"], setup["clf"],
                      tmp_path / "a.nc", block="r0c0", **kw)
    b = predict_block(setup["cubes"], setup["masks"], setup["ckpt"], setup["clf"],
                      tmp_path / "b.nc", block="r0c1", **kw)
    with pytest.raises(InputError, match="do not tile"):
        gather_tile([a, b], tmp_path / "m.nc")
    other = predict_block(setup["cubes"], setup["masks"], setup["ckpt"], setup["clf"],
                          tmp_path / "c.nc", block="r1c0", **{**kw, "products": ["embedding"]})
    with pytest.raises(InputError, match="differs"):
        gather_tile([a, other], tmp_path / "m.nc")
    with pytest.raises(InputError, match="not a block"):
        predict_block(setup["cubes"], setup["masks"], setup["ckpt"], setup["clf"],
                      tmp_path / "d.nc", block="r9c9", **kw)
    assert not (tmp_path / "m.nc").exists() and not (tmp_path / "d.nc").exists()


def test_bf16_path_runs_on_cpu_close_to_float32(setup):
    """The GPU's mixed-precision path (bf16 autocast of encoders / decoders, GP algebra in
    float32) is exercised on CPU: same shapes, embeddings within bf16 precision."""
    model, meta, series, days, origin, pipe = _window_series(setup, size=8)
    ref, _ = predict_pixels(model, meta, series, days, origin, REF_DAYS, pipe, 1000,
                            gapfill="S2")
    bf16, _ = predict_pixels(model, meta, series, days, origin, REF_DAYS, pipe, 1000,
                             gapfill="S2", mixed_precision=True)
    for k in ref:
        assert bf16[k].shape == ref[k].shape and bf16[k].dtype == ref[k].dtype, k
    np.testing.assert_allclose(bf16["embedding"], ref["embedding"], atol=0.1, rtol=0.05)
    np.testing.assert_allclose(bf16["gapfilled"], ref["gapfilled"], atol=0.02)
    assert not np.array_equal(bf16["embedding"], ref["embedding"])  # it did run in bf16
