"""Bad input and faults: every mistake stops with one clear message, nothing silently wrong.

Families: config (start-up checks, through Snakemake and through gpvae.validate), products
(extract, mask), parcels (sample), tables (table), checkpoints (embed, gapfill) and disk.
Each case asserts that the message names the file, the field and the fix, that the command
exits with the project's error and no traceback, and that no output (not even a hidden
temporary) is left behind. Stages run in-process through gpvae.cli.main (fast); the config
family and the terminal report of a failed job run Snakemake itself.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import affine
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr
import yaml
from fixtures_pixels import write_pixels

from gpvae.cli import main
from gpvae.errors import InputError
from gpvae.io.atomic import atomic_path
from gpvae.io.cube import write_cube
from gpvae.io.sensors import S2_10M, S2_BANDS
from gpvae.io.theia import theia_band_name, write_theia_product
from gpvae.preprocess.mask import compute_mask

ROOT = Path(__file__).resolve().parents[1]
CRS = "EPSG:32631"
N = 16  # tile side, pixels
TRANSFORM = affine.Affine(10.0, 0.0, 300000.0, 0.0, -10.0, 4800160.0)
TILE = "T31TCJ"
SPLIT = {"train": 0.5, "val": 0.25, "test": 0.25}


# --------------------------------------------------------------------------- helpers


def cli(capsys: pytest.CaptureFixture, *argv: object) -> str:
    """Run `gpvae ARGV` in-process; it must exit 2 with one message and no traceback (an
    exception escaping main would fail the test). Returns stderr."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and err.count(": error: ") == 1, err
    return err


def names(message: str, *, file: str, field: str, fix: str = "") -> None:
    """The message names the file, the field and a fix (substrings of each)."""
    parts = dict(p.split(": ", 1) for p in message.strip().split(" | ")[1:] if ": " in p)
    assert file in parts.get("file", ""), message
    assert field in parts.get("field", ""), message
    assert fix in parts.get("fix", "") and parts.get("fix"), message


def nothing_written(*paths: Path) -> None:
    """No output and no hidden temporary next to it."""
    for path in paths:
        assert not path.exists(), path
        assert not list(path.parent.glob(f".{path.name}.*.tmp")), path


# --------------------------------------------------------------------------- products


def reflectance(rng: np.random.Generator, h: int = N) -> dict[str, np.ndarray]:
    return {b: rng.uniform(0.02, 0.5, (h, h) if b in S2_10M else (h // 2, h // 2))
            .astype(np.float32) for b in S2_BANDS}


@pytest.fixture(scope="module")
def theia_products(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three Theia L2A products of one tile."""
    root = tmp_path_factory.mktemp("theia") / "S2"
    rng = np.random.default_rng(0)
    for day in ("2022-03-01", "2022-05-01", "2022-07-01"):
        write_theia_product(root, tile=TILE, acquired=np.datetime64(f"{day}T10:50"),
                            platform="SENTINEL2A", reflectance=reflectance(rng),
                            clm_r1=np.zeros((N, N), np.uint8),
                            edg_r1=np.zeros((N, N), bool), crs=CRS, transform=TRANSFORM)
    return root


def _band_file(products: Path, band: str = "B04") -> Path:
    return sorted(products.glob(f"*/*_FRE_{theia_band_name(band)}.tif"))[1]


def truncated(products: Path) -> Path:
    path = _band_file(products)
    path.write_bytes(path.read_bytes()[:300])
    return path


def garbage(products: Path) -> Path:
    path = _band_file(products)
    path.write_bytes(np.random.default_rng(1).bytes(4000))
    return path


def empty(products: Path) -> Path:
    path = _band_file(products)
    path.write_bytes(b"")
    return path


def float_reflectance(products: Path) -> Path:
    """Every band stored as float reflectance (0-1), not int16 DN x 10000."""
    import rasterio

    for path in products.glob("*/*_FRE_*.tif"):
        with rasterio.open(path) as src:
            profile, dn = src.profile, src.read(1)
        profile.update(dtype="float32", nodata=None)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write((dn / 10000.0).astype(np.float32), 1)
    return sorted(products.glob("*"))[0]


def all_edge(products: Path) -> Path:
    """Every pixel of every product flagged no-data (EDG)."""
    import rasterio

    for path in products.glob("*/MASKS/*_EDG_R*.tif"):
        with rasterio.open(path, "r+") as dst:
            dst.write(np.ones((dst.height, dst.width), np.uint8), 1)
    return sorted(products.glob("*"))[0]


@pytest.mark.parametrize("spoil, what, fix", [
    (truncated, "cannot read GeoTIFF raster", "replace it"),
    (garbage, "cannot read GeoTIFF raster", "not a GeoTIFF"),
    (empty, "cannot read GeoTIFF raster", "truncated, empty"),
    (float_reflectance, "divided by 10^4 twice", "float reflectance"),
    (all_edge, "no valid S2 pixel", "no-data value"),
], ids=["truncated-tif", "garbage-tif", "empty-tif", "theia-float-reflectance",
        "all-nodata"])
def test_theia_products(theia_products: Path, tmp_path: Path, capsys, spoil: Callable,
                        what: str, fix: str) -> None:
    products = tmp_path / "S2"
    shutil.copytree(theia_products, products)
    bad = spoil(products)
    out = tmp_path / "cubes" / "S2.nc"
    err = cli(capsys, "extract", "--sensor", "S2", "--input", products, "--tile", TILE,
              "--out", out, "--format", "theia")
    assert what in err
    names(err.split("error: ", 1)[1], file=bad.name, field="", fix=fix)
    nothing_written(out)


def generic_cube(path: Path, values: np.ndarray, *, fill: float | None = None) -> Path:
    """A generic netCDF cube: one variable per band on (time, y, x), a grid mapping."""
    nt = values.shape[0]
    coords = {"time": pd.date_range("2022-03-01", periods=nt, freq="30D"),
              "y": TRANSFORM.f - 5 - 10 * np.arange(N), "x": TRANSFORM.c + 5 + 10 * np.arange(N)}
    attrs = {"grid_mapping": "spatial_ref"}
    ds = xr.Dataset({"red": (("time", "y", "x"), values, attrs),
                     "nir": (("time", "y", "x"), values * 1.5, attrs)}, coords=coords)
    ds["spatial_ref"] = xr.DataArray(0, attrs={"crs_wkt": CRS})
    enc = {v: {"_FillValue": fill} for v in ("red", "nir")} if fill is not None else None
    ds.to_netcdf(path, encoding=enc)
    return path


def _extract_generic(capsys, tmp_path: Path, src: Path, **options) -> tuple[str, Path]:
    out = tmp_path / "cubes" / "S2.nc"
    opts = {"bands": {"B04": "red", "B08": "nir"}, **options}
    err = cli(capsys, "extract", "--sensor", "S2", "--input", src, "--tile", TILE, "--out",
              out, "--format", "generic", "--options", json.dumps(opts))
    return err, out


@pytest.mark.parametrize("values, options, fill, what, field, fix", [
    # DN stored as floats: unset, the scale is 1 (integer DN would get the sensor's 1e-4)
    (lambda r: r.integers(300, 4000, (3, N, N)).astype(np.float32), {}, None,
     "digital numbers", "S2 bands", "scale"),
    (lambda r: r.uniform(0.02, 0.5, (3, N, N)).astype(np.float32), {"scale": 1e-4}, None,
     "divided by 10^4 twice", "S2 bands", "scale to 1"),
    (lambda r: np.full((3, N, N), -9999, np.int16), {"scale": 1e-4}, -9999,
     "no valid S2 pixel", "valid", "no-data value"),
], ids=["generic-dn-without-scale", "generic-reflectance-scaled-again", "generic-all-fill"])
def test_generic_cubes(tmp_path: Path, capsys, values, options, fill, what, field,
                       fix) -> None:
    src = generic_cube(tmp_path / "in.nc", values(np.random.default_rng(2)), fill=fill)
    err, out = _extract_generic(capsys, tmp_path, src, **options)
    assert what in err
    names(err.split("error: ", 1)[1], file="in.nc", field=field, fix=fix)
    nothing_written(out)


def test_generic_cube_that_is_not_netcdf(tmp_path: Path, capsys) -> None:
    src = tmp_path / "in.nc"
    src.write_text("this is not a netCDF file\n")
    err, out = _extract_generic(capsys, tmp_path, src)
    assert "cannot open the cube" in err
    names(err.split("error: ", 1)[1], file="in.nc", field="", fix="netCDF")
    nothing_written(out)


def test_s1_cube_in_db_declared_linear(tmp_path: Path, capsys) -> None:
    db = np.random.default_rng(3).uniform(-20, -5, (3, N, N)).astype(np.float32)
    src = tmp_path / "s1.nc"
    coords = {"time": pd.date_range("2022-03-01", periods=3, freq="12D"),
              "y": TRANSFORM.f - 5 - 10 * np.arange(N), "x": TRANSFORM.c + 5 + 10 * np.arange(N)}
    ds = xr.Dataset({"vv": (("time", "y", "x"), db, {"grid_mapping": "spatial_ref"}),
                     "vh": (("time", "y", "x"), db - 6, {"grid_mapping": "spatial_ref"})},
                    coords=coords)
    ds["spatial_ref"] = xr.DataArray(0, attrs={"crs_wkt": CRS})
    ds.to_netcdf(src)
    out = tmp_path / "S1_ASC.nc"
    err = cli(capsys, "extract", "--sensor", "S1_ASC", "--input", src, "--tile", TILE, "--out",
              out, "--format", "generic", "--options",
              json.dumps({"bands": {"VV": "vv", "VH": "vh"}, "sar_units": "linear"}))
    assert "dB" in err
    names(err.split("error: ", 1)[1], file="s1.nc", field="V", fix="units")
    nothing_written(out)


def test_corrupted_safe_zip(tmp_path: Path, capsys) -> None:
    src = tmp_path / "S2"
    src.mkdir()
    bad = src / "S2A_MSIL2A_20220301T105031_N0400_R051_T31TCJ_20220301T140000.SAFE.zip"
    bad.write_bytes(b"PK\x03\x04 not really a zip archive")
    out = tmp_path / "S2.nc"
    err = cli(capsys, "extract", "--sensor", "S2", "--input", src, "--tile", TILE, "--out",
              out, "--format", "sen2cor")
    assert "cannot read SAFE zip archive" in err
    names(err.split("error: ", 1)[1], file=bad.name, field="", fix="replace it")
    nothing_written(out)


def s2_cube(path: Path, *, quality: np.ndarray | None = None, reader: str = "theia_FRE"
            ) -> Path:
    rng = np.random.default_rng(4)
    nt = 2 if quality is None else quality.shape[0]
    quality = np.zeros((nt, N, N), np.uint8) if quality is None else quality
    return write_cube(path, data=rng.uniform(0.02, 0.5, (nt, 10, N, N)).astype(np.float32),
                      valid=np.ones((nt, N, N), np.uint8),
                      times=np.array(["2022-03-01", "2022-05-01"], "datetime64[ns]")[:nt],
                      bands=S2_BANDS, crs=CRS, transform=TRANSFORM, sensor="S2", tile=TILE,
                      radiometry="surface_reflectance", quality=quality,
                      attrs={"reader": reader})


@pytest.mark.parametrize("make, what, file, field, fix", [
    (lambda p: s2_cube(p, quality=np.full((2, N, N), 1, np.uint8)), "no usable observation",
     "S2.nc", "mask", "clm_bits"),
    (lambda p: (p.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100)), p)[1],
     "cannot open cube as netCDF", "S2.nc", "", "rerun the extract"),
    (lambda p: p, "cube file not found", "S2.nc", "", "extract stage"),
], ids=["all-cloud-cube", "garbage-cube", "missing-cube"])
def test_mask_stage(tmp_path: Path, capsys, make, what, file, field, fix) -> None:
    cube = make(tmp_path / "S2.nc")
    out, table = tmp_path / "masks" / "S2.nc", tmp_path / "masks" / "S2_cloud_cover.csv"
    err = cli(capsys, "mask", "--cube", cube, "--out", out, "--table", table)
    assert what in err
    names(err.split("error: ", 1)[1], file=file, field=field, fix=fix)
    nothing_written(out, table)


# --------------------------------------------------------------------------- parcels


@pytest.fixture(scope="module")
def tile(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One tile: S2 cube and mask (16 x 16 px)."""
    root = tmp_path_factory.mktemp("tile")
    cube = s2_cube(root / "S2.nc")
    mask = compute_mask(cube, root / "mask_S2.nc", root / "mask_S2.csv")
    return {"cubes": {"S2": str(cube)}, "masks": {"S2": str(mask)}, "truth": None,
            "region": TILE}


def parcels_frame(n: int = 16, classes: tuple[str, ...] = ("wheat", "maize", "grass")
                  ) -> gpd.GeoDataFrame:
    """4 x 4 square parcels over the tile, classes in turn."""
    side = N // 4 * 10
    rows = [{"pid": i + 1, "crop": classes[i % len(classes)],
             "geometry": shapely.box(TRANSFORM.c + (i % 4) * side,
                                     TRANSFORM.f - (i // 4 + 1) * side,
                                     TRANSFORM.c + (i % 4 + 1) * side,
                                     TRANSFORM.f - (i // 4) * side)} for i in range(n)]
    return gpd.GeoDataFrame(rows, crs=CRS)


def gpkg(path: Path, frame: gpd.GeoDataFrame) -> Path:
    frame.to_file(path, driver="GPKG", engine="pyogrio")
    return path


def not_a_geopackage(path: Path) -> Path:
    path.write_text("pid,crop\n1,wheat\n")
    return path


def nan_class(path: Path) -> Path:
    frame = parcels_frame()
    frame.loc[5, "crop"] = None
    return gpkg(path, frame)


def text_ids(path: Path) -> Path:
    frame = parcels_frame()
    frame["pid"] = frame["pid"].astype(str)
    frame.loc[3, "pid"] = "P-4"
    return gpkg(path, frame)


def one_parcel_per_class(path: Path) -> Path:
    return gpkg(path, parcels_frame(n=3))


@pytest.mark.parametrize("make, spec, what, field, fix", [
    (not_a_geopackage, {}, "cannot read GeoPackage of parcels", "inputs.parcels.path",
     "replace it"),
    (nan_class, {}, "parcels have no value in 'crop'", "crop", "delete those parcels"),
    (lambda p: gpkg(p, parcels_frame()), {"class_field": "CODE_CULTU"},
     "parcel field 'CODE_CULTU' not found", "CODE_CULTU", "class_field to one of"),
    (text_ids, {}, "not integers", "pid", "integer id"),
    (lambda p: gpkg(p, parcels_frame()), {"classes": ["wheat", "barley"]},
     "no parcel interior pixel: ['barley']", "sample.classes", "spelling"),
    (one_parcel_per_class, {}, "split val/test gets no sample", "sample.split", "parcels"),
], ids=["parcels-not-gpkg", "parcels-nan-class", "parcels-unknown-class-field",
        "parcels-text-ids", "unknown-sample-classes", "one-parcel-per-class"])
def test_sample_stage(tile: dict, tmp_path: Path, capsys, make, spec, what, field,
                      fix) -> None:
    parcels = make(tmp_path / "parcels.gpkg")
    sample = {"per_class": 50, "per_parcel_cap": 20, "erosion_px": 0, "seed": 0,
              "split": SPLIT, "classes": spec.get("classes")}
    full = {"inputs": {TILE: {**tile, "parcels": str(parcels)}},
            "class_field": spec.get("class_field", "crop"), "id_field": "pid",
            "sample": sample}
    out = tmp_path / "samples" / "pixels.nc"
    err = cli(capsys, "sample", "--spec", json.dumps(full), "--out", out)
    assert what in err
    names(err.split("error: ", 1)[1], file="parcels.gpkg", field=field, fix=fix)
    nothing_written(out)


# --------------------------------------------------------------------------- tables


def long_table(n: int = 12) -> pd.DataFrame:
    """n samples x 3 dates, 3 classes, reflectance."""
    rng = np.random.default_rng(5)
    return pd.DataFrame({
        "id": np.repeat(np.arange(n), 3),
        "date": np.tile(["2021-03-01", "2021-06-01", "2021-09-01"], n),
        "lon": np.repeat(rng.uniform(1, 2, n), 3), "lat": np.repeat(rng.uniform(43, 44, n), 3),
        "crop": np.repeat(np.array(["a", "b", "c"])[np.arange(n) % 3], 3),
        "red": rng.uniform(0.02, 0.3, 3 * n), "nir": rng.uniform(0.1, 0.5, 3 * n)})


LONG = {"sample_id": "id", "time": "date", "x": "lon", "y": "lat", "label": "crop",
        "bands": {"S2": {"B04": "red", "B08": "nir"}}}


def cell(column: str, row: int, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(df: pd.DataFrame) -> pd.DataFrame:
        df[column] = df[column].astype(object)
        df.loc[row, column] = value
        return df
    return edit


def whole(column: str, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(df: pd.DataFrame) -> pd.DataFrame:
        df[column] = value
        return df
    return edit


def wide_table(df: pd.DataFrame) -> pd.DataFrame:
    """The same samples, one row each, columns red_t0..2 / nir_t0..2 and a start date."""
    wide = df.groupby("id").first()[["lon", "lat", "crop"]].reset_index()
    for name, band in (("red", "B04"), ("nir", "B08")):
        for t in range(3):
            wide[f"{band}_t{t}"] = df[name].to_numpy()[t::3]
    wide["start"] = "2021-03-01"
    return wide


@pytest.mark.parametrize("edit, spec, what, field, fix", [
    (cell("red", 4, "12O4"), {}, "'12O4' at row 5 (line 6)", "red", "letter"),
    (cell("lon", 2, "33,54"), {}, "'33,54' at row 3 (line 4)", "lon", "decimal separator"),
    (cell("date", 5, "2021-13-45"), {}, "'2021-13-45' at row 6", "date", "YYYY-MM-DD"),
    (cell("crop", 7, None), {}, "no label in column 'crop': row 8", "crop", "label"),
    (whole("year", "y2017"), {"columns": {**LONG, "year": "year"}}, "'y2017'", "year",
     "whole number"),
    (whole("split", "training"), {"columns": {**LONG, "split": "split"}},
     "holds ['training']", "split", "train, val and test"),
    (lambda df: df.iloc[:0], {}, "the table has no rows", "inputs.table.path", "export"),
    (lambda df: df, {"classes": ["a", "b", "c", "maize"]}, "no sample in the table: ['maize']",
     "sample.classes", "spelling"),
    (lambda df: df.assign(red=df.red * 1e4, nir=df.nir * 1e4), {}, "digital numbers",
     "encoding.S2.scale", "0.0001"),
    (lambda df: df.assign(red=df.red * 1e-4, nir=df.nir * 1e-4),
     {"encoding": {"S2": {"scale": 1e-4}}}, "divided by 10^4 twice", "encoding.S2.scale",
     "already holds reflectance"),
    (lambda df: df.iloc[:6], {}, "split val/test gets no sample", "sample.split", "parcels"),
    (cell("id", 9, None), {}, "no sample_id in column 'id'", "id", "sample_id"),
    (lambda df: df.assign(date=pd.to_datetime(df.date).dt.strftime("%d/%m/%Y")), {},
     "'01/03/2021' whose day and month order no value decides", "date", "YYYY-MM-DD"),
    (lambda df: cell("date", 4, "03/25/2021")(cell("date", 3, "25/03/2021")(df)), {},
     "mixes day/month and month/day dates: '03/25/2021' at row 5", "date", "YYYY-MM-DD"),
    (lambda df: df.assign(id=df.id // 2), {}, "rows repeat a (id, date) pair with other "
     "values, e.g. id '0' on 2021-03-01 at row 1 (line 2), row 4 (line 5)",
     "columns.sample_id (id)", "parcel or point id shared by several series"),
], ids=["table-letter-in-number", "table-decimal-comma", "table-bad-date", "table-nan-label",
        "table-year-y2017", "table-split-training", "table-header-only",
        "table-unknown-classes", "table-dn-without-scale", "table-scaled-twice",
        "table-too-few-for-splits", "table-missing-sample-id", "table-ambiguous-dates",
        "table-mixed-date-orders", "table-sample-id-shared-by-series"])
def test_table_stage(tmp_path: Path, capsys, edit, spec, what, field, fix) -> None:
    src = tmp_path / "samples.csv"
    edit(long_table()).to_csv(src, index=False)
    table = {"path": str(src), "layout": "long", "columns": spec.get("columns", LONG),
             "encoding": spec.get("encoding")}
    full = {"table": table, "sample": {"split": SPLIT, "seed": 0,
                                       "classes": spec.get("classes")}}
    out = tmp_path / "samples" / "pixels.nc"
    err = cli(capsys, "table", "--spec", json.dumps(full), "--out", out)
    assert what in err
    names(err.split("error: ", 1)[1], file="samples.csv", field=field, fix=fix)
    nothing_written(out)


@pytest.mark.parametrize("origin, edit, what, field", [
    ("start", cell("start", 2, "01/13/2021 noon"), "not dates", "start"),
    ("someday", lambda df: df, "neither a column nor a date", "inputs.table.time_origin"),
], ids=["wide-bad-origin-date", "wide-origin-not-column-or-date"])
def test_wide_table_origin(tmp_path: Path, capsys, origin, edit, what, field) -> None:
    src = tmp_path / "wide.parquet"
    edit(wide_table(long_table())).to_parquet(src)
    columns = {"x": "lon", "y": "lat", "label": "crop",
               "bands": {"S2": r"(?P<band>B\w\w)_t(?P<t>\d)"}}
    full = {"table": {"path": str(src), "layout": "wide", "columns": columns,
                      "time_origin": origin}, "sample": {"split": SPLIT, "seed": 0}}
    out = tmp_path / "pixels.nc"
    err = cli(capsys, "table", "--spec", json.dumps(full), "--out", out)
    assert what in err
    names(err.split("error: ", 1)[1], file="wide.parquet", field=field, fix="date")
    nothing_written(out)


def semicolons(path: Path) -> None:
    long_table().to_csv(path, index=False, sep=";")


def not_parquet(path: Path) -> None:
    path.write_bytes(b"PAR1 but then nothing useful")


@pytest.mark.parametrize("write, name, what, field, fix", [
    (semicolons, "samples.csv", "(label) not in the table", "columns.label",
     "save it with commas"),
    (not_parquet, "samples.parquet", "cannot read parquet table", "inputs.table.path",
     "replace it"),
], ids=["csv-with-semicolons", "not-parquet"])
def test_unreadable_tables(tmp_path: Path, capsys, write, name, what, field, fix) -> None:
    src = tmp_path / name
    write(src)
    full = {"table": {"path": str(src), "layout": "long", "columns": LONG},
            "sample": {"split": SPLIT, "seed": 0}}
    out = tmp_path / "pixels.nc"
    err = cli(capsys, "table", "--spec", json.dumps(full), "--out", out)
    assert what in err
    names(err.split("error: ", 1)[1], file=name, field=field, fix=fix)
    nothing_written(out)


# --------------------------------------------------------------------------- checkpoints

MODEL = {"type": "iid_vae", "sensors": ["S2"], "latent_dim": 2, "hidden": 8,
         "train": {"epochs": 1, "batch_size": 16}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Pixels and a trained tiny model `m1` (its best.pt)."""
    from gpvae.train.loop import train_model

    root = tmp_path_factory.mktemp("model")
    pixels = write_pixels(root / "pixels.nc", n_samples=24, sensors=("S2",))
    best = train_model(pixels, "m1", MODEL, root / "m1")
    return {"pixels": pixels, "best": best}


def _foreign(trained: dict, tmp_path: Path) -> tuple[Path, str, dict]:
    dst = tmp_path / "models" / "m2" / "best.pt"
    dst.parent.mkdir(parents=True)
    shutil.copy(trained["best"], dst)
    return dst, "m2", {**MODEL, "latent_dim": 3}


def _retuned(trained: dict, tmp_path: Path) -> tuple[Path, str, dict]:
    dst = tmp_path / "models" / "m1" / "best.pt"
    dst.parent.mkdir(parents=True)
    shutil.copy(trained["best"], dst)
    return dst, "m1", {**MODEL, "hidden": 16}


def _garbage(trained: dict, tmp_path: Path) -> tuple[Path, str, dict]:
    dst = tmp_path / "best.pt"
    dst.write_bytes(b"\x00" * 100)
    return dst, "m1", MODEL


@pytest.mark.parametrize("make, command, what, field", [
    (_foreign, "embed", "belongs to model 'm1', not to 'm2'", "fingerprint"),
    (_retuned, "embed", "trained with other settings", "fingerprint"),
    (_foreign, "gapfill", "belongs to model 'm1', not to 'm2'", "fingerprint"),
    (_garbage, "embed", "corrupted or not a gpvae checkpoint", "format"),
], ids=["foreign-best-pt-embed", "changed-settings-embed", "foreign-best-pt-gapfill",
        "garbage-checkpoint"])
def test_checkpoints(trained: dict, tmp_path: Path, capsys, make, command, what,
                     field) -> None:
    ckpt, model, cfg = make(trained, tmp_path)
    out = tmp_path / "out.nc"
    check = ["--model", model, "--model-config", json.dumps(cfg)]
    if command == "embed":
        argv = ["embed", "--pixels", trained["pixels"], "--checkpoint", ckpt, "--out", out]
    else:
        argv = ["gapfill", "--pixels", trained["pixels"], "--hidden", trained["pixels"],
                "--checkpoint", ckpt, "--out", out, "--table", tmp_path / "out.csv"]
    err = cli(capsys, *argv, *check)
    assert what in err
    names(err.split("error: ", 1)[1], file=ckpt.name, field=field, fix="delete")
    nothing_written(out)


def test_checkpoint_of_the_model_passes_the_check(trained: dict, tmp_path: Path) -> None:
    from gpvae.data.checkpoint import check_fingerprint, read_checkpoint

    assert read_checkpoint(trained["best"])["fingerprint"]
    check_fingerprint(trained["best"], "m1", copy.deepcopy(MODEL))
    # speed settings are not settings of the run: same fingerprint
    check_fingerprint(trained["best"], "m1", {**MODEL, "train": {**MODEL["train"],
                                                                 "num_workers": 2}})


def test_pixel_dataset_that_is_not_netcdf(trained: dict, tmp_path: Path, capsys) -> None:
    pixels = tmp_path / "pixels.nc"
    pixels.write_text("garbage\n")
    out = tmp_path / "raw.nc"
    err = cli(capsys, "embed", "--pixels", pixels, "--out", out)
    assert "cannot read netCDF pixel dataset" in err
    names(err.split("error: ", 1)[1], file="pixels.nc", field="", fix="sample stage")
    nothing_written(out)


# --------------------------------------------------------------------------- disk


def test_full_disk_is_named_out_of_space(tmp_path: Path, monkeypatch) -> None:
    """netCDF reports a full disk as 'NetCDF: HDF error': with the disk (nearly) full the
    failed write is named out of space, and the half-written file removed."""
    import gpvae.io.failures

    monkeypatch.setattr(gpvae.io.failures, "free_bytes", lambda path: 1024)
    target = tmp_path / "cube.nc"
    with pytest.raises(InputError) as err, atomic_path(target) as tmp:
        tmp.write_bytes(b"half a cube")
        raise RuntimeError("NetCDF: HDF error")
    names(str(err.value), file="cube.nc", field="disk space", fix="free space")
    assert "out of disk space" in str(err.value) and "HDF error" in str(err.value)
    nothing_written(target)


def test_enospc_in_a_stage_is_named_out_of_space(tmp_path: Path, capsys, monkeypatch
                                                 ) -> None:
    import gpvae.preprocess.mask

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gpvae.preprocess.mask, "compute_mask", full)
    err = cli(capsys, "mask", "--cube", tmp_path / "S2.nc", "--out", tmp_path / "m.nc",
              "--table", tmp_path / "m.csv")
    assert "out of disk space" in err and "fix: free space" in err


def test_a_failure_on_a_roomy_disk_is_not_called_out_of_space(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="HDF error"), atomic_path(tmp_path / "x.nc"):
        raise RuntimeError("NetCDF: HDF error")


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 1 MiB tmpfs (needs root and mount; skipped elsewhere)."""
    point = tmp_path / "disk"
    point.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(point)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({proc.stderr.strip()})")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def test_really_full_disk(tiny_disk: Path, tmp_path: Path) -> None:
    from gpvae.io.pixels import open_pixels
    from gpvae.io.pixels import write_pixels as write_pixel_dataset

    src = open_pixels(write_pixels(tmp_path / "px.nc", n_samples=1000, sensors=("S2",)))
    rng = np.random.default_rng(0)
    values = {"S2": rng.random(src["values_S2"].shape).astype(np.float32)}  # incompressible
    samples = {k: src[k].values for k in ("x", "y", "row", "col", "tile", "parcel_id",
                                          "label", "split", "region", "year")}
    out = tiny_disk / "pixels.nc"
    with pytest.raises(InputError) as err:
        write_pixel_dataset(out, values=values, times={"S2": src["time_S2"].values},
                            bands={"S2": list(src["band_S2"].values)}, samples=samples,
                            class_names=list(src["class_name"].values))
    names(str(err.value), file="pixels.nc", field="disk space", fix="free space")
    nothing_written(out)


def test_temporaries_of_a_killed_writer_are_removed_by_the_next_run(tmp_path: Path) -> None:
    """kill -9 leaves a writer no chance to clean up: its hidden temporary is removed when the
    same output is written again (a live writer's is kept)."""
    target = tmp_path / "cubes" / "S2.nc"
    code = ("import sys, time\nfrom gpvae.io.atomic import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n"
            "    tmp.write_bytes(b'half a cube')\n    print(tmp, flush=True)\n"
            "    time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE,
                            text=True)
    try:
        leftover = Path(proc.stdout.readline().strip())  # blocks until the write is under way
        assert leftover.is_file() and leftover.name.startswith(".S2.nc.")
        with atomic_path(target.with_name("other.nc")) as tmp:  # another output: untouched
            tmp.write_bytes(b"x")
        with atomic_path(target) as tmp:  # the writer is alive: its temporary is kept
            tmp.write_bytes(b"full cube")
        assert leftover.is_file()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"full cube, again")
    assert not leftover.exists() and target.read_bytes() == b"full cube, again"
    assert not list(target.parent.glob(".*.tmp"))


# --------------------------------------------------------------------------- config


@pytest.fixture(scope="module")
def real_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working folder with existing inputs: a generic S2 cube and parcels (so start-up
    checks read their metadata)."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "data").mkdir()
    generic_cube(root / "data" / "s2.nc",
                 np.random.default_rng(6).integers(300, 4000, (3, N, N)).astype(np.int16))
    gpkg(root / "data" / "parcels.gpkg", parcels_frame())
    return root


def real_config(**changes) -> dict:
    cfg = {"tiles": [TILE],
           "inputs": {"S2": {"format": "generic", "path": "data/s2.nc",
                             "bands": {"B04": "red", "B08": "nir"}, "scale": 1e-4},
                      "parcels": {"path": "data/parcels.gpkg", "id_field": "pid",
                                  "class_field": "crop"}},
           "sample": {"split": SPLIT},
           "models": {"m": {"type": "iid_vae", "sensors": ["S2"]}}}
    for key, value in changes.items():
        node = cfg
        *path, last = key.split(".")
        for k in path:
            node = node.setdefault(k, {})
        node[last] = value
    return cfg


def snakemake_dry_run(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
                           "-d", str(workdir), "-n", "--cores", "1", *args],
                          capture_output=True, text=True, timeout=300, env=env)


def _workdir(real_inputs: Path, tmp_path: Path, cfg: dict | str) -> Path:
    work = tmp_path / "work"
    shutil.copytree(real_inputs, work)
    (work / "config").mkdir()
    text = cfg if isinstance(cfg, str) else yaml.safe_dump(cfg, sort_keys=False)
    (work / "config" / "config.yaml").write_text(text)
    return work


def _stopped(proc: subprocess.CompletedProcess, work: Path) -> str:
    """Snakemake stopped at start-up with the project's message, no traceback, no output."""
    err = proc.stdout + proc.stderr
    assert proc.returncode != 0, err[-2000:]
    assert "Traceback" not in err and "gpvae: error: " in err, err[-3000:]
    assert not (work / "results").exists()
    return err.split("gpvae: error: ", 1)[1].strip()


@pytest.mark.parametrize("cfg, args, what, file, field, fix", [
    (real_config(), ["--config", "sample={split: {train: 0.6, val: 0.3, test: 0.3}}"],
     "sum to 1.2, not 1", "config/config.yaml + --config", "sample.split", "train: 0.6"),
    ("inputs:\n  S2: {path: data/s2.nc\n  parcels: x\n", [], "not valid YAML at line 3",
     "config/config.yaml", "line 3", "YAML"),
    (real_config(**{"inputs.parcels.class_field": "CODE_CULTU"}), [],
     "parcel field 'CODE_CULTU' not found", "parcels.gpkg", "CODE_CULTU",
     "class_field to one of"),
    (real_config(**{"extract.start": "2023-05-01", "extract.end": "2022-01-01"}), [],
     "start date 2023-05-01 is after end date 2022-01-01", "config/config.yaml",
     "extract.start/end", "swap"),
    (real_config(**{"models.m.sensors": ["S2", "S1_DES"]}), [],
     "reads sensor S1_DES, which the inputs do not provide", "config/config.yaml",
     "models.m.sensors", "remove S1_DES"),
], ids=["config-split-sum-via-override", "config-yaml-syntax", "config-unknown-class-field",
        "config-start-after-end", "config-sensor-not-provided"])
def test_config_stops_at_start_up(real_inputs: Path, tmp_path: Path, cfg, args, what, file,
                                  field, fix) -> None:
    work = _workdir(real_inputs, tmp_path, cfg)
    message = _stopped(snakemake_dry_run(work, *args), work)
    assert what in message
    names(message, file=file, field=field, fix=fix)


@pytest.mark.parametrize("text, what, field, fix", [
    (None, "config file not found", "", "--configfile"),
    ("inputs:\n\tS2: {path: x}\n", "not valid YAML at line 2, column 1", "line 2",
     "no tabs"),
    ("- a\n- b\n", "not a mapping of keys", "<top level>", "key: value"),
    ("inputs: {table: {path: data/none.csv, columns: {}}}\nsample: {per_clas: 3}\n",
     "unknown key sample.per_clas", "", "spelling"),
    ("inputs: {table: {path: data/none.csv, columns: {}}}\ndownstream: {seeds: [0, -2]}\n",
     "-2 is less than the minimum of 0", "downstream.seeds.1", "change its value"),
], ids=["check-config-missing-file", "check-config-tab", "check-config-list",
        "check-config-unknown-key", "check-config-negative-seed"])
def test_check_config(tmp_path: Path, capsys, text, what, field, fix) -> None:
    """`gpvae check-config` names what Snakemake cannot for a --configfile."""
    path = tmp_path / "mine.yaml"
    if text is not None:
        path.write_text(text)
    err = cli(capsys, "check-config", path)
    assert what in err
    names(err.split("error: ", 1)[1].replace("\n", " "), file="mine.yaml", field=field,
          fix=fix)


@pytest.mark.parametrize("table, models, what, field, fix", [
    ({"encoding": {"S2": {"scale": 0}}}, {}, "0 is less than or equal to the minimum of 0",
     "inputs.table.encoding.S2.scale", "change its value"),
    ({"encoding": {"S2": {"scael": 1e-4}}}, {}, "unknown key inputs.table.encoding.S2.scael",
     "inputs.table.encoding.S2.scael", "spelling"),
    ({"encoding": {"SENTINEL2": {"scale": 1e-4}}}, {}, "encoding of SENTINEL2, which is not "
     "a sensor of the table (columns.bands: ['S2'])", "inputs.table.encoding.SENTINEL2",
     "rename it to the sensor it describes (one of ['S2'])"),
    ({"xy_crs": "EPSG:99999"}, {}, "xy_crs 'EPSG:99999' is not a CRS", "inputs.table.xy_crs",
     "EPSG:4326"),
    ({}, {"gpvae markov": {"type": "gpvae"}}, "name 'gpvae markov' under 'models' is not "
     "allowed", "models", "rename 'gpvae markov', e.g. 'gpvae_markov'"),
], ids=["table-scale-zero", "table-encoding-unknown-key", "table-encoding-unknown-sensor",
        "table-unknown-crs", "model-name-with-a-space"])
def test_check_config_table_settings(tmp_path: Path, monkeypatch, capsys, table, models,
                                     what, field, fix) -> None:
    """Settings that would be silently ignored or silently zero the data stop at start-up."""
    monkeypatch.chdir(tmp_path)
    write_table_config(table, models)
    err = cli(capsys, "check-config", "mine.yaml")
    assert what in err
    names(err.split("error: ", 1)[1].replace("\n", " "), file="mine.yaml", field=field,
          fix=fix)


def write_table_config(table: dict, models: dict) -> None:
    """mine.yaml over samples.csv (long_table) in the current folder, ``table`` settings
    added to its inputs.table."""
    long_table().to_csv("samples.csv", index=False)
    cfg = {"inputs": {"table": {"path": "samples.csv", "layout": "long", "columns": LONG,
                                **table}},
           "sample": {"split": SPLIT}, "models": models}
    Path("mine.yaml").write_text(yaml.safe_dump(cfg))


def test_check_config_accepts_table_encoding_and_crs(tmp_path: Path, monkeypatch,
                                                     capsys) -> None:
    monkeypatch.chdir(tmp_path)
    write_table_config({"encoding": {"S2": {"scale": 1.0, "nodata": -1}},
                        "xy_crs": "EPSG:4326"}, {"m.1-x_y": {"type": "gpvae"}})
    assert main(["check-config", "mine.yaml"]) == 0, capsys.readouterr().err
    assert "mine.yaml: valid" in capsys.readouterr().out


def test_check_config_accepts_a_good_file(real_inputs: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(real_inputs)
    Path("ok.yaml").write_text(yaml.safe_dump(real_config()))
    assert main(["check-config", "ok.yaml"]) == 0
    assert "ok.yaml: valid" in capsys.readouterr().out


def startup(cfg: dict, sensors: tuple[str, ...] = ("S2",)) -> list[str]:
    from gpvae.config import validate_config
    from gpvae.validate import startup_checks

    cfg = validate_config(copy.deepcopy(cfg))
    return startup_checks(cfg, sensors=list(sensors), tiles=cfg["tiles"],
                          source="config.yaml")


@pytest.mark.parametrize("changes, what, file, field, fix", [
    ({"models.m.bands": {"S2": ["B04", "B11"]}}, "asks for S2 bands ['B11']", "config.yaml",
     "models.m.bands.S2", "provided bands"),
    ({"models.linear": {"type": "iid_vae"}}, "reserved for a baseline", "config.yaml",
     "models.linear", "rename"),
    ({"predict.models": ["m", "nope"]}, "unknown models ['nope']", "config.yaml",
     "predict.models", "names"),
    ({"sample.split": {"train": 0.8, "val": 0.0, "test": 0.2}}, "split fraction val is 0",
     "config.yaml", "sample.split.val", "> 0"),
    ({"inputs.regions": {"T99XYZ": "north"}}, "not in tiles", "config.yaml",
     "inputs.regions", "tile names"),
    ({"inputs.S2.bands": None}, "needs a band mapping", "config.yaml", "inputs.S2.bands",
     "B04"),
    ({"inputs.S2.path": "data/missing_{tile}.nc"}, "input of tile T31TCJ not found",
     "data/missing_T31TCJ.nc", "inputs.S2.path", "tile name"),
    ({"sample.classes": ["wheat", "barely"]}, "classes the inputs do not hold: ['barely']",
     "parcels.gpkg", "sample.classes", "spelling"),
    ({"extract.aoi": [300100, 4800000, 300000, 4800100]}, "is not [xmin, ymin, xmax, ymax]",
     "config.yaml", "extract.aoi", "xmin < xmax"),
    ({"report.confusion_protocol": "region", "downstream.protocols": ["parcel"]}, "not run",
     "config.yaml", "report.confusion_protocol", "downstream.protocols"),
    ({"report.example_band": "B11"}, "not an S2 band of the inputs", "config.yaml",
     "report.example_band", "B04"),
    ({"inputs.S2.bands": {"B04": "RED", "B08": "nir"}}, "variable 'RED' is not in the cube",
     "data/s2.nc", "inputs.S2.bands.B04", "variable of the cube"),
    ({"predict.aoi": {"T99XYZ": [0, 0, 10, 10]}}, "names tiles ['T99XYZ'] that are not "
     "configured", "config.yaml", "predict.aoi", "`tiles`"),
    ({"predict.aoi": {TILE: [300100, 4800000, 300000, 4800100]}},
     "is not [xmin, ymin, xmax, ymax]", "config.yaml", f"predict.aoi.{TILE}", "xmin < xmax"),
    ({"extract.aoi": [300000, 4800000, 300640, 4800640],
      "predict.aoi": [400000, 4800000, 400640, 4800640]}, "outside extract.aoi",
     "config.yaml", "predict.aoi", "inside extract.aoi"),
    ({"predict.products": ["embedding", "class_map"], "predict.geotiffs": ["rgb"]},
     "need the products ['gapfilled']", "config.yaml", "predict.products", "predict.geotiffs"),
    ({"predict.dates": [90, 400], "embed.ref_end_day": 365}, "predict.dates [400] are "
     "outside the reference dates", "config.yaml", "predict.dates", "within the reference"),
    ({"inputs.S2.crs": "EPSG:99999"}, "crs 'EPSG:99999' is not a CRS", "config.yaml",
     "inputs.S2.crs", "EPSG:4326"),
], ids=["model-band-not-provided", "reserved-model-name", "unknown-predict-model",
        "val-fraction-zero", "region-of-unknown-tile", "generic-without-bands",
        "missing-input-path", "unknown-sample-class", "aoi-reversed",
        "confusion-protocol-not-run", "report-band-not-provided",
        "generic-variable-not-in-cube", "map-aoi-of-unknown-tile", "map-aoi-reversed",
        "map-aoi-outside-extract-aoi", "geotiff-without-its-product",
        "map-date-outside-reference-dates", "generic-crs-unknown"])
def test_start_up_checks(real_inputs: Path, monkeypatch, changes, what, file, field,
                         fix) -> None:
    monkeypatch.chdir(real_inputs)
    with pytest.raises(InputError) as err:
        startup(real_config(**changes))
    assert what in str(err.value)
    names(str(err.value), file=file, field=field, fix=fix)


def test_start_up_warnings(real_inputs: Path, monkeypatch) -> None:
    monkeypatch.chdir(real_inputs)
    frame = parcels_frame(n=16)
    frame.loc[[0, 3], "crop"] = "rye"  # 2 parcels of rye: no room for it in test
    gpkg(real_inputs / "data" / "few.gpkg", frame)
    warnings = startup(real_config(**{"inputs.parcels.path": "data/few.gpkg"}))
    assert any("rye (2 parcels) will have no sample in split 'test'" in w
               and "Fix:" in w for w in warnings), warnings
    assert any("protocol region needs two regions" in w for w in warnings), warnings
    assert any("models is empty" in w for w in startup(real_config(models={})))


def test_models_empty_warns_on_the_terminal(real_inputs: Path, tmp_path: Path) -> None:
    work = _workdir(real_inputs, tmp_path, real_config(models={}))
    proc = snakemake_dry_run(work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "gpvae: warning: models is empty" in proc.stderr


def test_config_on_the_command_line_extends_the_default(real_inputs: Path,
                                                         tmp_path: Path) -> None:
    work = _workdir(real_inputs, tmp_path, real_config())
    proc = snakemake_dry_run(work, "--config", "seed=3",
                             "sample={split: {train: 0.6, val: 0.2, test: 0.2}}",
                             "--printshellcmds", "--forceall", "results/samples/pixels.nc")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "is extended by additional config" in out
    # the default's keys stayed (inputs, tiles), the nested values were read as numbers
    assert '"split": {"test": 0.2, "train": 0.6, "val": 0.2}' in out


# --------------------------------------------------------------------------- terminal


def test_failed_job_prints_its_error_on_the_terminal(tmp_path: Path) -> None:
    """A real run: the table job fails on a bad cell; the terminal shows the project's
    message (file, row, column, fix) and where the log is, not a traceback."""
    work = tmp_path / "work"
    (work / "config").mkdir(parents=True)
    cell("red", 4, "12O4")(long_table()).to_csv(work / "samples.csv", index=False)
    cfg = {"inputs": {"table": {"path": "samples.csv", "layout": "long", "columns": LONG}},
           "sample": {"split": SPLIT}, "models": {}}
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
                           "-d", str(work), "--cores", "1"], capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode != 0
    err = proc.stderr
    assert "gpvae: job table failed:" in err, err[-3000:]
    assert "gpvae table: error: column 'red' holds 1 value(s) that are not numbers" in err
    assert "row 5 (line 6) | file: samples.csv | field: red | fix:" in err
    assert "full log: results/logs/table.log" in err and "Traceback" not in err
    nothing_written(work / "results" / "samples" / "pixels.nc")


def test_job_error_from_a_log(tmp_path: Path) -> None:
    from gpvae.joblogs import failure_report, job_error

    bad_input = tmp_path / "a.log"
    bad_input.write_text("2026 INFO starting\n2026 ERROR gpvae: x | file: f\n"
                         "gpvae sample: error: invalid:\n  - one | file: f | fix: g\n")
    assert job_error(bad_input) == "gpvae sample: error: invalid:\n  - one | file: f | fix: g"
    bug = tmp_path / "b.log"
    bug.write_text("Traceback (most recent call last):\n  File 'x'\nKeyError: 'band'\n")
    assert job_error(bug).startswith("KeyError: 'band'\n(an unexpected error")
    killed = tmp_path / "c.log"
    killed.write_text("epoch 1\n")
    assert "killed? out of memory?" in job_error(killed)
    report = failure_report([("sample", [str(bad_input)]), ("sample", [str(bad_input)])])
    assert report.count("gpvae: job sample failed:") == 1 and f"(full log: {bad_input})" in report
