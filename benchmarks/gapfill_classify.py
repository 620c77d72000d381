"""Classification table of bench_gapfill.py: random forest on frozen features, grouped splits.

Feature sets (all at the same reference dates, the dataset config's ``embed`` settings):
the GP-VAE embeddings (``gpvae.evaluate.embed.embed_pixels`` of a trained model), the raw
bands linearly gap-filled (``embed_raw_linear``, the pipeline's ``raw_linear`` reference),
the raw bands gap-filled by each GP-VAE (its predictive mean at the reference dates:
``<model>_decoded``) and the raw bands gap-filled by the Whittaker smoother
(``gpvae.evaluate.baselines``: lambda chosen by leave-out on train series with the
gap-filling protocol, as the ``whittaker`` gap-filling baseline does), the last two written
in the raw_linear file's layout. Every set goes through the pipeline's
``gpvae.evaluate.downstream.classify`` (rf, protocols parcel + labels at 1 %, 10 %, 100 % of
the training labels, seeds 0, 1, 2).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from gpvae import to_days
from gpvae.data.dataset import dataset_info, sample_origin
from gpvae.data.hiding import hide_series
from gpvae.evaluate.baselines import choose_lambda, whittaker_series
from gpvae.evaluate.embed import raw_sensor, reference_days
from gpvae.io.atomic import atomic_path
from gpvae.io.pixels import open_pixels

log = logging.getLogger(__name__)

SEEDS = (0, 1, 2)
FRACTIONS = (0.01, 0.1, 1.0)
#: Train series used to choose the Whittaker lambda (as the gap-filling baseline).
LAMBDA_SAMPLES = 300


def ref_days_of(spec: dict) -> np.ndarray:
    """The dataset's reference dates (its config's embed settings, schema defaults else)."""
    from gpvae.config import defaults

    e = {**defaults("#/properties/embed"), **(spec.get("embed") or {})}
    return reference_days(e["ref_start_day"], e["ref_end_day"], e["ref_step_days"],
                          dataset_info(spec["pixels"]).time_range)


def whittaker_lambda(pixels: Path, sensor: str, gap: dict) -> float:
    """Lambda chosen by leave-out on up to LAMBDA_SAMPLES train series (gap-filling protocol,
    seed + 1 as the whittaker baseline)."""
    with open_pixels(pixels) as ds:
        train = np.flatnonzero(ds["split"].values.astype(str) == "train")
        if train.size > LAMBDA_SAMPLES:
            train = np.sort(np.random.default_rng(0).choice(train, LAMBDA_SAMPLES,
                                                            replace=False))
        values = ds[f"values_{sensor}"].isel(sample=train).values.astype(np.float64)
        days = to_days(ds[f"time_{sensor}"].values)
        origin = sample_origin(ds, train)
    t = days[None, :] - origin[:, None]
    observed = ~np.isnan(values).all(-1)
    hide = np.zeros(observed.shape, dtype=bool)
    for i in range(observed.shape[0]):
        rng = np.random.default_rng([int(gap["seed"]) + 1, i])
        hide[i] = hide_series(t[i], observed[i], rng, random_fraction=gap["random_fraction"],
                              gap_days=tuple(gap["gap_days"]))[0]
    return choose_lambda(t, values, hide)[0]


def embed_whittaker(pixels: Path, raw_linear_nc: Path, out: Path, lam: float) -> Path:
    """The raw_linear embedding file with its features replaced by the Whittaker smoother of
    each series at the reference dates (linear / constant outside the observed range)."""
    with xr.open_dataset(raw_linear_nc, engine="netcdf4") as emb:
        emb = emb.load()
    sensor = str(emb.attrs["sensor"])
    ref = emb["ref_day"].values.astype(np.float64)
    with open_pixels(pixels) as ds:
        days = to_days(ds[f"time_{sensor}"].values)
        origin = sample_origin(ds)
        values = ds[f"values_{sensor}"].values.astype(np.float64)
    mean = np.full(emb["mean"].shape, np.nan, np.float32)
    for i in range(values.shape[0]):
        t = days - origin[i]
        obs = ~np.isnan(values[i]).all(-1)
        if not obs.any():
            continue
        extra = ref[~np.isin(ref, t[obs])]
        t_all = np.concatenate([t[obs], extra])
        order = np.argsort(t_all, kind="stable")
        t_all = t_all[order]
        y_all = np.concatenate([values[i, obs], np.full((extra.size, values.shape[-1]),
                                                        np.nan)])[order]
        query = np.isin(t_all, ref)
        pos = np.searchsorted(t_all, ref)
        for b in range(values.shape[-1]):
            mean[i, :, b] = whittaker_series(t_all, y_all[:, b], query, lam)[pos]
    emb["mean"] = (emb["mean"].dims, mean)
    emb.attrs.update(model="whittaker", method=f"{sensor} bands smoothed by the Whittaker "
                     f"smoother (lambda {lam:g}, leave-out on train series) at the reference "
                     "dates; linear / constant outside the observed range")
    with atomic_path(out) as tmp:
        emb.to_netcdf(tmp, engine="netcdf4")
    return Path(out)


def embed_decoded(pixels: Path, checkpoint: Path, raw_linear_nc: Path, out: Path) -> Path:
    """The raw_linear embedding file with its features replaced by the GP-VAE's gap-filled
    bands: the predictive mean of the raw sensor at the reference dates
    (``gpvae.evaluate.inference.observations_at``, what the tile maps write)."""
    from gpvae.evaluate.inference import iterate_pixels, observations_at
    from gpvae.models.build import load_model

    with xr.open_dataset(raw_linear_nc, engine="netcdf4") as emb:
        emb = emb.load()
    sensor = str(emb.attrs["sensor"])
    ref = emb["ref_day"].values.astype(np.float64)
    model, meta = load_model(checkpoint, "cpu")
    mean = np.full(emb["mean"].shape, np.nan, np.float32)
    idx = np.arange(mean.shape[0])
    for sel, batch in iterate_pixels(pixels, meta, idx):
        t = np.broadcast_to(ref, (sel.size, ref.size))
        mean[sel] = observations_at(model, batch, sensor, t, meta["normalisation"])[0]
    emb["mean"] = (emb["mean"].dims, mean)
    emb.attrs.update(model=f"{meta['model_name']}_decoded", method=f"{sensor} bands "
                     "gap-filled by the GP-VAE (predictive mean) at the reference dates")
    with atomic_path(out) as tmp:
        emb.to_netcdf(tmp, engine="netcdf4")
    return Path(out)


def feature_files(spec: dict, checkpoints: dict[str, Path], work: Path, gap: dict) -> dict:
    """Embedding files per feature set (cached): each GP-VAE checkpoint's latent, raw_linear,
    each GP-VAE's gap-filled bands (``<model>_decoded``), whittaker."""
    from gpvae.evaluate.embed import embed_pixels, embed_raw_linear

    work.mkdir(parents=True, exist_ok=True)
    ref = ref_days_of(spec)
    files = {}
    for name, ckpt in checkpoints.items():
        out = work / f"{name}.nc"
        if not out.exists() or out.stat().st_mtime < Path(ckpt).stat().st_mtime:
            embed_pixels(spec["pixels"], ckpt, out, ref_days=ref, device="cpu")
        files[name] = out
    raw = work / "raw_linear.nc"
    if not raw.exists():
        embed_raw_linear(spec["pixels"], raw, ref_days=ref)
    files["raw_linear"] = raw
    for name, ckpt in checkpoints.items():
        if name.startswith("markov-"):  # ablation variants: their latent only
            continue
        out = work / f"{name}_decoded.nc"
        if not out.exists() or out.stat().st_mtime < Path(ckpt).stat().st_mtime:
            embed_decoded(spec["pixels"], ckpt, raw, out)
        files[f"{name}_decoded"] = out
    wh = work / "whittaker.nc"
    if not wh.exists():
        lam = whittaker_lambda(spec["pixels"], raw_sensor(spec["pixels"]), gap)
        log.info("%s: whittaker features with lambda %g", spec["name"], lam)
        embed_whittaker(spec["pixels"], raw, wh, lam)
    files["whittaker"] = wh
    return files


def macro_f1_table(files: dict[str, Path], work: Path, force: bool = False) -> pd.DataFrame:
    """classify() of every feature set (rf; parcel + labels protocols; 3 seeds); macro-F1
    rows (features, protocol, seed, value)."""
    from gpvae.evaluate.downstream import classify

    frames = []
    for name, path in files.items():
        out_csv = work / f"classify_{name}.csv"
        if force or not out_csv.exists() or out_csv.stat().st_mtime < path.stat().st_mtime:
            classify(path, out_csv, work / f"confusion_{name}.csv", work / f"rf_{name}.joblib",
                     classifiers=("rf",), seeds=SEEDS, protocols=("parcel", "labels"),
                     label_fractions=FRACTIONS)
        df = pd.read_csv(out_csv)
        df = df[(df["metric"] == "macro_f1") & (df["classifier"] == "rf")]
        frames.append(df.assign(features=name)[["features", "protocol", "seed", "value"]])
    return pd.concat(frames, ignore_index=True)
