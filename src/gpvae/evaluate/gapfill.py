"""Gap filling of hidden observations (contracts.md section 5) and its tidy metrics.

Every predictor sees the test samples with the entries of ``hidden.nc`` removed and predicts
the hidden sensor's values (mean, std; physical units) at the hidden dates only (the sensor
is the one ``hidden.nc`` names: S2 on the demo, any optical or index sensor otherwise);
predictions are scored against the hidden observed values (protocol ``hidden``) and, when the
pixel dataset has ``truth_<sensor>``, against the noise-free truth at the same entries
(protocol ``truth``). Predictors: a trained model (:func:`gapfill_model`, all its sensors as
input) and the baselines ``linear`` and ``gp`` (:func:`gapfill_baseline`, the hidden sensor
only, see :mod:`gpvae.evaluate.gp_baseline`).

``linear`` has no native uncertainty. Its std is an honest stand-in computed WITHOUT hidden
values: leave-one-out linear interpolation of the remaining observations of the same test
pixels gives squared errors e² together with the span d between the two dates used (twice the
distance for end points, where interpolation is constant); per band, e² ≈ a + b d is fitted by
least squares (a, b >= 0), and a hidden date bracketed by remaining observations d days apart
gets std sqrt(a + b d) (:func:`bracket_span`, :func:`loo_linear`, :func:`span_variance_fit`).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

import gpvae
from gpvae import to_days
from gpvae.data.dataset import sample_origin
from gpvae.data.hiding import hide_series
from gpvae.data.series import compact_series
from gpvae.device import resolve_device
from gpvae.errors import InputError
from gpvae.evaluate.baselines import (
    choose_lambda,
    pixel_offset,
    scene_mean_fill,
    scene_statistics,
    whittaker_fill,
)
from gpvae.evaluate.embed import interp_linear
from gpvae.evaluate.gapfill_metrics import gapfill_scores
from gpvae.evaluate.gp_baseline import fit_band_gp
from gpvae.evaluate.hiding import open_hidden
from gpvae.evaluate.inference import iterate_pixels, observations_at
from gpvae.evaluate.tidy import metric_rows, write_tidy_csv
from gpvae.io.atomic import atomic_path
from gpvae.io.pixels import open_pixels, sensor_definitions
from gpvae.models.build import load_model

log = logging.getLogger(__name__)

BASELINES = ("linear", "gp", "whittaker", "scene_mean", "scene_offset")
#: Training series used to choose the Whittaker lambda (a seeded subset).
WHITTAKER_FIT_SAMPLES = 300
#: Training series read at once for the scene statistics.
SCENE_BLOCK = 4096
#: Samples per block for the baselines.
BLOCK = 256
#: Train samples used to fit the gp baseline's shared hyperparameters.
GP_FIT_SAMPLES = 64
#: Adam steps of the gp baseline's hyperparameter fit.
GP_FIT_STEPS = 40

#: A block of predictions: (rows into the hidden samples, time columns, mean, std (B, Q, C)).
Block = tuple[slice, np.ndarray, np.ndarray, np.ndarray]


# --- linear baseline ----------------------------------------------------------------------
def bracket_span(t: np.ndarray, values: np.ndarray, t_query: np.ndarray) -> np.ndarray:
    """Days between the observations bracketing each query (2 x the distance to the nearest
    end beyond the first/last one): t (N, T), values (N, T, C), t_query (N, Q) -> (N, Q, C),
    NaN where a band has no observation."""
    n, _, c = values.shape
    out = np.full((n, t_query.shape[1], c), np.nan)
    for i in range(n):
        for b in range(c):
            to = t[i, ~np.isnan(values[i, :, b])]
            if to.size == 0:
                continue
            q = t_query[i]
            k = np.clip(np.searchsorted(to, q), 1, max(to.size - 1, 1))
            inner = to[np.minimum(k, to.size - 1)] - to[k - 1]
            out[i, :, b] = np.where(q < to[0], 2 * (to[0] - q),
                                    np.where(q > to[-1], 2 * (q - to[-1]), inner))
    return out


def loo_linear(t: np.ndarray, values: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Leave-one-out linear interpolation errors and spans per band over all series with >= 2
    observations: t (N, T), values (N, T, C) -> per band (errors, spans) 1-D arrays."""
    errors: list[list[np.ndarray]] = [[] for _ in range(values.shape[-1])]
    spans: list[list[np.ndarray]] = [[] for _ in range(values.shape[-1])]
    for i in range(values.shape[0]):
        for b in range(values.shape[-1]):
            ok = ~np.isnan(values[i, :, b])
            to, yo = t[i, ok], values[i, ok, b]
            if to.size < 2:
                continue
            w = (to[1:-1] - to[:-2]) / (to[2:] - to[:-2])
            pred = np.concatenate([yo[1:2], yo[:-2] + w * (yo[2:] - yo[:-2]), yo[-2:-1]])
            span = np.concatenate([2 * (to[1:2] - to[:1]), to[2:] - to[:-2],
                                   2 * (to[-1:] - to[-2:-1])])
            errors[b].append(yo - pred)
            spans[b].append(span)
    cat = [np.concatenate(e) if e else np.zeros(0) for e in errors]
    return cat, [np.concatenate(s) if s else np.zeros(0) for s in spans]


def span_variance_fit(errors: np.ndarray, spans: np.ndarray) -> tuple[float, float]:
    """Least-squares e² ≈ a + b d with a, b >= 0 (b = 0 or a = 0 when the free fit is
    negative); (nan, 0) with no data."""
    if errors.size == 0:
        return float("nan"), 0.0
    e2 = errors ** 2
    if errors.size > 1 and np.ptp(spans) > 0:
        b, a = np.polyfit(spans, e2, 1)
        if b >= 0 and a >= 0:
            return float(a), float(b)
        if b >= 0:  # a < 0: through the origin
            return 0.0, float((spans * e2).sum() / (spans ** 2).sum())
    return float(e2.mean()), 0.0


def _linear_blocks(values: np.ndarray, t: np.ndarray, hide: np.ndarray) -> Iterator[Block]:
    """Linear interpolation of the remaining observations, std from the LOO span fit."""
    remaining = np.where(hide[..., None], np.nan, values)
    fits = [span_variance_fit(e, s) for e, s in zip(*loo_linear(t, remaining), strict=True)]
    a = np.array([f[0] for f in fits])
    b = np.array([f[1] for f in fits])
    log.info("linear baseline std model e² = a + b·span per band: a %s, b %s",
             np.sqrt(a).round(4), b.round(7))
    for r0 in range(0, values.shape[0], BLOCK):
        rows = slice(r0, r0 + BLOCK)
        cols = np.flatnonzero(hide[rows].any(0))
        tq = t[rows][:, cols]
        mean = interp_linear(t[rows], remaining[rows], tq)
        std = np.sqrt(a + b * bracket_span(t[rows], remaining[rows], tq))
        yield rows, cols, mean, std


# --- gp baseline --------------------------------------------------------------------------
def _gp_inputs(values: np.ndarray, days: np.ndarray, origin: np.ndarray, mu: np.ndarray,
               sd: np.ndarray, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Compacted (t, y, m) float64 tensors of per-band standardised values (N, T, C)."""
    sb = compact_series(days, ((values - mu) / sd).astype(np.float32), origin)
    m = sb.m & sb.obs.unsqueeze(-1)
    return (sb.t.to(device, torch.float64), sb.x.to(device, torch.float64), m.to(device))


def _gp_blocks(pixels: Path, sensor: str, values: np.ndarray, days: np.ndarray,
               origin: np.ndarray, hide: np.ndarray, band_pos: np.ndarray,
               device: torch.device) -> Iterator[Block]:
    """Per-pixel exact GP on the remaining observations, hyperparameters shared per band and
    fitted on up to :data:`GP_FIT_SAMPLES` train samples (seed 0)."""
    with open_pixels(pixels) as ds:
        train = np.flatnonzero(ds["split"].values.astype(str) == "train")
        if train.size == 0:
            raise InputError("the gp baseline fits its hyperparameters on the train split, "
                             "which is empty", file=pixels, field="split",
                             fix="check the sampling stage's split fractions")
        if train.size > GP_FIT_SAMPLES:
            train = np.sort(np.random.default_rng(0).choice(train, GP_FIT_SAMPLES,
                                                            replace=False))
        fit_values = ds[f"values_{sensor}"].isel(sample=train).values[..., band_pos]
        fit_origin = sample_origin(ds, train)
    mu = np.nanmean(fit_values, axis=(0, 1))
    sd = np.nanstd(fit_values, axis=(0, 1))
    if not (np.isfinite(mu).all() and np.isfinite(sd).all()):
        raise InputError("a band has no observed value in the train samples of the gp fit",
                         file=pixels, field=f"values_{sensor}", fix="check the sampling stage")
    sd = np.where(sd > 1e-8, sd, 1.0)
    start = time.perf_counter()
    gp = fit_band_gp(*_gp_inputs(fit_values, days, fit_origin, mu, sd, device),
                     steps=GP_FIT_STEPS)
    log.info("gp baseline: hyperparameters fitted on %d train samples in %.1f s", train.size,
             time.perf_counter() - start)
    remaining = np.where(hide[..., None], np.nan, values)
    for r0 in range(0, values.shape[0], BLOCK):
        rows = slice(r0, r0 + BLOCK)
        cols = np.flatnonzero(hide[rows].any(0))
        tq = torch.from_numpy(days[cols][None, :] - origin[rows, None]).to(device)
        with torch.no_grad():
            mean, std = gp.predict(*_gp_inputs(remaining[rows], days, origin[rows], mu, sd,
                                               device), tq)
        yield rows, cols, mean.cpu().numpy() * sd + mu, std.cpu().numpy() * sd


# --- model ----------------------------------------------------------------------------------
def _model_blocks(model: torch.nn.Module, meta: dict, pixels: Path, hidden: xr.DataArray,
                  days: np.ndarray, origin: np.ndarray, batch_size: int) -> Iterator[Block]:
    """The model's predictive of the hidden sensor (physical units) at the hidden dates, hidden
    inputs removed."""
    hide = hidden.values.astype(bool)
    sensor = str(hidden.attrs["sensor"])
    r0 = 0
    for sel, batch in iterate_pixels(pixels, meta, hidden["sample"].values,
                                     batch_size=batch_size, hidden=hidden):
        rows = slice(r0, r0 + sel.size)
        r0 += sel.size
        cols = np.flatnonzero(hide[rows].any(0))
        tq = torch.from_numpy(days[cols][None, :] - origin[rows, None])
        mean, std = observations_at(model, batch, sensor, tq, meta["normalisation"])
        yield rows, cols, mean, std


# --- shared driver --------------------------------------------------------------------------
def _assemble(blocks: Iterator[Block], hide: np.ndarray, num_bands: int, total: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """Place block predictions at the hidden entries; NaN everywhere else."""
    shape = (*hide.shape, num_bands)
    pred_mean, pred_std = np.full(shape, np.nan, np.float32), np.full(shape, np.nan, np.float32)
    with tqdm(total=total, desc="gapfill", unit="px", disable=not sys.stderr.isatty()) as bar:
        for rows, cols, mean, std in blocks:
            keep = hide[rows][:, cols, None]
            sub_m, sub_s = pred_mean[rows], pred_std[rows]
            sub_m[:, cols] = np.where(keep, mean, np.nan)
            sub_s[:, cols] = np.where(keep, std, np.nan)
            bar.update(sub_m.shape[0])
    return pred_mean, pred_std


def score_rows(name: str, observed: np.ndarray, truth: np.ndarray | None,
               pred_mean: np.ndarray, pred_std: np.ndarray, hide: np.ndarray,
               bands: list[str], *, seed: int, split: str = "test") -> list[dict]:
    """Tidy rows: scores per band and ``band = all`` at the hidden observed entries, against
    the observed values (protocol ``hidden``) and the truth (``truth``) when given."""
    scored = hide[..., None] & np.isfinite(observed)
    targets = {"hidden": observed}
    if truth is not None:
        targets["truth"] = truth
    rows: list[dict] = []
    for protocol, target in targets.items():
        y = np.where(scored, target, np.nan)
        keys = {"model": name, "task": "gapfill", "protocol": protocol, "split": split,
                "seed": seed}
        for b, band in enumerate(bands):
            rows += metric_rows(gapfill_scores(y[..., b], pred_mean[..., b], pred_std[..., b]),
                                band=band, **keys)
        rows += metric_rows(gapfill_scores(y, pred_mean, pred_std), band="all", **keys)
    return rows


# --- whittaker and scene baselines -------------------------------------------------------
def _train_series(pixels: Path, sensor: str, band_pos: np.ndarray,
                  max_samples: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values (N, T, C), time origins (N,) and regions (N,) of TRAIN series (all, or a seeded
    subset of ``max_samples``)."""
    with open_pixels(pixels) as ds:
        train = np.flatnonzero(ds["split"].values.astype(str) == "train")
        if train.size == 0:
            raise InputError("this baseline learns from the train split, which is empty",
                             file=pixels, field="split",
                             fix="check the sampling stage's split fractions")
        if max_samples is not None and train.size > max_samples:
            train = np.sort(np.random.default_rng(0).choice(train, max_samples,
                                                            replace=False))
        parts = [ds[f"values_{sensor}"].isel(sample=train[b:b + SCENE_BLOCK]).values[
            ..., band_pos] for b in range(0, train.size, SCENE_BLOCK)]
        regions = (ds["region"].values.astype(str)[train] if "region" in ds.variables
                   else np.full(train.size, ""))
        return np.concatenate(parts), sample_origin(ds, train), regions


def _span_std_fit(errors: np.ndarray, spans: np.ndarray, scored: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per band (a, b) of e² ≈ a + b·span from held-out errors (N, T, C) at ``scored``."""
    fits = [span_variance_fit(errors[..., b][scored[..., b]], spans[..., b][scored[..., b]])
            for b in range(errors.shape[-1])]
    return np.array([f[0] for f in fits]), np.array([f[1] for f in fits])


def _whittaker_blocks(pixels: Path, hidden: xr.DataArray, values: np.ndarray, days: np.ndarray,
                      origin: np.ndarray, band_pos: np.ndarray) -> Iterator[Block]:
    """Whittaker smoother of the remaining observations; lambda and the std model e² = a + b
    span chosen on TRAIN series hidden by the same protocol (seed + 1)."""
    sensor = str(hidden.attrs["sensor"])
    tr_values, tr_origin, _ = _train_series(pixels, sensor, band_pos, WHITTAKER_FIT_SAMPLES)
    t_tr = days[None, :] - tr_origin[:, None]
    observed = ~np.isnan(tr_values).all(-1)
    tr_hide = np.zeros(observed.shape, dtype=bool)
    gap = (float(hidden.attrs["gap_days_min"]), float(hidden.attrs["gap_days_max"]))
    for i in range(observed.shape[0]):
        rng = np.random.default_rng([int(hidden.attrs.get("seed", 0)) + 1, i])
        tr_hide[i] = hide_series(t_tr[i], observed[i], rng,
                                 random_fraction=float(hidden.attrs["random_fraction"]),
                                 gap_days=gap)[0]
    lam, pred = choose_lambda(t_tr, tr_values, tr_hide)
    remaining = np.where(tr_hide[..., None], np.nan, tr_values)
    scored = tr_hide[..., None] & ~np.isnan(tr_values)
    a, b = _span_std_fit(pred - tr_values, bracket_span(t_tr, remaining, t_tr), scored)
    log.info("whittaker baseline: lambda %g chosen on %d train series (leave-out MAE)", lam,
             tr_values.shape[0])
    hide = hidden.values.astype(bool)
    t = days[None, :] - origin[:, None]
    remaining = np.where(hide[..., None], np.nan, values)
    for r0 in range(0, values.shape[0], BLOCK):
        rows = slice(r0, r0 + BLOCK)
        cols = np.flatnonzero(hide[rows].any(0))
        mean = whittaker_fill(t[rows], remaining[rows], hide[rows], lam)[:, cols]
        std = np.sqrt(a + b * bracket_span(t[rows], remaining[rows], t[rows][:, cols]))
        yield rows, cols, mean, std


def _scene_blocks(pixels: Path, hidden: xr.DataArray, values: np.ndarray,
                  band_pos: np.ndarray, offset: bool) -> Iterator[Block]:
    """Per-date mean of the TRAIN series of the same region (``scene_mean``), plus the series'
    mean offset from it over its remaining observations (``scene_offset``). Std: the scene's
    per-date std (scene_mean); the train series' residual std per band (scene_offset)."""
    sensor = str(hidden.attrs["sensor"])
    tr_values, _, tr_regions = _train_series(pixels, sensor, band_pos)
    stats = scene_statistics(tr_values, tr_regions)
    with open_pixels(pixels) as ds:
        regions = (ds["region"].values.astype(str)[hidden["sample"].values]
                   if "region" in ds.variables else np.full(values.shape[0], ""))
    if offset:
        tr_mean, _ = scene_mean_fill(stats, tr_regions)
        resid = tr_values - tr_mean - pixel_offset(tr_values, tr_mean)
        resid_std = np.sqrt(np.nanmean(resid ** 2, axis=(0, 1)))
    hide = hidden.values.astype(bool)
    remaining = np.where(hide[..., None], np.nan, values)
    for r0 in range(0, values.shape[0], BLOCK):
        rows = slice(r0, r0 + BLOCK)
        cols = np.flatnonzero(hide[rows].any(0))
        mean, std = scene_mean_fill(stats, regions[rows])
        if offset:
            mean = mean + pixel_offset(remaining[rows], mean)
            std = np.broadcast_to(resid_std, mean.shape)
        yield rows, cols, mean[:, cols], std[:, cols]


def _run(name: str, pixels: Path, hidden_path: Path, bands: list[str] | None, out_nc: Path,
         out_csv: Path, make_blocks) -> Path:
    """Read the hidden samples, run ``make_blocks(hidden, values, days, origin, band_pos)``,
    write the predictions (netCDF) and the tidy metrics (CSV)."""
    hidden = open_hidden(hidden_path)
    s = str(hidden.attrs["sensor"])
    idx = hidden["sample"].values.astype(np.int64)
    with open_pixels(pixels) as ds:
        if f"values_{s}" not in ds:
            raise InputError(f"gap filling needs {s} values", file=pixels,
                             field=f"values_{s}", fix="use the pixel dataset hidden.nc was "
                             "made from")
        have = [str(b) for b in ds[f"band_{s}"].values]
        bands = have if bands is None else list(bands)
        missing = [b for b in bands if b not in have]
        if missing:
            raise InputError(f"pixel dataset lacks {s} bands {missing}", file=pixels,
                             field=f"band_{s}", fix="use the pixel dataset the model used")
        if hidden.sizes[f"time_{s}"] != ds.sizes[f"time_{s}"] or idx.max(
                initial=-1) >= ds.sizes["sample"]:
            raise InputError("hiding mask does not match the pixel dataset", file=hidden_path,
                             field=f"hidden_{s}", fix="recompute hidden.nc from this dataset")
        band_pos = np.array([have.index(b) for b in bands])
        days = to_days(ds[f"time_{s}"].values)
        origin = sample_origin(ds, idx)
        observed = ds[f"values_{s}"].isel(sample=idx).values[..., band_pos]
        truth = (ds[f"truth_{s}"].isel(sample=idx).values[..., band_pos]
                 if f"truth_{s}" in ds else None)
        time_coord = ds[f"time_{s}"].values
        units = sensor_definitions(ds, file=pixels)[s].band(bands[0]).unit
    hide = hidden.values.astype(bool)
    if (hide & np.isnan(observed).all(-1)).any():
        raise InputError("hiding mask hides dates with no observation", file=hidden_path,
                         field=f"hidden_{s}", fix="recompute hidden.nc from this dataset")
    start = time.perf_counter()
    pred_mean, pred_std = _assemble(make_blocks(hidden, observed, days, origin, band_pos),
                                    hide, len(bands), idx.size)
    seconds = time.perf_counter() - start
    log.info("gapfill %s: %d samples, %d hidden dates in %.1f s (%.0f samples/s)", name,
             idx.size, int(hide.sum()), seconds, idx.size / max(seconds, 1e-9))
    seed = int(hidden.attrs.get("seed", 0))
    rows = score_rows(name, observed, truth, pred_mean, pred_std, hide, bands, seed=seed,
                      split=str(hidden.attrs.get("split", "test")))
    dims = ("sample", f"time_{s}", f"band_{s}")
    out = xr.Dataset({"pred_mean": (dims, pred_mean, {"units": units}),
                      "pred_std": (dims, pred_std, {"units": units})},
                     coords={"sample": idx, f"time_{s}": time_coord, f"band_{s}": bands},
                     attrs={"model": name, "sensor": s, "hidden": str(hidden_path),
                            "seed": seed, "gpvae_version": gpvae.__version__})
    encoding = {k: {"zlib": True, "complevel": 4} for k in ("pred_mean", "pred_std")}
    with atomic_path(out_nc) as tmp:
        out.to_netcdf(tmp, engine="netcdf4", encoding=encoding)
    write_tidy_csv(rows, out_csv)
    return Path(out_nc)


def gapfill_model(pixels: Path, hidden: Path, checkpoint: Path, out_nc: Path, out_csv: Path, *,
                  device: str = "auto", batch_size: int = 512) -> Path:
    """Gap-fill the hidden entries with a trained model (inputs: all its sensors minus the
    hidden entries); writes ``{model}.nc`` and the tidy ``gapfill_{model}.csv``."""
    model, meta = load_model(checkpoint, device)
    sensor = str(open_hidden(hidden).attrs["sensor"])
    if sensor not in meta["sensor_bands"]:
        raise InputError(f"model {meta['model_name']} does not model {sensor}, the sensor "
                         "hidden.nc hides", file=checkpoint, field="sensors",
                         fix=f"evaluate gap filling with models of {sensor}, or set "
                         "gapfill.sensor to a sensor the models read")

    def blocks(hidden, observed, days, origin, band_pos):
        return _model_blocks(model, meta, pixels, hidden, days, origin, batch_size)

    return _run(str(meta["model_name"]), pixels, hidden, meta["sensor_bands"][sensor], out_nc,
                out_csv, blocks)


def gapfill_baseline(pixels: Path, hidden: Path, name: str, out_nc: Path, out_csv: Path, *,
                     device: str = "auto") -> Path:
    """Gap-fill with a baseline on the hidden sensor alone: ``linear`` (interpolation,
    LOO-span std), ``gp`` (per-pixel exact GP, shared per-band hyperparameters),
    ``whittaker`` (Whittaker-Eilers smoother, lambda by leave-out on train series),
    ``scene_mean`` (per-date mean of the train series of the region) or ``scene_offset``
    (scene mean plus the series' own offset)."""
    if name not in BASELINES:
        raise InputError(f"unknown gap-filling baseline {name!r}", field="name",
                         fix=f"use one of {', '.join(BASELINES)}")
    dev = resolve_device(device)

    def blocks(hidden, observed, days, origin, band_pos):
        hide = hidden.values.astype(bool)
        if name == "linear":
            return _linear_blocks(observed, days[None, :] - origin[:, None], hide)
        if name == "whittaker":
            return _whittaker_blocks(pixels, hidden, observed, days, origin, band_pos)
        if name in ("scene_mean", "scene_offset"):
            return _scene_blocks(pixels, hidden, observed, band_pos, name == "scene_offset")
        return _gp_blocks(pixels, str(hidden.attrs["sensor"]), observed, days, origin, hide,
                          band_pos, dev)

    return _run(name, pixels, hidden, None, out_nc, out_csv, blocks)
