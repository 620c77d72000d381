"""Methods of bench_gapfill.py: train (library defaults) + gap-fill + score, one JSON each.

Every model is trained with ``gpvae.train.loop.train_model`` on the dataset's train split
(validation split for early stopping) and gap-fills the hidden test entries with
``gpvae.evaluate.gapfill.gapfill_model``; every baseline runs
``gpvae.evaluate.gapfill.gapfill_baseline``. The scores come from the prediction file the
library wrote (``gpvae.evaluate.gapfill_metrics.gapfill_scores``, the gap-filling stage's own
scoring), plus the MAE over the entries of the contiguous gap only (``gap_start_day`` and
``gap_length_days`` of hidden.nc). A result is cached as ``<work>/<method>/result.json`` with
the model configuration it ran; a rerun with the same configuration reads it back.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import math
import time
import traceback
from pathlib import Path

import numpy as np
import xarray as xr
from peer_common import csv_mae

from gpvae import to_days
from gpvae.data.dataset import sample_origin
from gpvae.evaluate.gapfill_metrics import gapfill_scores
from gpvae.evaluate.hiding import open_hidden
from gpvae.io.pixels import open_pixels

log = logging.getLogger(__name__)

BASELINES = ("linear", "gp", "whittaker", "scene_mean", "scene_offset")
#: Models with DEFAULT settings: only the type (and prior) is given.
MODELS = {
    "gpvae_markov": {"type": "gpvae", "prior": "markov"},
    "gpvae_sparse": {"type": "gpvae", "prior": "sparse"},
    "gpvae_exact": {"type": "gpvae", "prior": "exact"},
    "banded_gpvae": {"type": "banded_gpvae"},
    "iid_vae": {"type": "iid_vae"},
    "hivae": {"type": "hivae"},
    "seq_vae": {"type": "seq_vae"},
}
#: The ablation: the default markov GP-VAE with one item of the recipe switched off / back to
#: the old behaviour (merged into the model's configuration).
ABLATIONS = {
    "default": {},
    "no_hiding": {"train": {"hiding": {"enabled": False}}},
    "no_date_effects": {"date_effects": False},
    "no_seasonal": {"seasonal_harmonics": 0},
    "no_bias": {"bias": 0.0},
    "old_init": {"init_noise_std": 0.5, "init_site_var": 1.0},
    "old_budget": {"train": {"epochs": 30, "batch_size": 128, "validate_every": "auto",
                             "hiding": {"enabled": False}}},
}
ABLATION_BASE = "gpvae_markov"


def merge(base: dict, extra: dict) -> dict:
    """Deep merge of two nested mappings (``extra`` wins)."""
    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def method_config(method: str, steps: int | None) -> dict | None:
    """The model configuration of a method (None for a baseline); ``markov:<ablation>`` names
    an ablation of the default markov GP-VAE. ``steps`` overrides train.steps (quick runs)."""
    if method in BASELINES:
        return None
    if method.startswith("markov:"):
        cfg = merge(MODELS[ABLATION_BASE], ABLATIONS[method.split(":", 1)[1]])
    else:
        cfg = copy.deepcopy(MODELS[method])
    if steps is not None and not (cfg.get("train") or {}).get("epochs"):
        cfg = merge(cfg, {"train": {"steps": int(steps)}})
    return cfg


def method_dir(work: Path, method: str, steps: int | None) -> Path:
    """Cache folder of a (dataset, method) result (the ablation's default variant is the
    default markov GP-VAE: one folder, trained once)."""
    name = ABLATION_BASE if method == "markov:default" else method.replace(":", "-")
    return Path(work) / (name if steps is None else f"{name}@{steps}steps")


# --- scoring ----------------------------------------------------------------------------------
def gap_entries(pixels: Path, hidden: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Observed values (N, T, C) of the hidden test samples, the hidden mask (N, T) and the
    (N, T) mask of hidden dates inside each series' contiguous gap."""
    h = open_hidden(hidden)
    s = str(h.attrs["sensor"])
    idx = h["sample"].values.astype(np.int64)
    with xr.open_dataset(hidden, engine="netcdf4") as hd:
        start = hd["gap_start_day"].values.astype(np.float64)
        length = hd["gap_length_days"].values.astype(np.float64)
    with open_pixels(pixels) as ds:
        observed = ds[f"values_{s}"].isel(sample=idx).values.astype(np.float64)
        days = to_days(ds[f"time_{s}"].values)
        origin = sample_origin(ds, idx)
    hide = h.values.astype(bool)
    t = days[None, :] - origin[:, None]
    in_gap = (t >= start[:, None]) & (t < (start + length)[:, None]) & hide
    return observed, hide, in_gap


def score_prediction(pred_nc: Path, observed: np.ndarray, hide: np.ndarray,
                     in_gap: np.ndarray) -> dict:
    """Scores of one prediction file at the hidden entries: MAE, RMSE and n over every
    predicted hidden entry, CRPS, NLL, coverage90 and width90 over those with a predictive
    std (n_prob of them), gap_MAE and gap_n over the entries of the contiguous gap."""
    if Path(pred_nc).suffix == ".npz":  # PyPOTS (bench_peer's runner): no band names
        with np.load(pred_nc) as z:
            mean = z["pred_mean"].astype(np.float64)
            std = (z["pred_std"].astype(np.float64) if "pred_std" in z
                   else np.full(mean.shape, np.nan))
        bands = []
    else:
        with xr.open_dataset(pred_nc, engine="netcdf4") as ds:
            mean = ds["pred_mean"].values.astype(np.float64)
            std = ds["pred_std"].values.astype(np.float64)
            band_dim = next(d for d in ds.dims if d.startswith("band_"))
            bands = [str(b) for b in ds[band_dim].values]
    if mean.shape[-1] != observed.shape[-1]:
        raise ValueError(f"{pred_nc}: {mean.shape[-1]} bands, observed {observed.shape[-1]}")
    y = np.where(hide[..., None], observed, np.nan)
    yg = np.where(in_gap[..., None], observed, np.nan)
    prob = gapfill_scores(y, mean, std)  # entries with a finite std only
    out = {k: float(prob[k]) for k in ("NLL", "CRPS", "coverage90", "width90")}
    out.update(_point_scores(y, mean), n_prob=float(prob["n"]))
    gap = _point_scores(yg, mean)
    out.update(gap_MAE=gap["MAE"], gap_n=gap["n"], bands=bands)
    out["unpredicted"] = int((np.isfinite(y) & ~np.isfinite(mean)).sum())
    return out


def rescore(row: dict, scored: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict:
    """A cached row with its scores recomputed from its prediction file (when present)."""
    pred = row.get("pred_file")
    if pred and Path(pred).exists():
        return {**row, **score_prediction(Path(pred), *scored)}
    return row


def _point_scores(y: np.ndarray, mean: np.ndarray) -> dict:
    """MAE, RMSE and n where y and mean are finite."""
    keep = np.isfinite(y) & np.isfinite(mean)
    err = (y - mean)[keep]
    if not err.size:
        return {"MAE": math.nan, "RMSE": math.nan, "n": 0.0}
    return {"MAE": float(np.abs(err).mean()), "RMSE": float(np.sqrt((err ** 2).mean())),
            "n": float(keep.sum())}


# --- training logs ----------------------------------------------------------------------------
def training_summary(metrics_csv: Path) -> dict:
    """From metrics.csv: steps and epochs run, best step, training-pass seconds, seconds per
    epoch (training passes only), active units, gap MAE and learned hyperparameters at the
    best validation."""
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    train = [r for r in rows if r["split"] == "train"]
    val = [r for r in rows if r["split"] == "val"]
    num = lambda r, k: float(r[k]) if r.get(k) not in (None, "") else math.nan  # noqa: E731
    best = min(val, key=lambda r: num(r, "gap_mae")) if val and "gap_mae" in val[0] else (
        max(val, key=lambda r: num(r, "elbo")))
    last = train[-1]
    train_s = sum(num(r, "seconds") for r in train)
    val_s = sum(num(r, "seconds") for r in val)
    epochs = num(last, "epoch")
    hyper = {k: num(best, k) for k in best if k.startswith(("matern", "rbf", "rq", "cauchy",
                                                            "periodic", "quasi", "scale",
                                                            "bias", "noise_std_",
                                                            "date_effect_std_"))
             or "lengthscale" in k or "outputscale" in k}
    ls = [v for k, v in hyper.items() if "lengthscale" in k and math.isfinite(v)]
    noise = [v for k, v in hyper.items() if k.startswith("noise_std_") and math.isfinite(v)]
    return {"steps_run": int(num(last, "step")), "epochs_run": epochs,
            "best_step": int(num(best, "step")), "validations": len(val),
            "train_pass_s": train_s, "validation_s": val_s,
            "s_per_epoch": train_s / epochs if epochs else math.nan,
            "active_units": num(best, "active_units"),
            "active_units_last": num(val[-1], "active_units") if val else math.nan,
            "val_gap_mae": num(best, "gap_mae"), "val_elbo": num(best, "elbo"),
            "lengthscales": sorted(ls), "noise_std_mean": float(np.mean(noise)) if noise
            else math.nan, "hyper": hyper}


# --- running ----------------------------------------------------------------------------------
def run_method(spec: dict, method: str, *, steps: int | None, device: str, force: bool,
               scored: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict:
    """Run (or read back) one method on one dataset; returns its result row."""
    from gpvae.evaluate.gapfill import gapfill_baseline, gapfill_model
    from gpvae.train.loop import Budget, train_model, train_settings

    cfg = method_config(method, steps)
    out = method_dir(spec["work"], method, steps)
    cache = out / "result.json"
    if cache.exists() and not force:
        row = json.loads(cache.read_text())
        if row.get("model_cfg") == cfg:
            return rescore({**row, "method": method, "pred_file": str(out / "gapfill.nc")},
                           scored)
        log.info("%s %s: configuration changed, running again", spec["name"], method)
    out.mkdir(parents=True, exist_ok=True)
    pred, table = out / "gapfill.nc", out / "gapfill.csv"
    row: dict = {"dataset": spec["name"], "method": method, "model_cfg": cfg,
                 "pred_file": str(pred)}
    try:
        if cfg is None:
            start = time.perf_counter()
            gapfill_baseline(spec["pixels"], spec["hidden"], method, pred, table,
                             device=device)
            row["predict_s"] = time.perf_counter() - start
        else:
            start = time.perf_counter()
            best = train_model(spec["pixels"], out.name.split("@")[0], cfg, out / "model",
                               device=device, resume=not force)
            row["train_s"] = time.perf_counter() - start
            row.update(training_summary(out / "model" / "metrics.csv"))
            with open_pixels(spec["pixels"]) as ds:
                n_train = int((ds["split"].values.astype(str) == "train").sum())
            budget = Budget.from_settings(train_settings(cfg), n_train)
            row.update(batch_size=budget.batch_size, steps_per_epoch=budget.steps_per_epoch,
                       budget_steps=budget.total_steps, checkpoint=str(Path(best).resolve()))
            start = time.perf_counter()
            gapfill_model(spec["pixels"], spec["hidden"], best, pred, table, device=device)
            row["predict_s"] = time.perf_counter() - start
        row.update(score_prediction(pred, *scored))
        row["csv_MAE"] = csv_mae(table)
    except Exception:  # report and go on with the next method; nothing cached
        row["error"] = traceback.format_exc()
        log.error("%s %s failed:\n%s", spec["name"], method, row["error"])
        return row
    cache.write_text(json.dumps(row, indent=1, default=float))
    return row

