"""Embeddings at reference dates (contracts.md section 4): per model and the raw reference.

A model's embedding of a sample is the posterior mean and variance of its latent at the
reference dates ``ref_days`` (days since the sample's time origin, the start of its span:
Jan 1 of its year by default), whatever dates the sample itself has: the GP-VAEs read the GP
posterior there, the baselines their natural equivalent (the ``method`` attribute, from the
model's documentation). The reference feature set ``raw_linear`` is one sensor's bands (the
first optical or index sensor, e.g. S2) linearly interpolated in time at the same dates.
:func:`reference_days` gives the default dates: every ``step`` days over the data's span.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

import gpvae
from gpvae import to_days
from gpvae.data.dataset import dataset_info, sample_origin
from gpvae.errors import InputError
from gpvae.evaluate.inference import has_observation, iterate_pixels, latent_at, latent_method
from gpvae.io.atomic import atomic_path
from gpvae.io.pixels import open_pixels
from gpvae.models.build import load_model

log = logging.getLogger(__name__)

#: Per-sample coordinates copied from the pixel dataset into embedding files.
SAMPLE_COORDS = ("tile", "parcel_id", "label", "split", "region", "year", "start", "x", "y")
#: What ``ref_day`` counts from.
REF_DAY_FRAME = "days since the sample's time origin (coordinate start: the start of its span)"


def reference_days(start: float, end: float | None, step: float,
                   span: tuple[float, float] | None) -> np.ndarray:
    """Reference dates ``start, start + step, ... <= end`` (days from the sample origin);
    ``end`` None = the end of the data's ``span`` (days 0 to the longest sample span).
    Fewer than 2 dates is an InputError."""
    if end is None:
        if span is None:
            raise InputError("ref_end_day null needs the data's span", field="embed.ref_end_day",
                             fix="give ref_end_day, or the pixel dataset / checkpoint")
        end = float(span[1])
    days = np.arange(float(start), float(end) + 1e-9, float(step), dtype=np.float64)
    if days.size < 2:
        raise InputError(f"reference dates {start}..{end} every {step} days give {days.size} "
                         "date(s); embeddings need at least 2", field="embed",
                         fix="widen ref_start_day..ref_end_day or lower ref_step_days")
    return days
#: Samples read at once for the raw reference.
BLOCK = 2048


def interp_linear(t: np.ndarray, values: np.ndarray, t_query: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation in time per sample and band, clamped (constant) beyond
    the first/last observation: t (N, T), values (N, T, C) NaN = missing, t_query (N, Q) ->
    (N, Q, C), NaN where a band has no observation."""
    n, _, c = values.shape
    out = np.full((n, t_query.shape[1], c), np.nan)
    for i in range(n):
        for b in range(c):
            ok = ~np.isnan(values[i, :, b])
            if ok.any():
                out[i, :, b] = np.interp(t_query[i], t[i, ok], values[i, ok, b])
    return out


def sample_coords(ds: xr.Dataset, idx: np.ndarray) -> dict[str, tuple[str, np.ndarray]]:
    """Per-sample coordinates (:data:`SAMPLE_COORDS`) and ``sample`` = dataset indices."""
    coords = {k: ("sample", ds[k].values[idx]) for k in SAMPLE_COORDS if k in ds.variables}
    coords["sample"] = ("sample", np.asarray(idx, dtype=np.int64))
    return coords


def _write(out: Path, data_vars: dict, coords: dict, attrs: dict, ds: xr.Dataset) -> Path:
    """Assemble and write one embeddings file atomically (class names copied along)."""
    if "class_name" in ds:
        data_vars["class_name"] = ("class", ds["class_name"].values.astype(str))
    emb = xr.Dataset(data_vars, coords=coords,
                     attrs={"gpvae_version": gpvae.__version__,
                            "ref_day_frame": REF_DAY_FRAME, **attrs})
    encoding = {k: {"zlib": True, "complevel": 4} for k in ("mean", "var") if k in emb}
    with atomic_path(out) as tmp:
        emb.to_netcdf(tmp, engine="netcdf4", encoding=encoding)
    return Path(out)


def embed_pixels(pixels: Path, checkpoint: Path, out: Path, *, ref_days: np.ndarray,
                 device: str = "auto", batch_size: int = 512) -> Path:
    """Write ``{model}.nc``: latent posterior mean/var at ``ref_days`` for every sample; NaN
    and ``valid`` 0 for samples with no observation at all."""
    ref_days = np.asarray(ref_days, dtype=np.float64)
    model, meta = load_model(checkpoint, device)
    with open_pixels(pixels) as ds:
        idx = np.arange(ds.sizes["sample"])
        coords = sample_coords(ds, idx)
        class_ds = ds[["class_name"]].load() if "class_name" in ds else xr.Dataset()
    num_latent = int(model.latent_dim)
    mean = np.empty((idx.size, ref_days.size, num_latent), dtype=np.float32)
    var = np.empty_like(mean)
    valid = np.zeros(idx.size, dtype=np.uint8)
    start = time.perf_counter()
    for sel, batch in iterate_pixels(pixels, meta, idx, batch_size=batch_size):
        mean[sel], var[sel] = latent_at(model, batch, ref_days)
        valid[sel] = has_observation(batch)
    seconds = time.perf_counter() - start
    log.info("embedded %d samples with %s in %.1f s (%.0f samples/s); %d without observation",
             idx.size, meta["model_name"], seconds, idx.size / max(seconds, 1e-9),
             int((valid == 0).sum()))
    coords.update(ref_day=ref_days, latent=np.arange(num_latent))
    dims = ("sample", "ref_day", "latent")
    return _write(Path(out), {"mean": (dims, mean), "var": (dims, var),
                              "valid": ("sample", valid)}, coords,
                  {"model": meta["model_name"], "method": latent_method(model),
                   "checkpoint": str(checkpoint)}, class_ds)


def raw_sensor(pixels: Path, sensor: str | None = None) -> str:
    """The sensor of the raw_linear reference: ``sensor`` (checked), else the pixel dataset's
    first optical or index sensor."""
    info = dataset_info(pixels)
    chosen = sensor or info.first_of_kind()
    if chosen is None or chosen not in info.sensors:
        raise InputError(f"raw_linear needs an optical or index sensor; the pixel dataset has "
                         f"{info.sensors}", file=pixels, field="embed.raw_sensor",
                         fix=f"set embed.raw_sensor to one of {info.sensors}")
    return chosen


def embed_raw_linear(pixels: Path, out: Path, *, ref_days: np.ndarray,
                     sensor: str | None = None) -> Path:
    """Write ``raw_linear.nc``: one sensor's bands (:func:`raw_sensor`) linearly interpolated
    in time (per band, clamped at the ends) at ``ref_days``; NaN and ``valid`` 0 for samples
    without any observation of that sensor."""
    ref_days = np.asarray(ref_days, dtype=np.float64)
    s = raw_sensor(pixels, sensor)
    with open_pixels(pixels) as ds:
        n = ds.sizes["sample"]
        idx = np.arange(n)
        days = to_days(ds[f"time_{s}"].values)
        origin = sample_origin(ds)
        bands = ds[f"band_{s}"].values.astype(str)
        mean = np.empty((n, ref_days.size, bands.size), dtype=np.float32)
        for b0 in tqdm(range(0, n, BLOCK), desc="raw_linear", unit="block",
                       disable=not sys.stderr.isatty()):
            sel = idx[b0:b0 + BLOCK]
            values = ds[f"values_{s}"].isel(sample=sel).values.astype(np.float64)
            t = days[None, :] - origin[sel, None]
            mean[sel] = interp_linear(t, values, np.broadcast_to(ref_days, (sel.size,
                                                                             ref_days.size)))
        valid = (~np.isnan(mean)).any((1, 2)).astype(np.uint8)
        log.info("raw_linear (%s): %d samples, %d without observation", s, n,
                 int((valid == 0).sum()))
        coords = sample_coords(ds, idx)
        coords.update(ref_day=ref_days, feature=bands)
        return _write(Path(out), {"mean": (("sample", "ref_day", "feature"), mean),
                                  "valid": ("sample", valid)}, coords,
                      {"model": "raw_linear", "sensor": s,
                       "method": f"{s} bands linearly interpolated in time at the reference "
                                 "dates (per band, constant beyond the first/last "
                                 "observation)"}, ds)
