"""Shared pieces of bench_peer.py: dataset preparation, regular-grid binning and scoring.

Everything here is used by the parent process (which scores every method on the same hidden
entries) and by the method subprocesses (which read the same files).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import xarray as xr

from gpvae import to_days
from gpvae.config import load_config
from gpvae.data.dataset import year_origin
from gpvae.evaluate.gapfill_metrics import gaussian_crps, mae, rmse
from gpvae.evaluate.hiding import make_hidden, open_hidden
from gpvae.io.pixels import open_pixels

#: Days in the longest year: the regular grid covers [0, ceil(366 / step) * step) days.
YEAR_DAYS = 366.0


# --- datasets -------------------------------------------------------------------------------
def restrict_train(pixels: Path, hidden: Path, work: Path, max_train: int, seed: int
                   ) -> tuple[Path, Path]:
    """Copies of ``pixels`` and ``hidden`` keeping only ``max_train`` (seeded random) train
    samples plus every val/test sample; the hidden file's sample indices are renumbered."""
    with open_pixels(pixels) as ds:
        split = ds["split"].values.astype(str)
        train = np.flatnonzero(split == "train")
        if train.size <= max_train:
            return pixels, hidden
        chosen = np.random.default_rng(seed).choice(train, max_train, replace=False)
        keep = np.sort(np.concatenate([chosen, np.flatnonzero(split != "train")]))
        sub = ds.isel(sample=keep).load()
    with xr.open_dataset(hidden, engine="netcdf4") as h:
        hid = h.load()
    old = hid["sample"].values.astype(np.int64)
    new = np.searchsorted(keep, old)
    if not np.array_equal(keep[new], old):
        raise ValueError("hidden samples are not all kept")
    hid = hid.assign_coords(sample=new.astype(np.int64))
    work.mkdir(parents=True, exist_ok=True)
    out_p, out_h = work / f"{Path(pixels).stem}_train{max_train}.nc", work / (
        f"{Path(hidden).stem}_train{max_train}.nc")
    sub.to_netcdf(out_p, engine="netcdf4")
    hid.to_netcdf(out_h, engine="netcdf4")
    return out_p, out_h


def prepare_demo(pixels: Path, hidden: Path, config: Path, work: Path) -> dict:
    """The demo dataset spec: pixels, hidden file (created from the config's gapfill settings
    when absent) and the config whose ``models:`` our models start from."""
    cfg = load_config(config)
    if not pixels.exists():
        raise FileNotFoundError(f"demo pixel dataset {pixels} not found (run the demo first "
                                "or pass --pixels)")
    notes = []
    if not hidden.exists():
        g = cfg["gapfill"]
        hidden = work / "demo_hidden.nc"
        make_hidden(pixels, hidden, random_fraction=g["random_fraction"],
                    gap_days=tuple(g["gap_days"]), seed=g["seed"], max_samples=g["max_samples"])
        notes.append(f"hidden file created from {config} gapfill settings: {hidden}")
    return {"name": "demo", "pixels": Path(pixels), "hidden": Path(hidden), "grid": "days",
            "config": cfg, "notes": notes}


def prepare_worldcereal(table: Path, config: Path, work: Path) -> dict | None:
    """The WorldCereal spec: the table converted with exactly the example config's table and
    sample settings, then hidden with its gapfill settings (None when the table is absent)."""
    from gpvae.preprocess.table import table_to_pixels

    if not table.exists():
        return None
    cfg = load_config(config)
    spec = copy.deepcopy(cfg["inputs"]["table"])
    spec.pop("path")
    sample = cfg["sample"]
    work.mkdir(parents=True, exist_ok=True)
    pixels = work / "worldcereal_pixels.nc"
    table_to_pixels(table, pixels, split_fractions=sample["split"], seed=sample["seed"],
                    classes=sample.get("classes"), span=sample, sensors=cfg["sensors"], **spec)
    g = cfg["gapfill"]
    hidden = make_hidden(pixels, work / "worldcereal_hidden.nc",
                         random_fraction=g["random_fraction"], gap_days=tuple(g["gap_days"]),
                         seed=g["seed"], max_samples=g["max_samples"])
    return {"name": "worldcereal", "pixels": pixels, "hidden": Path(hidden), "grid": "month",
            "config": cfg, "notes": [f"pixels from {table} with {config} (table + sample "
                                     "settings), hidden with its gapfill settings"]}


def dataset_sizes(pixels: Path, hidden: Path) -> dict:
    """Sample counts per split, S2 dates and bands, test samples and hidden observations."""
    with open_pixels(pixels) as ds:
        split = ds["split"].values.astype(str)
        out = {s: int((split == s).sum()) for s in ("train", "val", "test")}
        out.update(dates_S2=int(ds.sizes["time_S2"]), bands_S2=int(ds.sizes["band_S2"]),
                   sensors=str(ds.attrs.get("sensors", "")))
    h = open_hidden(hidden)
    out.update(hidden_samples=int(h.sizes["sample"]), hidden_obs=int(h.values.sum()))
    return out


def eval_arrays(pixels: Path, hidden: Path) -> dict:
    """Observed S2 values (N, T, C) of the hidden samples, the hiding mask (N, T), sample
    indices, dates and years (what every method is scored against)."""
    h = open_hidden(hidden)
    idx = h["sample"].values.astype(np.int64)
    with open_pixels(pixels) as ds:
        observed = ds["values_S2"].isel(sample=idx).values.astype(np.float64)
        times = ds["time_S2"].values
        years = ds["year"].values[idx].astype(np.int64)
        bands = [str(b) for b in ds["band_S2"].values]
    return {"observed": observed, "hide": h.values.astype(bool), "sample": idx,
            "times": times, "years": years, "bands": bands}


# --- regular grid ---------------------------------------------------------------------------
def grid_bins(times: np.ndarray, years: np.ndarray, grid: str, step_days: float
              ) -> tuple[np.ndarray, int]:
    """Bin (N, T) int64 of each date on each sample's regular grid over its year (-1 outside)
    and the number of steps: ``days`` = floor(days since Jan 1 / step) with ceil(366 / step)
    steps; ``month`` = calendar month of the sample's year (12 steps)."""
    years = np.asarray(years, dtype=np.int64)
    if grid == "month":
        months = np.asarray(times).astype("datetime64[M]").astype(np.int64)  # since 1970-01
        bins = months[None, :] - (years[:, None] - 1970) * 12
        steps = 12
    else:
        steps = math.ceil(YEAR_DAYS / step_days)
        days = to_days(np.asarray(times))[None, :] - year_origin(years)[:, None]
        bins = np.floor(days / step_days).astype(np.int64)
    return np.where((bins >= 0) & (bins < steps), bins, -1), steps


def bin_mean(values: np.ndarray, bins: np.ndarray, steps: int) -> np.ndarray:
    """Per-band mean (N, steps, C) of the non-NaN values (N, T, C) falling in each bin; NaN
    where a bin has none."""
    n, _, c = values.shape
    inside = bins >= 0
    flat = (np.arange(n)[:, None] * steps + np.where(inside, bins, 0)).ravel()
    out = np.full((n * steps, c), np.nan)
    for b in range(c):
        ok = (inside & ~np.isnan(values[..., b])).ravel()
        w = np.where(ok, values[..., b].ravel(), 0.0)
        sums = np.bincount(flat, weights=w, minlength=n * steps)
        counts = np.bincount(flat, weights=ok.astype(np.float64), minlength=n * steps)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, b] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return out.reshape(n, steps, c)


def shared_bins(observed: np.ndarray, hide: np.ndarray, bins: np.ndarray, steps: int
                ) -> np.ndarray:
    """(N, T) bool: hidden observations whose bin also holds a visible observation (there a
    grid method reads the visible value: an information leak)."""
    n = hide.shape[0]
    visible = (~np.isnan(observed)).any(-1) & ~hide & (bins >= 0)
    flat = np.arange(n)[:, None] * steps + np.where(bins >= 0, bins, 0)
    has_visible = np.bincount(flat.ravel(), weights=visible.ravel().astype(np.float64),
                              minlength=n * steps) > 0
    return hide & (bins >= 0) & has_visible[flat]


# --- scoring --------------------------------------------------------------------------------
def csv_mae(path: Path) -> float:
    """MAE (protocol hidden, band all) of the gap-filling stage's tidy CSV (cross-check)."""
    import pandas as pd

    df = pd.read_csv(path)
    sel = df[(df["protocol"] == "hidden") & (df["band"].astype(str) == "all")
             & (df["metric"] == "MAE")]
    return float(sel["value"].iloc[0]) if len(sel) else math.nan


def load_predictions(path: Path, sample: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """pred_mean, pred_std (N, T, C) of a method (netCDF from gapfill or npz), checked to be in
    the hidden file's sample order; pred_std None when absent or all NaN."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path) as z:
            got = z["sample"]
            mean = z["pred_mean"].astype(np.float64)
            std = z["pred_std"].astype(np.float64) if "pred_std" in z else None
    else:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            got = ds["sample"].values
            mean = ds["pred_mean"].values.astype(np.float64)
            std = ds["pred_std"].values.astype(np.float64)
    if not np.array_equal(np.asarray(got, dtype=np.int64), sample):
        raise ValueError(f"{path}: samples are not those of the hidden file")
    if std is not None and not np.isfinite(std).any():
        std = None
    return mean, std


def score(observed: np.ndarray, hide: np.ndarray, mean: np.ndarray, std: np.ndarray | None,
          subset: np.ndarray | None = None) -> dict:
    """MAE, RMSE and Gaussian CRPS (NaN without std) over the hidden observed entries
    (optionally only the (N, T) ``subset``), entry count n and entries left unpredicted."""
    sel = hide if subset is None else hide & subset
    scored = sel[..., None] & np.isfinite(observed)
    have = scored & np.isfinite(mean)
    out = {"n": int(scored.sum()), "unpredicted": int(scored.sum() - have.sum())}
    if not have.any():
        return {**out, "MAE": math.nan, "RMSE": math.nan, "CRPS": math.nan}
    y, mu = observed[have], mean[have]
    out.update(MAE=mae(y, mu), RMSE=rmse(y, mu), CRPS=math.nan)
    if std is not None:
        sd = std[have]
        if np.isfinite(sd).all() and (sd > 0).all():
            out["CRPS"] = gaussian_crps(y, mu, sd)
    return out
