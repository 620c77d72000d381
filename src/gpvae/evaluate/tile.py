"""Tile products (docs/contracts.md section 7): stream a tile, block by block, through a model.

A map covers the tile (or ``aoi``, a window of it) and is cut into square **blocks** of
``block_px`` pixels (:func:`tile_blocks`), each predicted by its own job
(:func:`predict_block`, one Snakemake job per block) and mosaicked by
:func:`gpvae.evaluate.tile_gather.gather_tile`; :func:`predict_tile` does both in one call.
Inside a block, pixels are processed in ``chunk_px x chunk_px`` windows of the map's grid
(block sides are multiples of the window side, so a pixel sees the same window, batches and
random numbers whichever blocks the map is cut into: the mosaic of blocks is byte-identical
to the one-block map). Each window's series of one span (the training data's span rule) are
read lazily (:class:`~gpvae.evaluate.tile_inputs.TileInputs`), normalised and compacted like
the pixel dataset, and passed in batches to the model: latent posterior at the reference
dates (the embedding), the gap-filled sensor's predictive mean and std at the written dates
(by default the model's first optical or index sensor), and the class of the embedding from
the saved downstream random forest. Results are packed (gpvae.io.product) and written window
by window: memory is bounded by one window. Pixels without any usable observation in the span
get NaN embeddings, ``valid`` 0 and class -1.
"""

from __future__ import annotations

import contextlib
import json
import logging
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import xarray as xr
from rasterio.windows import Window
from tqdm.auto import tqdm

import gpvae
from gpvae.data.batch import Batch
from gpvae.data.series import compact_series
from gpvae.data.span import Span
from gpvae.errors import InputError
from gpvae.evaluate.downstream import load_classifier
from gpvae.evaluate.inference import (
    latent_arrays,
    latent_method,
    latent_moments,
    model_device,
    observations_at,
)
from gpvae.evaluate.tile_inputs import TileInputs
from gpvae.io.atomic import atomic_path
from gpvae.io.cube import spatial_ref
from gpvae.io.ncstream import VarSpec, stream_netcdf
from gpvae.io.product import (
    EMBEDDING_PACKING,
    EMBEDDING_VAR_PACKING,
    GAPFILL_PRODUCTS,
    Packing,
    check_products,
    class_attrs,
    cost_path,
    date_indices,
    sensor_packing,
    std_packing,
)
from gpvae.io.sensors import Sensor
from gpvae.io.window import aoi_window, window_transform
from gpvae.models.build import load_model

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")
#: Block sides are multiples of this with ``chunk_px: auto`` (the CPU and GPU windows, 64 and
#: 256 px, both divide it).
AUTO_BLOCK_UNIT = 256


def check_layout(bundle: dict, ref_days: np.ndarray, latent_dim: int, *,
                 file: object) -> None:
    """InputError unless the classifier was trained on mean embeddings (ref_day, latent) at
    these reference dates with this latent size."""
    layout = bundle.get("layout", {})
    sizes = list(layout.get("sizes", []))
    fix = "train the classifier on this model's embeddings at the same reference dates"
    if layout.get("variables") != ["mean"] or sizes != [len(ref_days), latent_dim]:
        raise InputError(f"classifier expects features {layout.get('variables')} of shape "
                         f"{sizes}, this model gives mean ({len(ref_days)}, {latent_dim})",
                         file=file, field="layout", fix=fix)
    saved = layout.get("ref_day")
    if saved is not None and not np.allclose(saved, ref_days):
        raise InputError(f"classifier reference dates {saved} differ from ref_days "
                         f"{list(ref_days)}", file=file, field="ref_day", fix=fix)


def block_unit(chunk_px: int | str) -> int:
    """Block sides are multiples of this: the window side, or 256 for ``auto``."""
    return AUTO_BLOCK_UNIT if chunk_px == "auto" else int(chunk_px)


def tile_blocks(height: int, width: int, block_px: int | None, chunk_px: int | str
                ) -> list[tuple[str, Window]]:
    """The blocks of a ``height`` x ``width`` map, row-major, as (id ``r<row>c<col>``,
    window): squares of ``block_px`` rounded up to a multiple of :func:`block_unit` (None or
    0: one block, the whole map)."""
    if not block_px:
        return [("r0c0", Window(0, 0, width, height))]
    unit = block_unit(chunk_px)
    side = -(-int(block_px) // unit) * unit
    return [(f"r{r // side}c{c // side}", Window(c, r, min(side, width - c), min(side, height - r)))
            for r in range(0, height, side) for c in range(0, width, side)]


def _predict_batch(model: torch.nn.Module, meta: dict, sensors: dict, origins: np.ndarray,
                   index: torch.Tensor, ref_days: np.ndarray, pipeline: object,
                   gapfill: str | None, num_samples: int = 32,
                   write: np.ndarray | None = None, region: int = -1) -> dict[str, np.ndarray]:
    """Model outputs of one batch of compacted series (see :func:`predict_pixels`)."""
    batch = Batch(sensors, torch.from_numpy(origins), index,
                  torch.full(index.shape, int(region), dtype=torch.int64))
    moments = latent_moments(model, batch, ref_days)  # computed once, decoded below
    mean, var = latent_arrays(batch, moments)
    return tile_outputs(model, meta, batch, moments, mean, var, ref_days, pipeline, gapfill,
                        num_samples, write)


def tile_outputs(model: torch.nn.Module, meta: dict, batch: Batch,
                 moments: tuple[torch.Tensor, torch.Tensor], mean: np.ndarray,
                 var: np.ndarray, ref_days: np.ndarray, pipeline: object, gapfill: str | None,
                 num_samples: int = 32, write: np.ndarray | None = None
                 ) -> dict[str, np.ndarray]:
    """The products of a batch from its latent ``moments`` at ``ref_days`` (tensors) and
    their arrays ``mean``, ``var`` (NaN for pixels without observation): embedding and the
    ``gapfill`` sensor's predictive mean and std at the written reference dates ``write``
    (indices, default all), class (from every reference date), valid."""
    origins = batch.origin.cpu().numpy()
    valid = ~np.isnan(mean).any(axis=(1, 2))
    write = np.arange(ref_days.size) if write is None else np.asarray(write)
    out = {"embedding": mean[:, write], "embedding_var": var[:, write],
           "valid": valid.astype(np.uint8)}
    if gapfill is not None:
        n = origins.size
        t = torch.as_tensor(np.broadcast_to(ref_days[write], (n, write.size)).copy())
        picked = (moments[0][:, write], moments[1][:, write])
        g_mean, g_std = observations_at(model, batch, gapfill, t, meta["normalisation"],
                                        latent=picked, num_samples=num_samples)
        g_mean[~valid], g_std[~valid] = np.nan, np.nan
        out["gapfilled"], out["gapfilled_std"] = g_mean, g_std
    classes = np.full(origins.size, -1, dtype=np.int16)
    if valid.any():
        classes[valid] = pipeline.predict(mean[valid].reshape(int(valid.sum()), -1))
    out["class_map"] = classes
    return out


def precision(device: torch.device, mixed: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast for the encoders and decoders when ``mixed`` (on CUDA, and on CPU so the
    GPU path is testable without a GPU); the GP algebra stays float32 inside the priors."""
    if not mixed:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def predict_pixels(model: torch.nn.Module, meta: dict, series: dict[str, np.ndarray],
                   days: dict[str, np.ndarray], origin: float, ref_days: np.ndarray,
                   pipeline: object, batch_size: int, num_samples: int = 32,
                   gapfill: str | None = None, write: np.ndarray | None = None,
                   mixed_precision: bool = False, region: int = -1
                   ) -> tuple[dict[str, np.ndarray], int]:
    """Model outputs of P pixels (physical series per sensor (P, T, C), NaN = missing):
    embedding mean/var (P, W, L) at the written reference dates ``write`` (indices into
    ``ref_days``, default all), the ``gapfill`` sensor's mean/std (P, W, C) when given
    (``num_samples`` latent samples decoded for non-linear decoders), class (P,) from the
    embedding at every reference date, valid (P,); and the batch size used (halved on every
    CUDA out-of-memory error). ``mixed_precision``: see :func:`precision`. ``region``: the
    pixels' region code in the model's data summary, for its date effects (-1 = a region it
    never saw)."""
    norm = meta["normalisation"]
    p = next(iter(series.values())).shape[0]
    parts: dict[str, list[np.ndarray]] = {}
    device = model_device(model)
    b0 = 0
    while b0 < p:
        sl = slice(b0, min(b0 + batch_size, p))
        origins = np.full(sl.stop - sl.start, origin)
        sensors = {s: compact_series(days[s], norm.normalise(s, v[sl]), origins)
                   for s, v in series.items()}
        try:
            with precision(device, mixed_precision):
                out = _predict_batch(model, meta, sensors, origins,
                                     torch.arange(sl.start, sl.stop), ref_days, pipeline,
                                     gapfill, num_samples, write, region)
        except torch.OutOfMemoryError:
            if batch_size == 1:
                raise
            batch_size = max(1, batch_size // 2)
            torch.cuda.empty_cache()
            log.warning("out of GPU memory: batch size lowered to %d", batch_size)
            continue
        for k, v in out.items():
            parts.setdefault(k, []).append(v)
        b0 = sl.stop
    return {k: np.concatenate(v, axis=0) for k, v in parts.items()}, batch_size


def auto_sizes(chunk_px: int | str, batch_size: int | str, device: torch.device
               ) -> tuple[int, int]:
    """Window side and batch size; "auto": 256 px windows and 65536-pixel batches on CUDA
    (lowered on out-of-memory), 64 px and 4096 on CPU."""
    cuda = device.type == "cuda"
    chunk = (256 if cuda else 64) if chunk_px == "auto" else int(chunk_px)
    batch = (65536 if cuda else 4096) if batch_size == "auto" else int(batch_size)
    return chunk, batch


def peak_memory_mib(device: torch.device) -> dict[str, float]:
    """Peak resident memory of this process (and peak CUDA memory on a GPU), MiB."""
    out = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if device.type == "cuda":
        out["peak_gpu_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def read_ahead(read: Callable[[T], R], items: list[T], lock: threading.Lock
               ) -> Iterator[tuple[T, R]]:
    """Yield (item, read(item)) in order while the next item is read in a background thread
    (reads overlap the caller's compute); ``read`` runs holding ``lock``, which the caller
    also holds for its own file I/O (HDF5 is not thread-safe)."""
    def locked(item: T) -> R:
        with lock:
            return read(item)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tile-read") as pool:
        pending = pool.submit(locked, items[0]) if items else None
        for i, item in enumerate(items):
            result = pending.result()
            pending = pool.submit(locked, items[i + 1]) if i + 1 < len(items) else None
            yield item, result


def gapfill_target(meta: dict, sensor: str | None, *, file: object = None) -> Sensor | None:
    """The sensor a tile product gap-fills: ``sensor`` (one the model reads), else the model's
    first optical or index sensor (None when it has none)."""
    registry = meta["sensors"]
    if sensor is not None:
        if sensor not in meta["sensor_bands"]:
            raise InputError(f"model {meta.get('model_name')} does not read {sensor}",
                             file=file, field="gapfill.sensor",
                             fix=f"choose among {list(meta['sensor_bands'])}")
        return registry[sensor]
    return next((registry[s] for s in meta["sensor_bands"]
                 if registry[s].kind in ("optical", "index")), None)


def _check_sizes(chunk_px, batch_size, num_samples, block_px, ref_days) -> None:
    bad = [v for v in (chunk_px, batch_size) if v != "auto" and (not isinstance(v, int)
                                                                 or isinstance(v, bool)
                                                                 or v < 1)]
    if not isinstance(num_samples, int) or num_samples < 1:
        bad.append(num_samples)
    if block_px is not None and (not isinstance(block_px, int) or block_px < 0):
        bad.append(block_px)
    if bad or ref_days.ndim != 1 or ref_days.size == 0:
        raise InputError("chunk_px and batch_size must be integers >= 1 or 'auto', "
                         "num_samples an integer >= 1, block_px an integer >= 0 or null, and "
                         "ref_days a non-empty 1-D array",
                         field="chunk_px/batch_size/num_samples/block_px/ref_days",
                         fix="e.g. chunk_px auto, batch_size auto, block_px 2048, ref_days "
                             "np.arange(0, 365, 10)")


def product_packings(gapfill: Sensor | None, bands: list[str] | None) -> dict[str, Packing]:
    """How each float product is stored (gpvae.io.product)."""
    out = {"embedding": EMBEDDING_PACKING, "embedding_var": EMBEDDING_VAR_PACKING}
    if gapfill is not None:
        out["gapfilled"] = sensor_packing(gapfill, bands)
        out["gapfilled_std"] = std_packing(out["gapfilled"])
    return out


def product_attrs(meta: dict, model: torch.nn.Module, gapfill: Sensor | None,
                  checkpoint: Path, classifier: Path, class_names: list[str],
                  **extra: str) -> dict:
    """The attributes every tile product carries (docs/contracts.md section 7): model, how it
    reads its latent, the gap-filled sensor, checkpoint, classifier, class names; ``extra``
    (source, inputs, products, ...) beside them."""
    return {"model": str(meta.get("model_name")), "method": latent_method(model),
            "sensor": "" if gapfill is None else gapfill.name,
            "sensor_definition": "" if gapfill is None else json.dumps(gapfill.to_dict()),
            "checkpoint": str(checkpoint), "classifier": str(classifier),
            "class_names": json.dumps(list(class_names)), **extra}


def block_skeleton(tiles: TileInputs, map_win: Window, block: Window, ref_days: np.ndarray,
                   write: np.ndarray, latent_dim: int, bands: list[str] | None,
                   attrs: dict) -> xr.Dataset:
    """Coordinates, grid mapping and attributes of a block of a tile product: ``time`` (the
    written reference dates as dates), ``ref_day(time)``, ``latent``, ``band``, ``y``, ``x``."""
    start = np.datetime64(tiles.start, "ns")
    days = np.asarray(ref_days, dtype=np.float64)[write]
    times = start + np.round(days * 86400e9).astype("timedelta64[ns]")
    rows = slice(int(map_win.row_off + block.row_off),
                 int(map_win.row_off + block.row_off + block.height))
    cols = slice(int(map_win.col_off + block.col_off),
                 int(map_win.col_off + block.col_off + block.width))
    coords = {"time": ("time", times, {"standard_name": "time", "axis": "T",
                                       "long_name": "reference date"}),
              "ref_day": ("time", days, {"long_name": "reference date, days after the span "
                                                      "start", "units": "days"}),
              "latent": np.arange(latent_dim, dtype=np.int32),
              "y": ("y", tiles.y[rows], {"units": "m", "axis": "Y",
                                         "standard_name": "projection_y_coordinate"}),
              "x": ("x", tiles.x[cols], {"units": "m", "axis": "X",
                                         "standard_name": "projection_x_coordinate"})}
    if bands is not None:
        coords["band"] = np.asarray(bands, dtype=str)
    block_transform = window_transform(Window(cols.start, rows.start, 0, 0), tiles.transform)
    ds = xr.Dataset({"spatial_ref": spatial_ref(tiles.crs, block_transform)}, coords=coords)
    ds.attrs = {"crs": tiles.crs.to_wkt(), "transform": list(block_transform.to_gdal()),
                "tile": tiles.tile, "year": tiles.year,
                "span_start": str(np.datetime_as_string(tiles.start, "D")),
                "span_end": str(np.datetime_as_string(tiles.end, "D")),
                "map_transform": list(window_transform(map_win, tiles.transform).to_gdal()),
                "map_height": int(map_win.height), "map_width": int(map_win.width),
                "block_row_off": int(block.row_off), "block_col_off": int(block.col_off),
                "gpvae_version": gpvae.__version__, "Conventions": "CF-1.8", **attrs}
    return ds


def block_specs(products: list[str], latent_dim: int, bands: list[str] | None,
                chunk: tuple[int, int], class_names: list[str], sensor: Sensor | None,
                packings: dict[str, Packing]) -> dict[str, VarSpec]:
    """The streamed (packed) variables of a block, chunked like its processing windows."""
    grid = {"grid_mapping": "spatial_ref"}
    what = {"embedding": "latent posterior mean", "embedding_var": "latent posterior variance",
            "gapfilled": "predictive mean",
            "gapfilled_std": "predictive std incl. observation noise"}
    specs = {}
    for name in products:
        if name == "class_map":
            specs[name] = VarSpec(("y", "x"), "int16", chunk,
                                  {**grid, "long_name": "class index, -1 = no data",
                                   **class_attrs(class_names)})
            continue
        if name in GAPFILL_PRODUCTS and sensor is None:
            continue
        pack = packings[name]
        inner = ("latent", latent_dim) if name.startswith("embedding") else ("band", len(bands))
        attrs = {**grid, **pack.attrs(), "long_name": what[name]}
        if name in GAPFILL_PRODUCTS:
            attrs.update(long_name=f"{sensor.name} {what[name]}", units=sensor.bands[0].unit,
                         sensor=sensor.name)
        specs[name] = VarSpec(("time", inner[0], "y", "x"), pack.dtype,
                              (1, inner[1], *chunk), attrs, fill=pack.fill)
    specs["valid"] = VarSpec(("y", "x"), "uint8", chunk,
                             {**grid, "long_name": "0 = no observation (NaN embedding)"})
    return specs


def _windows(block: Window, map_win: Window, chunk_px: int) -> list[tuple[slice, slice]]:
    """Processing windows of a block: the map's ``chunk_px`` grid cut to the block, as
    absolute (rows, cols) slices of the tile."""
    r0, c0 = int(block.row_off), int(block.col_off)
    r1, c1 = r0 + int(block.height), c0 + int(block.width)
    out = []
    for r in range(r0 - r0 % chunk_px, r1, chunk_px):
        for c in range(c0 - c0 % chunk_px, c1, chunk_px):
            rr = slice(max(r, r0) + int(map_win.row_off), min(r + chunk_px, r1)
                       + int(map_win.row_off))
            cc = slice(max(c, c0) + int(map_win.col_off), min(c + chunk_px, c1)
                       + int(map_win.col_off))
            out.append((rr, cc))
    return out


def map_window(tiles: TileInputs, aoi: Sequence[float] | None) -> Window:
    """The mapped window of the tile: ``aoi`` (xmin, ymin, xmax, ymax in the tile CRS,
    snapped outwards to whole pixels), else the whole tile."""
    return aoi_window(None if aoi is None else tuple(aoi), tiles.transform, tiles.height,
                      tiles.width, align=1, file="predict.aoi")


def predict_block(cubes: dict[str, Path], masks: dict[str, Path], checkpoint: Path,
                  classifier: Path, out_nc: Path, *, ref_days: np.ndarray,
                  block: str | None = None, block_px: int | None = None,
                  aoi: Sequence[float] | None = None, year: int | None = None,
                  chunk_px: int | str = "auto", device: str = "auto",
                  batch_size: int | str = "auto", num_samples: int = 32,
                  sensor: str | None = None, products: Sequence[str] | None = None,
                  dates: Sequence[float] | None = None,
                  mixed_precision: bool = False, region: str | None = None) -> Path:
    """Write one block of a tile product (packed netCDF, docs/contracts.md section 7) and
    its cost JSON (``<stem>_cost.json``); returns ``out_nc``.

    ``block``: the id of a block of :func:`tile_blocks` (``r<row>c<col>``; None: the whole
    map) for ``block_px``; ``aoi``: the mapped window (default: the tile); ``chunk_px`` /
    ``batch_size``: window side and model batch, or "auto" (:func:`auto_sizes`);
    ``num_samples``: latent samples decoded for the gap-filled mean and std; ``sensor``: the
    gap-filled sensor (default: the model's first optical or index sensor; none if it has
    none); ``products``: variables to write (gpvae.io.product.PRODUCTS, default all);
    ``dates``: days since the span start of the dates to write (nearest reference dates;
    default every reference date; the class map always uses all of them); ``year`` picks the
    span of the training data's rule labelled with that year; ``mixed_precision``: bf16
    autocast (:func:`precision`); ``region``: the tile's region name for the model's date
    effects (default: the tile).
    """
    out_nc = Path(out_nc)
    ref_days = np.asarray(ref_days, dtype=np.float64)
    _check_sizes(chunk_px, batch_size, num_samples, block_px, ref_days)
    products, _ = check_products(products, [])
    write = date_indices(ref_days, dates)
    model, meta = load_model(checkpoint, device)
    dev = model_device(model)
    block_chunk = chunk_px  # the configured value: block ids must not depend on the device
    chunk_px, batch_size = auto_sizes(chunk_px, batch_size, dev)
    bundle = load_classifier(classifier)
    check_layout(bundle, ref_days, model.latent_dim, file=classifier)
    sensor_bands = meta["sensor_bands"]
    gapfill = gapfill_target(meta, sensor, file=checkpoint)
    if not set(GAPFILL_PRODUCTS) & set(products):
        gapfill = None  # nothing to decode
    bands = None if gapfill is None else sensor_bands[gapfill.name]
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    span = Span(**meta["data_span"]) if meta.get("data_span") else Span()
    packings = product_packings(gapfill, bands)
    with TileInputs(cubes, masks, sensor_bands, year, span) as tiles:
        map_win = map_window(tiles, aoi)
        blocks = dict(tile_blocks(int(map_win.height), int(map_win.width), block_px,
                                  block_chunk))
        if block is not None and block not in blocks:
            raise InputError(f"block {block!r} is not a block of this map ({len(blocks)} "
                             f"blocks of {block_px} px)", field="block",
                             fix=f"choose among {', '.join(list(blocks)[:8])}...")
        win = (blocks[block] if block is not None else
               Window(0, 0, int(map_win.width), int(map_win.height)))
        class_names = list(bundle["class_names"])
        attrs = product_attrs(
            meta, model, gapfill, checkpoint, classifier, class_names,
            source=f"gpvae {gpvae.__version__}: {meta.get('model_name')} "
                   f"({Path(checkpoint).name}), classifier {Path(classifier).name}",
            inputs=json.dumps({"cubes": {k: str(v) for k, v in cubes.items()},
                               "masks": {k: str(v) for k, v in masks.items()}},
                              sort_keys=True),
            products=" ".join(products))
        chunk = (min(chunk_px, int(win.height)), min(chunk_px, int(win.width)))
        specs = block_specs(products, model.latent_dim, bands, chunk, class_names, gapfill,
                            packings)
        attrs["products"] = " ".join(p for p in products if p in specs)  # what is written
        skeleton = block_skeleton(tiles, map_win, win, ref_days, write, model.latent_dim,
                                  bands, attrs)
        windows = _windows(win, map_win, chunk_px)
        days = {s: src.days for s, src in tiles.sources.items()}
        summary = meta.get("data_summary")
        code = (-1 if summary is None
                else int(summary.region_codes(np.array([region or tiles.tile]))[0]))
        log.info("tile %s year %d block %s: %d x %d px in %d windows of %d px, batch %d, "
                 "%d of %d dates, on %s", tiles.tile, tiles.year, block or "(whole map)",
                 win.height, win.width, len(windows), chunk_px, batch_size, write.size,
                 ref_days.size, dev)
        start = time.perf_counter()
        done, io_lock, clipped = 0, threading.Lock(), dict.fromkeys(packings, 0)
        r_base = int(map_win.row_off + win.row_off)
        c_base = int(map_win.col_off + win.col_off)
        with stream_netcdf(out_nc, skeleton, specs) as variables:
            progress = tqdm(read_ahead(lambda w: tiles.window(*w), windows, io_lock),
                            total=len(windows), desc=f"tile {tiles.tile}", unit="window",
                            disable=not sys.stderr.isatty())
            for k, ((rows, cols), series) in enumerate(progress):
                out, batch_size = predict_pixels(
                    model, meta, series, days, tiles.origin, ref_days, bundle["pipeline"],
                    batch_size, num_samples, None if gapfill is None else gapfill.name, write,
                    mixed_precision, code)
                hh, ww = rows.stop - rows.start, cols.stop - cols.start
                local = (slice(rows.start - r_base, rows.stop - r_base),
                         slice(cols.start - c_base, cols.stop - c_base))
                with io_lock:
                    for name, var in variables.items():
                        values = out[name]
                        if name in packings:
                            values, n = packings[name].pack(values)
                            clipped[name] += n
                        grid = values.reshape(hh, ww, *values.shape[1:])
                        grid = np.moveaxis(grid, (0, 1), (-2, -1)) if grid.ndim > 2 else grid
                        var[(..., *local)] = grid
                done += hh * ww
                rate = done / max(time.perf_counter() - start, 1e-9)
                progress.set_postfix_str(f"{rate:.0f} px/s")
                if (k + 1) % max(1, len(windows) // 10) == 0 or k + 1 == len(windows):
                    log.info("tile %s: %d/%d windows, %d px, %.0f px/s", tiles.tile, k + 1,
                             len(windows), done, rate)
            seconds = time.perf_counter() - start
    for name, n in clipped.items():
        if n:
            log.warning("%s: %d values outside the packed range were clipped (%s)", name, n,
                        packings[name])
    cost = {"model": str(meta.get("model_name")), "tile": tiles.tile, "year": tiles.year,
            "block": block or "", "pixels": done, "seconds": seconds,
            "pixels_per_second": done / max(seconds, 1e-9), **peak_memory_mib(dev),
            "device": str(dev), "chunk_px": chunk_px, "batch_size": batch_size,
            "num_samples": num_samples, "dates_written": int(write.size),
            "mixed_precision": bool(mixed_precision)}
    log.info("tile %s block %s: %d px in %.1f s = %.0f px/s, peak RSS %.0f MiB; wrote %s",
             tiles.tile, block or "(whole map)", done, seconds, cost["pixels_per_second"],
             cost["peak_rss_mib"], out_nc)
    with atomic_path(cost_path(out_nc)) as tmp:
        tmp.write_text(json.dumps(cost, indent=2))
    return out_nc


def list_blocks(cube: Path, out_json: Path, *, block_px: int | None,
                chunk_px: int | str = "auto", aoi: Sequence[float] | None = None) -> Path:
    """Write the block ids of a tile's map (:func:`tile_blocks` over the ``aoi`` window of
    the cube's grid) as a JSON list: what the Snakemake block jobs fan out over."""
    from gpvae.io.cube import cube_grid, open_cube

    with open_cube(cube) as ds:
        _, transform, h, w = cube_grid(ds)
    win = aoi_window(None if aoi is None else tuple(aoi), transform, h, w, align=1,
                     file="predict.aoi")
    ids = [b for b, _ in tile_blocks(int(win.height), int(win.width), block_px, chunk_px)]
    with atomic_path(out_json) as tmp:
        tmp.write_text(json.dumps(ids))
    return Path(out_json)


def predict_tile(cubes: dict[str, Path], masks: dict[str, Path], checkpoint: Path,
                 classifier: Path, out_nc: Path, *, ref_days: np.ndarray,
                 block_px: int | None = None, geotiffs: Sequence[str] | None = None,
                 **kwargs: object) -> Path:
    """The tile product of contracts section 7 in one call: every block of ``block_px``
    (:func:`predict_block`, keywords as there; None: one block) into ``<stem>_blocks/``
    beside ``out_nc``, then the mosaic, its GeoTIFFs and cost JSON
    (:func:`gpvae.evaluate.tile_gather.gather_tile`); the block files are removed."""
    from gpvae.evaluate.tile_gather import gather_tile
    from gpvae.io.cube import cube_grid, open_cube

    out_nc = Path(out_nc)
    folder = out_nc.with_name(f"{out_nc.stem}_blocks")
    ref_days = np.asarray(ref_days, dtype=np.float64)
    _check_sizes(kwargs.get("chunk_px", "auto"), kwargs.get("batch_size", "auto"),
                 kwargs.get("num_samples", 32), block_px, ref_days)
    check_products(kwargs.get("products"), geotiffs)
    first = "S2" if "S2" in cubes else next(iter(cubes))
    with open_cube(cubes[first]) as ds:
        _, transform, h, w = cube_grid(ds)
    win = aoi_window(kwargs.get("aoi"), transform, h, w, align=1, file="predict.aoi")
    chunk = kwargs.get("chunk_px", "auto")
    ids = [b for b, _ in tile_blocks(int(win.height), int(win.width), block_px, chunk)]
    paths = []
    try:
        for b in ids:
            paths.append(predict_block(cubes, masks, checkpoint, classifier,
                                       folder / f"{b}.nc", ref_days=ref_days,
                                       block=b if block_px else None, block_px=block_px,
                                       **kwargs))
        return gather_tile(paths, out_nc, geotiffs=geotiffs)
    finally:
        for p in paths:
            p.unlink(missing_ok=True)
            cost_path(p).unlink(missing_ok=True)
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
