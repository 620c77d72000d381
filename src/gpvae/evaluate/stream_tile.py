"""A tile's products updated with new acquisitions, without retraining or recomputing.

``tile_state`` runs a trained Markov GP-VAE over a tile once and keeps, per pixel, the
filter state at its last observed date and its products with their gains
(:mod:`gpvae.models.priors.streaming`) in a state file (docs/contracts.md section 7b).
``update_tile`` reads that state and cubes holding only the new acquisitions, updates every
pixel by the filter's forward step and the bounded backward pass, and writes the updated tile
product (section 7's format: embeddings, gap-filled sensor with std, class map) and the new
state, so updates chain. The updated product equals the one of a full recomputation over all
dates (tests/test_streaming.py).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from rasterio.windows import Window

from gpvae.data.batch import Batch, SensorBatch
from gpvae.data.series import compact_series
from gpvae.data.span import Span
from gpvae.errors import InputError
from gpvae.evaluate.downstream import load_classifier
from gpvae.evaluate.inference import model_device
from gpvae.evaluate.tile import (
    auto_sizes,
    block_skeleton,
    block_specs,
    check_layout,
    gapfill_target,
    peak_memory_mib,
    product_attrs,
    product_packings,
    tile_outputs,
)
from gpvae.evaluate.tile_gather import gather_tile
from gpvae.evaluate.tile_inputs import TileInputs
from gpvae.io.atomic import atomic_path
from gpvae.io.cube import spatial_ref
from gpvae.io.ncstream import VarSpec, stream_netcdf
from gpvae.io.product import PRODUCTS, cost_path
from gpvae.models.build import load_model
from gpvae.models.priors.markov import MarkovGPPrior
from gpvae.models.priors.streaming import StreamState, empty_state, products, stream_update

log = logging.getLogger(__name__)

#: Pixels passed to the filter at once (its per-date tensors are (B, L, dates, D, D)).
STREAM_BATCH = 512
#: State variables: name -> (dims without y/x, dtype).
STATE_VARS = {"t_last": ((), "float64"), "mean": (("latent", "state"), "float64"),
              "cov": (("latent", "state", "state2"), "float64"),
              "ref_mean": (("ref_day", "latent"), "float32"),
              "ref_var": (("ref_day", "latent"), "float32"),
              "gain": (("ref_day", "latent", "state"), "float32"),
              "past": (("ref_day",), "uint8")}


def check_streamable(model: torch.nn.Module, *, file: object = None) -> MarkovGPPrior:
    """The model's Markov prior; InputError for a model without one."""
    prior = getattr(model, "prior", None)
    if not isinstance(prior, MarkovGPPrior):
        raise InputError("only GP-VAEs with the markov prior update with new acquisitions "
                         f"(this model: {model.config.get('type')}, prior "
                         f"{model.config.get('prior')})", file=file, field="update.models",
                         fix="list markov GP-VAEs in update.models")
    return prior


def window_batch(meta: dict, series: dict[str, np.ndarray], days: dict[str, np.ndarray],
                 origin: float, region: int, sel: slice) -> Batch:
    """The compacted, normalised batch of pixels ``sel`` of a window's series; model sensors
    absent from ``series`` get no observation."""
    norm = meta["normalisation"]
    n = sel.stop - sel.start
    origins = np.full(n, origin)
    sensors = {}
    for s, bands in meta["sensor_bands"].items():
        if s in series:
            sensors[s] = compact_series(days[s], norm.normalise(s, series[s][sel]), origins)
        else:
            sensors[s] = SensorBatch(torch.zeros(n, 1), torch.zeros(n, 1, len(bands)),
                                     torch.zeros(n, 1, len(bands), dtype=torch.bool),
                                     torch.zeros(n, 1, dtype=torch.bool))
    index = torch.arange(sel.start, sel.stop)
    return Batch(sensors, torch.from_numpy(origins), index,
                 torch.full(index.shape, int(region), dtype=torch.int64))


def update_pixels(model: torch.nn.Module, prior: MarkovGPPrior, batch: Batch,
                  state: StreamState, ref_days: np.ndarray) -> tuple[StreamState, int]:
    """``state`` of the batch's pixels after their (new) observations."""
    device = model_device(model)
    batch = batch.to(device)
    t_ref = torch.as_tensor(ref_days, dtype=torch.float64, device=device).expand(
        batch.batch_size, -1)
    with torch.no_grad():
        tl, mask, sm, sv = model.sites(batch)
        return stream_update(prior, state, t_ref, tl.t, mask, sm, sv)


def state_skeleton(tiles: TileInputs, ref_days: np.ndarray, latent_dim: int, dim: int,
                   attrs: dict) -> xr.Dataset:
    """Coordinates, grid mapping and attributes of a state file."""
    coords = {"ref_day": np.asarray(ref_days, np.float64),
              "latent": np.arange(latent_dim, dtype=np.int32),
              "state": np.arange(dim, dtype=np.int32), "state2": np.arange(dim, dtype=np.int32),
              "y": ("y", tiles.y, {"units": "m", "axis": "Y"}),
              "x": ("x", tiles.x, {"units": "m", "axis": "X"})}
    ds = xr.Dataset({"spatial_ref": spatial_ref(tiles.crs, tiles.transform)}, coords=coords)
    ds.attrs = {"crs": tiles.crs.to_wkt(), "transform": list(tiles.transform.to_gdal()),
                "tile": tiles.tile, "year": tiles.year, "origin_days": tiles.origin,
                "span_start": str(np.datetime_as_string(tiles.start, "D")),
                "span_end": str(np.datetime_as_string(tiles.end, "D")), **attrs}
    return ds


def state_specs(latent_dim: int, dim: int, chunk: tuple[int, int]) -> dict[str, VarSpec]:
    """The streamed variables of a state file, chunked like the windows."""
    sizes = {"ref_day": 1, "latent": latent_dim, "state": dim, "state2": dim}
    return {name: VarSpec((*dims, "y", "x"), dtype,
                           (*(sizes[d] for d in dims), *chunk),
                           {"grid_mapping": "spatial_ref"})
            for name, (dims, dtype) in STATE_VARS.items()}


def state_arrays(state: StreamState) -> dict[str, np.ndarray]:
    """The state of P pixels as arrays with the pixel axis last."""
    out = {}
    for name in STATE_VARS:
        a = getattr(state, name).detach().cpu().numpy()
        a = a.astype(np.uint8) if name == "past" else a
        out[name] = np.moveaxis(a, 0, -1)
    return out


def read_state(ds: xr.Dataset, rows: slice, cols: slice, device: torch.device) -> StreamState:
    """The state of a window's pixels (row-major) from an open state file."""
    parts = {}
    for name in STATE_VARS:
        a = ds[name].isel(y=rows, x=cols).values
        a = a.reshape(*a.shape[:-2], -1)
        a = np.moveaxis(a, -1, 0)
        t = torch.from_numpy(np.ascontiguousarray(a))
        parts[name] = t.bool() if name == "past" else t.double()
    return StreamState(**{k: v.to(device) for k, v in parts.items()})


def _put(variables: dict, arrays: dict[str, np.ndarray], rows: slice, cols: slice) -> None:
    hh, ww = rows.stop - rows.start, cols.stop - cols.start
    for name, values in arrays.items():
        variables[name][..., rows, cols] = values.reshape(*values.shape[:-1], hh, ww)


def _windows(h: int, w: int, chunk: int) -> list[tuple[slice, slice]]:
    return [(slice(r, min(r + chunk, h)), slice(c, min(c + chunk, w)))
            for r in range(0, h, chunk) for c in range(0, w, chunk)]


def _region_code(meta: dict, name: str) -> int:
    summary = meta.get("data_summary")
    return -1 if summary is None else int(summary.region_codes(np.array([name]))[0])


def tile_state(cubes: dict[str, Path], masks: dict[str, Path], checkpoint: Path,
               out_state: Path, *, ref_days: np.ndarray, year: int | None = None,
               chunk_px: int | str = "auto", device: str = "auto",
               region: str | None = None) -> Path:
    """Write the state file of a tile: every pixel's filter state at its last observed date
    and its latent posterior at ``ref_days`` with their gains (section 7b)."""
    model, meta = load_model(checkpoint, device)
    prior = check_streamable(model, file=checkpoint)
    ref_days = np.asarray(ref_days, dtype=np.float64)
    dev = model_device(model)
    chunk_px, _ = auto_sizes(chunk_px, "auto", dev)
    span = Span(**meta["data_span"]) if meta.get("data_span") else Span()
    start = time.perf_counter()
    with TileInputs(cubes, masks, meta["sensor_bands"], year, span) as tiles:
        dim = prior.state_space().dim
        attrs = {"model": str(meta.get("model_name")), "checkpoint": str(checkpoint),
                 "region": region or tiles.tile}
        chunk = (min(chunk_px, tiles.height), min(chunk_px, tiles.width))
        skeleton = state_skeleton(tiles, ref_days, model.latent_dim, dim, attrs)
        code = _region_code(meta, region or tiles.tile)
        days = {s: src.days for s, src in tiles.sources.items()}
        last = -np.inf
        with stream_netcdf(out_state, skeleton, state_specs(model.latent_dim, dim, chunk)) as v:
            for rows, cols in _windows(tiles.height, tiles.width, chunk_px):
                series = tiles.window(rows, cols)
                p = next(iter(series.values())).shape[0]
                parts = []
                for b0 in range(0, p, STREAM_BATCH):
                    sel = slice(b0, min(b0 + STREAM_BATCH, p))
                    batch = window_batch(meta, series, days, tiles.origin, code, sel)
                    state = empty_state(prior, sel.stop - sel.start, ref_days.size,
                                        device=dev)
                    state, _ = update_pixels(model, prior, batch, state, ref_days)
                    parts.append(state_arrays(state))
                arrays = {k: np.concatenate([a[k] for a in parts], -1) for k in STATE_VARS}
                last = max(last, float(np.nanmax(arrays["t_last"], initial=-np.inf)))
                _put(v, arrays, rows, cols)
            v["t_last"].setncattr("description", "last observed date, days since span_start")
        log.info("tile %s: state of %d px written in %.1f s (last observed day %s)",
                 tiles.tile, tiles.height * tiles.width, time.perf_counter() - start, last)
    return Path(out_state)


def update_tile(state_path: Path, cubes: dict[str, Path], masks: dict[str, Path],
                checkpoint: Path, classifier: Path, out_nc: Path, out_state: Path, *,
                chunk_px: int | str = "auto", device: str = "auto", num_samples: int = 32,
                sensor: str | None = None) -> Path:
    """Update a tile's state with the acquisitions of ``cubes`` (only the new ones: dates of
    a pixel before its last observed date are left out, counted in the log) and write the
    updated tile product ``out_nc`` (section 7, with ``<stem>_cost.json``) and state."""
    out_nc = Path(out_nc)
    model, meta = load_model(checkpoint, device)
    prior = check_streamable(model, file=checkpoint)
    dev = model_device(model)
    chunk_px, _ = auto_sizes(chunk_px, "auto", dev)
    bundle = load_classifier(classifier)
    gapfill = gapfill_target(meta, sensor, file=checkpoint)
    bands = None if gapfill is None else meta["sensor_bands"][gapfill.name]
    if not cubes:
        raise InputError("no cube of new acquisitions", field="update", fix="give new cubes")
    unknown = sorted(set(cubes) - set(meta["sensor_bands"]))
    if unknown:
        raise InputError(f"new cubes of sensors {unknown} the model does not read",
                         file=checkpoint, field="update.sensors",
                         fix=f"use sensors among {list(meta['sensor_bands'])}")
    start = time.perf_counter()
    with xr.open_dataset(state_path, engine="netcdf4") as old:
        if old.attrs.get("model") != str(meta.get("model_name")):
            raise InputError(f"state file of model {old.attrs.get('model')!r}, not "
                             f"{meta.get('model_name')!r}", file=state_path, field="model",
                             fix="compute the state with this model (gpvae tile-state)")
        ref_days = old["ref_day"].values
        check_layout(bundle, ref_days, model.latent_dim, file=classifier)
        year = int(old.attrs["year"])
        span = Span(**meta["data_span"]) if meta.get("data_span") else Span()
        sensor_bands = {s: b for s, b in meta["sensor_bands"].items() if s in cubes}
        with TileInputs(cubes, masks, sensor_bands, year, span) as tiles:
            if (tiles.height, tiles.width) != (old.sizes["y"], old.sizes["x"]):
                raise InputError("new cubes are on another grid than the state",
                                 file=state_path, field="grid",
                                 fix="extract the new acquisitions on the tile's grid")
            if abs(tiles.origin - float(old.attrs["origin_days"])) > 1e-6:
                raise InputError(f"new cubes map the span of {tiles.year}, the state "
                                 f"{old.attrs['year']}", file=state_path, field="year",
                                 fix="update with acquisitions of the state's span")
            dim = old.sizes["state"]
            attrs = {k: old.attrs[k] for k in ("model", "region")}
            attrs["checkpoint"] = str(checkpoint)
            chunk = (min(chunk_px, tiles.height), min(chunk_px, tiles.width))
            code = _region_code(meta, old.attrs["region"])
            days = {s: src.days for s, src in tiles.sources.items()}
            skeleton = state_skeleton(tiles, ref_days, model.latent_dim, dim, attrs)
            class_names = list(bundle["class_names"])
            pattrs = product_attrs(
                meta, model, gapfill, checkpoint, classifier, class_names,
                source=f"gpvae update of {Path(state_path).name} with "
                       f"{meta.get('model_name')} ({Path(checkpoint).name})",
                updated_from=str(state_path))
            packings = product_packings(gapfill, bands)
            pspecs = block_specs(list(PRODUCTS), model.latent_dim, bands, chunk, class_names,
                                 gapfill, packings)
            pattrs["products"] = " ".join(p for p in PRODUCTS if p in pspecs)
            whole = Window(0, 0, tiles.width, tiles.height)
            pskeleton = block_skeleton(tiles, whole, whole, ref_days, np.arange(ref_days.size),
                                       model.latent_dim, bands, pattrs)
            # the updated product is one block of the whole map, gathered like the maps
            block_nc = out_nc.with_name(f"{out_nc.stem}_blocks") / "r0c0.nc"
            late = 0
            with stream_netcdf(out_state, skeleton, state_specs(model.latent_dim, dim, chunk)
                               ) as sv, stream_netcdf(block_nc, pskeleton, pspecs) as pv:
                for rows, cols in _windows(tiles.height, tiles.width, chunk_px):
                    series = tiles.window(rows, cols)
                    state_all = read_state(old, rows, cols, dev)
                    p = state_all.t_last.shape[0]
                    sparts, pparts = [], []
                    for b0 in range(0, p, STREAM_BATCH):
                        sel = slice(b0, min(b0 + STREAM_BATCH, p))
                        batch = window_batch(meta, series, days, tiles.origin, code, sel)
                        state, n_late = update_pixels(model, prior, batch,
                                                      state_all.select(sel), ref_days)
                        late += n_late
                        sparts.append(state_arrays(state))
                        mean_t, var_t = products(prior, state)
                        moments = (mean_t.float(), var_t.float())
                        seen = ~torch.isnan(state.t_last).cpu().numpy()
                        mean = moments[0].cpu().numpy().copy()
                        var = moments[1].cpu().numpy().copy()
                        mean[~seen], var[~seen] = np.nan, np.nan
                        pparts.append(tile_outputs(model, meta, batch.to(dev), moments, mean,
                                                   var, ref_days, bundle["pipeline"],
                                                   None if gapfill is None else gapfill.name,
                                                   num_samples))
                    _put(sv, {k: np.concatenate([a[k] for a in sparts], -1)
                              for k in STATE_VARS}, rows, cols)
                    out = {k: np.concatenate([a[k] for a in pparts], 0) for k in pspecs}
                    out = {k: packings[k].pack(a)[0] if k in packings else a
                           for k, a in out.items()}
                    _put(pv, {k: np.moveaxis(a, 0, -1) for k, a in out.items()}, rows, cols)
                seconds = time.perf_counter() - start
                sv["t_last"].setncattr("description", "last observed date, days since span_start")
            new_dates = sum(int(np.isfinite(d).sum()) for d in days.values())
    if late:
        log.warning("%d observations dated before their pixel's last observed date were left "
                    "out (recompute the state to include late acquisitions)", late)
    pixels = tiles.height * tiles.width
    cost = {"model": str(meta.get("model_name")), "tile": tiles.tile, "year": year,
            "pixels": pixels, "seconds": seconds, "new_dates": new_dates,
            "pixels_per_second": pixels / max(seconds, 1e-9), **peak_memory_mib(dev),
            "device": str(dev), "chunk_px": chunk_px, "late_observations": late}
    log.info("tile %s updated with %s: %d px in %.1f s", tiles.tile,
             {s: int(np.size(d)) for s, d in days.items()}, pixels, seconds)
    try:
        with atomic_path(cost_path(block_nc)) as tmp:
            tmp.write_text(json.dumps(cost, indent=2))
        return gather_tile([block_nc], out_nc)  # the netCDF, its GeoTIFFs, the cost JSON
    finally:
        for f in (block_nc, cost_path(block_nc)):
            f.unlink(missing_ok=True)
        if block_nc.parent.is_dir() and not any(block_nc.parent.iterdir()):
            block_nc.parent.rmdir()
