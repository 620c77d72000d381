"""Tile products (docs/contracts.md section 7): stream a whole tile through a trained model.

The tile is processed in ``chunk_px x chunk_px`` windows: each window's series of one span
(the training data's span rule: a year, a season or the whole range) are read lazily
(:class:`~gpvae.evaluate.tile_inputs.TileInputs`), normalised and compacted like the pixel
dataset, and passed in batches to the model: latent posterior at the reference dates (the
embedding), the gap-filled sensor's predictive mean and std at the same dates (gap-filled cube;
by default the model's first optical or index sensor, e.g. S2), and the class of the embedding
from the saved downstream random forest. Results are written window by window into the netCDF
(memory bounded by one window), then GeoTIFF quicklooks are streamed from it. Pixels without
any usable observation in the span get NaN embeddings, ``valid`` 0 and class -1.
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import xarray as xr
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
from gpvae.evaluate.tile_geotiff import ScatterMoments, write_quicklooks
from gpvae.evaluate.tile_inputs import TileInputs
from gpvae.io.atomic import atomic_path
from gpvae.io.cube import spatial_ref
from gpvae.io.ncstream import VarSpec, stream_netcdf
from gpvae.io.sensors import Sensor
from gpvae.models.build import load_model

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


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


def mid_index(ref_days: np.ndarray) -> int:
    """Index of the reference date nearest the middle of the reference range (mid-season)."""
    ref_days = np.asarray(ref_days, dtype=np.float64)
    return int(np.abs(ref_days - 0.5 * (ref_days.min() + ref_days.max())).argmin())


def product_skeleton(tiles: TileInputs, ref_days: np.ndarray, latent_dim: int,
                     bands: list[str] | None, attrs: dict) -> xr.Dataset:
    """Coordinates, grid mapping and attributes of a tile product (no data variables)."""
    coords = {"ref_day": ("ref_day", np.asarray(ref_days, dtype=np.float64),
                          {"long_name": "reference date, days after "
                                        f"{np.datetime_as_string(tiles.start, 'D')}"}),
              "latent": np.arange(latent_dim, dtype=np.int32),
              "y": ("y", tiles.y, {"units": "m", "axis": "Y"}),
              "x": ("x", tiles.x, {"units": "m", "axis": "X"})}
    if bands is not None:
        coords["band"] = np.asarray(bands, dtype=str)
    ds = xr.Dataset({"spatial_ref": spatial_ref(tiles.crs, tiles.transform)}, coords=coords)
    ds.attrs = {"crs": tiles.crs.to_wkt(), "transform": list(tiles.transform.to_gdal()),
                "tile": tiles.tile, "year": tiles.year,
                "span_start": str(np.datetime_as_string(tiles.start, "D")),
                "span_end": str(np.datetime_as_string(tiles.end, "D")),
                "gpvae_version": gpvae.__version__,
                "Conventions": "CF-1.8", **attrs}
    return ds


def product_specs(latent_dim: int, num_refs: int, num_bands: int | None, chunk: tuple[int, int],
                  class_names: list[str], sensor: Sensor | None = None) -> dict[str, VarSpec]:
    """The streamed variables of contracts section 7, chunked like the processing windows."""
    grid = {"grid_mapping": "spatial_ref"}
    specs = {
        "embedding": VarSpec(("ref_day", "latent", "y", "x"), "float32",
                             (1, latent_dim, *chunk),
                             {**grid, "long_name": "latent posterior mean"}),
        "embedding_var": VarSpec(("ref_day", "latent", "y", "x"), "float32",
                                 (1, latent_dim, *chunk),
                                 {**grid, "long_name": "latent posterior variance"}),
        "class_map": VarSpec(("y", "x"), "int16", chunk,
                             {**grid, "long_name": "class index, -1 = no data",
                              "class_names": json.dumps(class_names)}),
        "valid": VarSpec(("y", "x"), "uint8", chunk,
                         {**grid, "long_name": "0 = no observation (NaN embedding)"}),
    }
    if num_bands is not None:
        for name, what in (("gapfilled", "predictive mean"), ("gapfilled_std", "predictive "
                                                              "std incl. observation noise")):
            specs[name] = VarSpec(("ref_day", "band", "y", "x"), "float32",
                                  (1, num_bands, *chunk),
                                  {**grid, "long_name": f"{sensor.name} {what}",
                                   "units": sensor.bands[0].unit, "sensor": sensor.name})
    return specs


def _predict_batch(model: torch.nn.Module, meta: dict, sensors: dict, origins: np.ndarray,
                   index: torch.Tensor, ref_days: np.ndarray, pipeline: object,
                   gapfill: str | None, num_samples: int = 32, region: int = -1
                   ) -> dict[str, np.ndarray]:
    """Model outputs of one batch of compacted series (see :func:`predict_pixels`)."""
    batch = Batch(sensors, torch.from_numpy(origins), index,
                  torch.full(index.shape, int(region), dtype=torch.int64))
    moments = latent_moments(model, batch, ref_days)  # computed once, decoded below
    mean, var = latent_arrays(batch, moments)
    return tile_outputs(model, meta, batch, moments, mean, var, ref_days, pipeline, gapfill,
                        num_samples)


def tile_outputs(model: torch.nn.Module, meta: dict, batch: Batch,
                 moments: tuple[torch.Tensor, torch.Tensor], mean: np.ndarray,
                 var: np.ndarray, ref_days: np.ndarray, pipeline: object, gapfill: str | None,
                 num_samples: int = 32) -> dict[str, np.ndarray]:
    """The products of a batch from its latent ``moments`` at ``ref_days`` (tensors) and
    their arrays ``mean``, ``var`` (NaN for pixels without observation): embedding, the
    ``gapfill`` sensor's predictive mean and std, class, valid."""
    origins = batch.origin.cpu().numpy()
    valid = ~np.isnan(mean).any(axis=(1, 2))
    out = {"embedding": mean, "embedding_var": var, "valid": valid.astype(np.uint8)}
    if gapfill is not None:
        n = origins.size
        t = torch.as_tensor(np.broadcast_to(ref_days, (n, ref_days.size)).copy())
        g_mean, g_std = observations_at(model, batch, gapfill, t, meta["normalisation"],
                                        latent=moments, num_samples=num_samples)
        g_mean[~valid], g_std[~valid] = np.nan, np.nan
        out["gapfilled"], out["gapfilled_std"] = g_mean, g_std
    classes = np.full(origins.size, -1, dtype=np.int16)
    if valid.any():
        classes[valid] = pipeline.predict(mean[valid].reshape(int(valid.sum()), -1))
    out["class_map"] = classes
    return out


def predict_pixels(model: torch.nn.Module, meta: dict, series: dict[str, np.ndarray],
                   days: dict[str, np.ndarray], origin: float, ref_days: np.ndarray,
                   pipeline: object, batch_size: int, num_samples: int = 32,
                   gapfill: str | None = None, region: int = -1
                   ) -> tuple[dict[str, np.ndarray], int]:
    """Model outputs of P pixels (physical series per sensor (P, T, C), NaN = missing):
    embedding mean/var (P, R, L), the ``gapfill`` sensor's mean/std (P, R, C) when given
    (``num_samples`` latent samples decoded for non-linear decoders), class (P,), valid (P,);
    and the batch size used (halved on every CUDA out-of-memory error). ``region``: the
    pixels' region code in the model's data summary (-1 = a region it never saw)."""
    norm = meta["normalisation"]
    p = next(iter(series.values())).shape[0]
    parts: dict[str, list[np.ndarray]] = {}
    b0 = 0
    while b0 < p:
        sl = slice(b0, min(b0 + batch_size, p))
        origins = np.full(sl.stop - sl.start, origin)
        sensors = {s: compact_series(days[s], norm.normalise(s, v[sl]), origins)
                   for s, v in series.items()}
        try:
            out = _predict_batch(model, meta, sensors, origins, torch.arange(sl.start, sl.stop),
                                 ref_days, pipeline, gapfill, num_samples, region)
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


def predict_tile(cubes: dict[str, Path], masks: dict[str, Path], checkpoint: Path,
                 classifier: Path, out_nc: Path, *, ref_days: np.ndarray,
                 year: int | None = None, chunk_px: int | str = "auto", device: str = "auto",
                 batch_size: int | str = "auto", num_samples: int = 32,
                 sensor: str | None = None, region: str | None = None) -> Path:
    """Write the tile product of contracts section 7 (netCDF + GeoTIFF quicklooks + cost
    JSON ``<stem>_cost.json``) for one model and tile; returns ``out_nc``.

    ``chunk_px`` / ``batch_size``: window side and model batch, or "auto" (:func:`auto_sizes`);
    ``num_samples``: latent samples decoded for the gap-filled mean and std; ``sensor``: the
    gap-filled sensor (default: the model's first optical or index sensor; none if it has
    none). ``year`` picks the span of the training data's rule labelled with that year;
    ``region``: the tile's region name for the model's date effects (default: the tile).
    """
    out_nc = Path(out_nc)
    ref_days = np.asarray(ref_days, dtype=np.float64)
    bad = [v for v in (chunk_px, batch_size) if v != "auto" and (not isinstance(v, int)
                                                                 or isinstance(v, bool)
                                                                 or v < 1)]
    if not isinstance(num_samples, int) or num_samples < 1:
        bad.append(num_samples)
    if bad or ref_days.ndim != 1 or ref_days.size == 0:
        raise InputError("chunk_px and batch_size must be integers >= 1 or 'auto', "
                         "num_samples an integer >= 1, and ref_days a non-empty 1-D array",
                         field="chunk_px/batch_size/num_samples/ref_days",
                         fix="e.g. chunk_px auto, batch_size auto, ref_days "
                             "np.arange(0, 365, 10)")
    model, meta = load_model(checkpoint, device)
    dev = model_device(model)
    chunk_px, batch_size = auto_sizes(chunk_px, batch_size, dev)
    bundle = load_classifier(classifier)
    check_layout(bundle, ref_days, model.latent_dim, file=classifier)
    sensor_bands = meta["sensor_bands"]
    gapfill = gapfill_target(meta, sensor, file=checkpoint)
    bands = None if gapfill is None else sensor_bands[gapfill.name]
    rgb = None if gapfill is None else gapfill.composite(bands)
    rgb_index = None if rgb is None else [bands.index(b) for b in rgb]
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    span = Span(**meta["data_span"]) if meta.get("data_span") else Span()
    with TileInputs(cubes, masks, sensor_bands, year, span) as tiles:
        h, w = tiles.height, tiles.width
        chunk = (min(chunk_px, h), min(chunk_px, w))
        attrs = {"model": str(meta.get("model_name")), "method": latent_method(model),
                 "sensor": "" if gapfill is None else gapfill.name,
                 "sensor_definition": "" if gapfill is None else json.dumps(gapfill.to_dict()),
                 "checkpoint": str(checkpoint), "classifier": str(classifier),
                 "class_names": json.dumps(list(bundle["class_names"]))}
        skeleton = product_skeleton(tiles, ref_days, model.latent_dim, bands, attrs)
        specs = product_specs(model.latent_dim, ref_days.size,
                              None if bands is None else len(bands), chunk,
                              list(bundle["class_names"]), gapfill)
        windows = [(slice(r, min(r + chunk_px, h)), slice(c, min(c + chunk_px, w)))
                   for r in range(0, h, chunk_px) for c in range(0, w, chunk_px)]
        mid = mid_index(ref_days)
        summary = meta.get("data_summary")
        code = (-1 if summary is None
                else int(summary.region_codes(np.array([region or tiles.tile]))[0]))
        scatter = ScatterMoments.zeros(model.latent_dim)
        days = {s: src.days for s, src in tiles.sources.items()}
        log.info("tile %s year %d: %d x %d px in %d windows of %d px, batch %d, on %s",
                 tiles.tile, tiles.year, h, w, len(windows), chunk_px, batch_size, dev)
        start = time.perf_counter()
        done, io_lock = 0, threading.Lock()
        with stream_netcdf(out_nc, skeleton, specs) as variables:
            progress = tqdm(read_ahead(lambda win: tiles.window(*win), windows, io_lock),
                            total=len(windows), desc=f"tile {tiles.tile}", unit="window",
                            disable=not sys.stderr.isatty())
            for k, ((rows, cols), series) in enumerate(progress):
                out, batch_size = predict_pixels(model, meta, series, days, tiles.origin,
                                                 ref_days, bundle["pipeline"], batch_size,
                                                 num_samples,
                                                 None if gapfill is None else gapfill.name,
                                                 code)
                hh, ww = rows.stop - rows.start, cols.stop - cols.start
                with io_lock:
                    for name, values in out.items():
                        grid = values.reshape(hh, ww, *values.shape[1:])
                        grid = np.moveaxis(grid, (0, 1), (-2, -1)) if grid.ndim > 2 else grid
                        variables[name][..., rows, cols] = grid
                scatter.update(out["embedding"][:, mid])
                done += hh * ww
                rate = done / max(time.perf_counter() - start, 1e-9)
                progress.set_postfix_str(f"{rate:.0f} px/s")
                if (k + 1) % max(1, len(windows) // 10) == 0 or k + 1 == len(windows):
                    log.info("tile %s: %d/%d windows, %d px, %.0f px/s", tiles.tile, k + 1,
                             len(windows), done, rate)
            seconds = time.perf_counter() - start
            written = write_quicklooks(variables, out_nc, crs=tiles.crs,
                                       transform=tiles.transform, mid=mid,
                                       pca=scatter.principal_axes(3), rgb_index=rgb_index)
        pixels = h * w
    cost = {"model": str(meta.get("model_name")), "tile": tiles.tile, "year": tiles.year,
            "pixels": pixels, "seconds": seconds,
            "pixels_per_second": pixels / max(seconds, 1e-9), **peak_memory_mib(dev),
            "device": str(dev), "chunk_px": chunk_px, "batch_size": batch_size,
            "num_samples": num_samples}
    log.info("tile %s: %d px in %.1f s = %.0f px/s, peak RSS %.0f MiB; wrote %s and %s",
             tiles.tile, pixels, seconds, cost["pixels_per_second"], cost["peak_rss_mib"],
             out_nc, ", ".join(p.name for p in written))
    with atomic_path(cost_path(out_nc)) as tmp:
        tmp.write_text(json.dumps(cost, indent=2))
    return out_nc


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


def cost_path(out_nc: Path) -> Path:
    """``<stem>_cost.json`` beside a tile product."""
    out_nc = Path(out_nc)
    return out_nc.with_name(f"{out_nc.stem}_cost.json")
