"""Datasets of bench_gapfill.py: each becomes a pixel dataset + a hidden file through the
library's own pipeline functions (the same calls the Snakemake stages make).

- ``demo``: the demo's ``results/samples/pixels.nc`` (``snakemake --cores all
  results/samples/pixels.nc`` first), hidden with the pipeline's default protocol.
- ``openeo_q4`` / ``openeo_apr``: an openEO S2 L2A cube of ../shared/data/real/openeo_gfmap/
  -> extract_openeo -> compute_mask (SCL, config/examples/openeo.yaml's mask settings) ->
  sample_pixels over square "parcels" that are spatial blocks of BLOCK_PX x BLOCK_PX pixels
  (the parcel-grouped split puts no block in two splits; one class, unlabelled for our
  purposes), every pixel of every block drawn.
- ``worldcereal``: table_to_pixels with config/examples/worldcereal.yaml's table and sample
  settings, S2 columns only.
- ``sits``: table_to_pixels with config/examples/sits.yaml's table and sample settings
  (split grouped by point).

Every hidden file: make_hidden with the pipeline's defaults (20 % random + one 30-60-day gap
per test series, seed 0, every test series).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np

from gpvae.config import defaults, load_config

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"
#: Side of the square spatial blocks of the openEO split (pixels).
BLOCK_PX = 8
#: The schema part with the pipeline's gap-filling defaults.
GAPFILL_SCHEMA = "#/properties/gapfill"

log = logging.getLogger(__name__)

DATASETS = ("demo", "openeo_q4", "openeo_apr", "worldcereal", "sits")
#: Datasets with labels for the classification table.
LABELLED = ("demo", "worldcereal", "sits")
OPENEO_CUBES = {"openeo_q4": "s2_l2a_belgium_2023-q4.nc",
                "openeo_apr": "s2_l2a_belgium_2023-04.nc"}


def gapfill_defaults() -> dict:
    """The pipeline's gap-filling settings with every default (config schema)."""
    return defaults(GAPFILL_SCHEMA)


def _hidden(pixels: Path, out: Path) -> Path:
    """make_hidden with the pipeline's default protocol (cached)."""
    from gpvae.evaluate.hiding import make_hidden

    if out.exists():
        return out
    g = gapfill_defaults()
    return make_hidden(pixels, out, random_fraction=g["random_fraction"],
                       gap_days=tuple(g["gap_days"]), seed=g["seed"],
                       max_samples=g["max_samples"], sensor=g["sensor"])


def _table(name: str, config: Path, work: Path, *, only_sensor: str | None = None) -> Path:
    """table_to_pixels with a config example's table + sample settings (cached)."""
    from gpvae.preprocess.table import table_to_pixels

    pixels = work / "pixels.nc"
    if pixels.exists():
        return pixels
    cfg = load_config(config)
    spec = copy.deepcopy(cfg["inputs"]["table"])
    src = (ROOT / spec.pop("path")).resolve()
    if only_sensor:
        bands = spec["columns"]["bands"]
        spec["columns"]["bands"] = {only_sensor: bands[only_sensor]}
        spec["encoding"] = {k: v for k, v in (spec.get("encoding") or {}).items()
                            if k == only_sensor}
    sample = cfg["sample"]
    work.mkdir(parents=True, exist_ok=True)
    return table_to_pixels(src, pixels, split_fractions=sample["split"], seed=sample["seed"],
                           classes=sample.get("classes"), span=sample,
                           sensors=cfg["sensors"], **spec)


def _block_parcels(cube: Path, out: Path, block_px: int) -> Path:
    """A GeoPackage of square blocks of ``block_px`` pixels over the cube's grid, each a
    'parcel' of the one class ``pixel`` (the spatial groups of the split)."""
    import geopandas as gpd
    from shapely.geometry import box

    from gpvae.io.cube import cube_grid, open_cube

    with open_cube(cube) as ds:
        crs, transform, h, w = cube_grid(ds)
    geoms, ids = [], []
    for r0 in range(0, h, block_px):
        for c0 in range(0, w, block_px):
            x0, y0 = transform * (c0, r0)
            x1, y1 = transform * (min(c0 + block_px, w), min(r0 + block_px, h))
            geoms.append(box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
            ids.append(len(ids) + 1)
    gdf = gpd.GeoDataFrame({"block_id": ids, "class": "pixel"}, geometry=geoms,
                           crs=crs.to_wkt())
    gdf.to_file(out, driver="GPKG", engine="pyogrio")
    return out


def _openeo(name: str, work: Path) -> Path:
    """openEO S2 cube -> canonical cube -> SCL mask -> every pixel of every block."""
    from gpvae.io.openeo import extract_openeo
    from gpvae.preprocess.mask import compute_mask
    from gpvae.preprocess.sample import sample_pixels

    pixels = work / "pixels.nc"
    if pixels.exists():
        return pixels
    work.mkdir(parents=True, exist_ok=True)
    cfg = load_config(ROOT / "config" / "examples" / "openeo.yaml")
    tile = cfg["tiles"][0]
    cube = extract_openeo(REAL / "openeo_gfmap" / OPENEO_CUBES[name], tile, work / "S2.nc",
                          sensor="S2")
    m = cfg["mask"]
    mask = compute_mask(cube, work / "S2_mask.nc", work / "S2_cloud.csv",
                        dilation_px=m["dilation_px"], scl_classes=tuple(m["scl_classes"]))
    parcels = _block_parcels(cube, work / "blocks.gpkg", BLOCK_PX)
    sample = cfg["sample"]
    return sample_pixels({tile: {"cubes": {"S2": str(cube)}, "masks": {"S2": str(mask)},
                                 "parcels": str(parcels), "truth": None, "region": tile}},
                         pixels, class_field="class", id_field="block_id",
                         per_class=10 ** 7, per_parcel_cap=BLOCK_PX ** 2, erosion_px=0,
                         split_fractions=sample["split"], seed=sample["seed"], span=sample)


def prepare(name: str, work: Path, demo_pixels: Path) -> dict:
    """Pixel dataset, hidden file and the example config's embed settings of one dataset."""
    work = (Path(work) / name).resolve()
    work.mkdir(parents=True, exist_ok=True)
    embed = {}
    if name == "demo":
        if not demo_pixels.exists():
            raise FileNotFoundError(f"{demo_pixels} not found: run `snakemake --cores all "
                                    "results/samples/pixels.nc` first")
        pixels = demo_pixels
    elif name in OPENEO_CUBES:
        pixels = _openeo(name, work)
    elif name == "worldcereal":
        config = ROOT / "config" / "examples" / "worldcereal.yaml"
        pixels = _table(name, config, work, only_sensor="S2")
        embed = load_config(config)["embed"]
    elif name == "sits":
        config = ROOT / "config" / "examples" / "sits.yaml"
        pixels = _table(name, config, work)
        embed = load_config(config)["embed"]
    else:
        raise ValueError(f"unknown dataset {name!r} (one of {DATASETS})")
    if name == "demo":
        embed = load_config(ROOT / "config" / "config.yaml")["embed"]
    hidden = _hidden(pixels, work / "hidden.nc")
    return {"name": name, "pixels": Path(pixels), "hidden": Path(hidden), "work": work,
            "embed": embed, "labelled": name in LABELLED}


def describe(spec: dict) -> dict:
    """Sizes of a prepared dataset: samples per split, sensors, dates and bands, hidden
    observations and long-gap entries."""
    from gpvae.evaluate.hiding import open_hidden
    from gpvae.io.pixels import open_pixels

    with open_pixels(spec["pixels"]) as ds:
        split = ds["split"].values.astype(str)
        out = {s: int((split == s).sum()) for s in ("train", "val", "test")}
        sensors = [k[len("values_"):] for k in ds.data_vars if k.startswith("values_")]
        out["sensors"] = {s: (int(ds.sizes[f"time_{s}"]), int(ds.sizes[f"band_{s}"]))
                          for s in sensors}
        regions = ds["region"].values.astype(str) if "region" in ds.variables else []
        out["regions"] = int(np.unique(regions).size)
    h = open_hidden(spec["hidden"])
    out.update(hidden_sensor=str(h.attrs["sensor"]), test_hidden=int(h.sizes["sample"]),
               hidden_obs=int(h.values.sum()))
    return out
