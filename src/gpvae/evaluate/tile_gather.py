"""Mosaic the blocks of a tile product (gpvae.evaluate.tile.predict_block) into one product.

The blocks must tile the map exactly once and agree on everything but their place. The
mosaic is written in a canonical order (variable, date, band of 256 rows: the same writes
whatever the blocks), so it is byte-identical for any cut of the map into blocks; its GeoTIFFs
(gpvae.evaluate.tile_geotiff) are streamed from it; its cost JSON sums the blocks' seconds
and pixels and records the bytes written. Memory: one band of 256 rows of one variable.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import affine
import netCDF4
import numpy as np
import xarray as xr

from gpvae.errors import InputError
from gpvae.evaluate.tile_geotiff import (
    ROWS,
    Grid,
    geotiff_paths,
    scatter_of,
    write_bands,
    write_class_map,
    write_pca_rgb,
)
from gpvae.io.atomic import atomic_path
from gpvae.io.cube import spatial_ref
from gpvae.io.ncstream import VarSpec, stream_netcdf
from gpvae.io.product import DEFAULT_GEOTIFFS, GEOTIFFS, Packing, cost_path, mid_index
from gpvae.io.sensors import make_sensor

log = logging.getLogger(__name__)
#: Attributes that differ between the blocks of one map (their place) or are the mosaic's.
BLOCK_ATTRS = ("transform", "block_row_off", "block_col_off", "map_transform", "map_height",
               "map_width")
#: Chunk side of the mosaic's variables (pixels).
CHUNK = 256


def _block_place(ds: netCDF4.Dataset) -> tuple[int, int, int, int]:
    """(row offset, col offset, height, width) of a block in its map."""
    return (int(ds.getncattr("block_row_off")), int(ds.getncattr("block_col_off")),
            ds.dimensions["y"].size, ds.dimensions["x"].size)


def _check_blocks(paths: Sequence[Path], opened: list[netCDF4.Dataset]
                  ) -> tuple[int, int, list[tuple[int, int, int, int]]]:
    """Map size and block places; InputError unless the blocks agree and tile the map."""
    fix = "rerun the predict_block jobs of this tile with one configuration"
    first = opened[0]
    ref = {k: first.getncattr(k) for k in first.ncattrs() if k not in BLOCK_ATTRS}
    height, width = int(first.getncattr("map_height")), int(first.getncattr("map_width"))
    places = []
    for path, ds in zip(paths, opened, strict=True):
        attrs = {k: ds.getncattr(k) for k in ds.ncattrs() if k not in BLOCK_ATTRS}
        same = attrs.keys() == ref.keys() and all(np.array_equal(attrs[k], ref[k])
                                                  for k in ref)
        if not same or list(ds.variables) != list(first.variables) or \
                list(ds.getncattr("map_transform")) != list(first.getncattr("map_transform")):
            raise InputError("block differs from the first block in its variables or settings",
                             file=path, field="attributes", fix=fix)
        places.append(_block_place(ds))
    area = sum(h * w for _, _, h, w in places)
    overlap = any(a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3]
                  and b[1] < a[1] + a[3] for i, a in enumerate(places) for b in places[i + 1:])
    inside = all(r >= 0 and c >= 0 and r + h <= height and c + w <= width
                 for r, c, h, w in places)
    if overlap or not inside or area != height * width:
        raise InputError(f"{len(paths)} blocks do not tile the {height} x {width} map once",
                         file=paths[0], field="blocks", fix=fix + " (every block of the tile)")
    return height, width, places


def _axis(opened: list[netCDF4.Dataset], places: list, name: str) -> np.ndarray:
    """The map's y (or x) coordinate, from the blocks of the first block column (row)."""
    k = 0 if name == "y" else 1
    parts = {p[k]: ds.variables[name][:] for ds, p in zip(opened, places, strict=True)}
    return np.concatenate([np.asarray(parts[o]) for o in sorted(parts)])


def _skeleton(path: Path, opened: list[netCDF4.Dataset], places: list) -> xr.Dataset:
    """Coordinates and attributes of the mosaic, from the first block."""
    with xr.open_dataset(path, engine="netcdf4") as ds:
        first = ds.drop_vars([v for v in ds.data_vars if v != "spatial_ref"]).load()
    transform = affine.Affine.from_gdal(*[float(v) for v in first.attrs["map_transform"]])
    first = first.drop_vars(["y", "x", "spatial_ref"])
    y, x = _axis(opened, places, "y"), _axis(opened, places, "x")
    ds = first.assign_coords(
        y=("y", y, {"units": "m", "axis": "Y", "standard_name": "projection_y_coordinate"}),
        x=("x", x, {"units": "m", "axis": "X", "standard_name": "projection_x_coordinate"}))
    ds["spatial_ref"] = spatial_ref(first.attrs["crs"], transform)
    attrs = {k: v for k, v in first.attrs.items() if k not in BLOCK_ATTRS}
    attrs["transform"] = list(transform.to_gdal())
    ds.attrs = attrs
    return ds


def _specs(first: netCDF4.Dataset, height: int, width: int) -> dict[str, VarSpec]:
    """The mosaic's variables: the blocks' dtype, dims, attributes and fill; 256 px chunks,
    zlib level 4 with byte shuffle (packed integers compress well)."""
    specs = {}
    for name, var in first.variables.items():
        if var.dimensions[-2:] != ("y", "x"):
            continue
        attrs = {k: var.getncattr(k) for k in var.ncattrs() if k != "_FillValue"}
        fill = var.getncattr("_FillValue") if "_FillValue" in var.ncattrs() else None
        chunks = tuple(1 if d == "time" else first.dimensions[d].size
                       for d in var.dimensions[:-2]) + (min(CHUNK, height), min(CHUNK, width))
        specs[name] = VarSpec(var.dimensions, var.dtype.name, chunks, attrs,
                              fill=None if fill is None else fill.item(), complevel=4,
                              shuffle=True)
    return specs


def _copy(name: str, out: netCDF4.Variable, opened: list[netCDF4.Dataset], places: list,
          width: int) -> None:
    """Fill one mosaic variable in canonical order: per date, bands of :data:`ROWS` rows."""
    lead = out.shape[:-2]
    height = out.shape[-2]
    for t in np.ndindex(lead[:1]) if lead else [()]:
        for r0 in range(0, height, ROWS):
            r1 = min(r0 + ROWS, height)
            band = np.empty((*lead[1:], r1 - r0, width), out.dtype)
            for ds, (br, bc, bh, bw) in zip(opened, places, strict=True):
                lo, hi = max(r0, br), min(r1, br + bh)
                if lo < hi:
                    band[..., lo - r0:hi - r0, bc:bc + bw] = \
                        ds.variables[name][(*t, ..., slice(lo - br, hi - br), slice(None))]
            out[(*t, ..., slice(r0, r1), slice(None))] = band


def _packing(var: netCDF4.Variable) -> Packing:
    attrs = var.ncattrs()
    if "scale_factor" not in attrs:
        return Packing(var.dtype.name)
    return Packing(var.dtype.name, float(var.getncattr("scale_factor")),
                   float(var.getncattr("add_offset")))


def write_geotiffs(out_nc: Path, names: Sequence[str]) -> list[Path]:
    """The GeoTIFFs ``names`` (gpvae.io.product.GEOTIFFS) of a mosaic, streamed from it."""
    written: list[Path] = []
    with netCDF4.Dataset(out_nc) as nc:
        nc.set_auto_maskandscale(False)
        gt = [float(v) for v in nc.variables["spatial_ref"].getncattr("GeoTransform").split()]
        grid = Grid(nc.getncattr("crs"), affine.Affine.from_gdal(*gt),
                    nc.dimensions["y"].size, nc.dimensions["x"].size)
        times = netCDF4.num2date(nc.variables["time"][:], nc.variables["time"].units,
                                 only_use_cftime_datetimes=False)
        dates = [d.strftime("%Y-%m-%d") for d in np.atleast_1d(times)]
        days = np.asarray(nc.variables["ref_day"][:], dtype=np.float64)
        mid = mid_index(days)
        paths = geotiff_paths(out_nc, names)
        for name in names:
            if name == "class_map":
                written += write_class_map(paths[name], grid, nc.variables["class_map"],
                                           json.loads(nc.getncattr("class_names")))
            elif name == "embedding_rgb":
                emb = nc.variables["embedding"]
                pack = _packing(emb)
                pca = scatter_of(emb, pack.unpack, mid, grid.height).principal_axes(3)
                written += write_pca_rgb(paths[name], grid, emb, pack.unpack, mid, pca,
                                         dates[mid])
            else:
                var = nc.variables["gapfilled" if name == "rgb" else name]
                labels = [str(b) for b in nc.variables["band"][:]] if name != "embedding" \
                    else [f"latent {i}" for i in range(var.shape[1])]
                if name == "rgb":
                    sensor = make_sensor(nc.getncattr("sensor"),
                                         json.loads(nc.getncattr("sensor_definition")))
                    rgb = sensor.composite(labels)
                    if rgb is None:
                        log.warning("%s: no colour composite of %s among %s; no rgb.tif",
                                    out_nc, sensor.name, labels)
                        continue
                    picks = [(mid, labels.index(b)) for b in rgb]
                else:
                    picks = [(t, k) for t in range(len(dates)) for k in range(len(labels))]
                pack = _packing(var)
                written += write_bands(
                    paths[name], grid, var, picks, [f"{labels[k]} {dates[t]}" for t, k in picks],
                    scale=pack.scale if pack.packed else None, offset=pack.offset,
                    nodata=pack.fill if pack.packed else np.nan)
    return written


def gather_tile(blocks: Sequence[Path], out_nc: Path, *,
                geotiffs: Sequence[str] | None = None) -> Path:
    """Mosaic the block files of one tile product into ``out_nc`` (netCDF), write its
    GeoTIFFs (``geotiffs``, default class map, embedding RGB and RGB; those whose product
    the blocks lack are skipped with a log line) and ``<stem>_cost.json``; returns
    ``out_nc``."""
    blocks = [Path(p) for p in blocks]
    if not blocks:
        raise InputError("no block to gather", field="blocks", fix="run predict_block first")
    out_nc = Path(out_nc)
    missing = [cost_path(p) for p in blocks if not cost_path(p).is_file()]
    if missing:
        raise InputError(f"{len(missing)} block cost files missing", file=missing[0],
                         fix="keep each block's <block>_cost.json beside it (predict_block "
                             "writes it)")
    with contextlib.ExitStack() as stack:
        opened = []
        for p in blocks:
            if not p.is_file():
                raise InputError("block file not found", file=p,
                                 fix="run the predict_block job of this block")
            opened.append(stack.enter_context(netCDF4.Dataset(p)))
            opened[-1].set_auto_maskandscale(False)
        height, width, places = _check_blocks(blocks, opened)
        order = sorted(range(len(blocks)), key=lambda i: places[i][:2])
        opened, places, blocks = ([opened[i] for i in order], [places[i] for i in order],
                                  [blocks[i] for i in order])
        skeleton = _skeleton(blocks[0], opened, places)
        products = opened[0].getncattr("products").split()
        wanted = list(DEFAULT_GEOTIFFS if geotiffs is None else geotiffs)
        with stream_netcdf(out_nc, skeleton, _specs(opened[0], height, width)) as variables:
            for name, var in variables.items():
                var.set_var_chunk_cache(size=1)  # every write fills whole chunks
                _copy(name, var, opened, places, width)
    have = set(products) | {"embedding_rgb" if "embedding" in products else "",
                            "rgb" if "gapfilled" in products else ""}
    unknown = [g for g in wanted if g not in GEOTIFFS]
    if unknown:
        raise InputError(f"unknown GeoTIFFs {unknown}", field="predict.geotiffs",
                         fix=f"choose among {', '.join(GEOTIFFS)}")
    skipped = [g for g in wanted if g not in have]
    if skipped:
        log.info("%s: no %s GeoTIFF (the product lacks its variable)", out_nc, skipped)
    written = [out_nc] + write_geotiffs(out_nc, [g for g in wanted if g in have])
    costs = [json.loads(cost_path(p).read_text()) for p in blocks]
    cost = dict(costs[0])
    seconds = sum(c.get("seconds", 0.0) for c in costs)
    pixels = sum(c.get("pixels", 0) for c in costs)
    cost.update(block="", blocks=len(blocks), pixels=pixels, seconds=seconds,
                pixels_per_second=pixels / max(seconds, 1e-9),
                peak_rss_mib=max((c.get("peak_rss_mib", 0.0) for c in costs), default=0.0),
                bytes=int(sum(p.stat().st_size for p in written)),
                files=[p.name for p in written])
    if any("peak_gpu_mib" in c for c in costs):
        cost["peak_gpu_mib"] = max(c.get("peak_gpu_mib", 0.0) for c in costs)
    with atomic_path(cost_path(out_nc)) as tmp:
        tmp.write_text(json.dumps(cost, indent=2))
    log.info("gathered %d blocks into %s (%d x %d px): %s, %.1f MB", len(blocks), out_nc,
             height, width, ", ".join(p.name for p in written), cost["bytes"] / 1e6)
    return out_nc
