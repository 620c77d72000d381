"""Method runners of bench_peer.py; each runs in its own spawned process (see :func:`child`).

A runner gets a ``job`` dict (paths, seed, threads, device, training settings) and returns a
row: timings, epochs, and the path of its predictions at the hidden entries (scored by the
parent, identically for every method).
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import random
import shutil
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

#: Largest std (standardised units) of PyPOTS' n_sampling_times draws still counted as copies.
SPREAD_TOL = 1e-4


def rss_mib(field: str = "VmHWM:") -> float:
    """A memory field of /proc/self/status in MiB (VmHWM = peak resident set size)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def _seed_all(seed: int, threads: int) -> None:
    """Same torch threads and seeds (python, numpy, torch) in every method's process."""
    import torch

    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --- linear interpolation -------------------------------------------------------------------
def run_linear(job: dict) -> dict:
    """Our linear-interpolation baseline (gapfill_baseline 'linear') on S2."""
    from gpvae.evaluate.gapfill import gapfill_baseline

    out = Path(job["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    gapfill_baseline(job["pixels"], job["hidden"], "linear", out / "linear.nc",
                     out / "linear.csv", device=job["device"])
    return {"predict_s": time.perf_counter() - start, "pred": str(out / "linear.nc"),
            "csv": str(out / "linear.csv")}


# --- ours -----------------------------------------------------------------------------------
def run_ours(job: dict) -> dict:
    """train_model on the train split (best epoch by the validation gap-filling error), then
    gapfill_model."""
    from gpvae.evaluate.gapfill import gapfill_model
    from gpvae.train.loop import train_model

    out = Path(job["out_dir"])
    shutil.rmtree(out, ignore_errors=True)
    name = job["name"]
    start = time.perf_counter()
    best = train_model(job["pixels"], name, job["model_cfg"], out, device=job["device"],
                       resume=False)
    fit_s = time.perf_counter() - start
    train_peak = rss_mib("VmHWM:")
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    train = [r for r in rows if r["split"] == "train"]
    val = [r for r in rows if r["split"] == "val"]
    train_s = np.array([float(r["seconds"]) for r in train])
    epoch_s = train_s + np.array([float(r["seconds"]) for r in val])
    # best.pt is the lowest validation gap-filling error (gap_mae); older logs: highest ELBO
    best_epoch = (int(np.argmin([float(r["gap_mae"]) for r in val])) + 1
                  if val and val[0].get("gap_mae") else
                  int(np.argmax([float(r["elbo"]) for r in val])) + 1)
    start = time.perf_counter()
    gapfill_model(job["pixels"], job["hidden"], best, out / "gapfill.nc", out / "gapfill.csv",
                  device=job["device"])
    return {"epochs_run": len(train), "best_epoch": best_epoch,
            "epoch_s": epoch_s.round(3).tolist(),
            "s_per_epoch": float(epoch_s.mean()), "train_s_per_epoch": float(train_s.mean()),
            "time_to_best_s": float(epoch_s[:best_epoch].sum()), "fit_s": fit_s,
            "train_peak_rss_mib": train_peak,
            "predict_s": time.perf_counter() - start, "pred": str(out / "gapfill.nc"),
            "csv": str(out / "gapfill.csv")}


# --- PyPOTS ---------------------------------------------------------------------------------
class _EpochClock(logging.Handler):
    """Records the time of PyPOTS' per-epoch log line (emitted after the validation pass)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.ends: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.getMessage()).startswith("Epoch "):
            self.ends.append(time.perf_counter())


def grid_inputs(job: dict) -> dict:
    """S2 binned onto each sample's regular grid (hidden values removed first), standardised
    per band with the train split's binned mean/std: arrays for PyPOTS and the bin indices."""
    from peer_common import bin_mean, grid_bins

    from gpvae.evaluate.hiding import open_hidden
    from gpvae.io.pixels import open_pixels

    with open_pixels(job["pixels"]) as ds:
        split = ds["split"].values.astype(str)
        years = ds["year"].values.astype(np.int64)
        times = ds["time_S2"].values
        values = ds["values_S2"].values.astype(np.float64)
    h = open_hidden(job["hidden"])
    test = h["sample"].values.astype(np.int64)
    hide = h.values.astype(bool)
    block = values[test]
    block[hide] = np.nan  # hidden entries never reach the bins
    values[test] = block
    bins, steps = grid_bins(times, years, job["grid"], job["grid_days"])
    grid = bin_mean(values, bins, steps)
    del values
    train, val = np.flatnonzero(split == "train"), np.flatnonzero(split == "val")
    mu = np.nanmean(grid[train], axis=(0, 1))
    sd = np.nanstd(grid[train], axis=(0, 1))
    sd = np.where(sd > 1e-8, sd, 1.0)
    x = ((grid - mu) / sd).astype(np.float32)
    return {"train": x[train], "val": x[val], "test": x[test], "test_bins": bins[test],
            "hide": hide, "sample": test, "mu": mu, "sd": sd, "steps": steps}


def run_pypots(job: dict) -> dict:
    """PyPOTS GPVAE: fit(train_set, val_set) with its own loop (best model by validation
    loss, early stopping), impute the test grids, read each hidden date's bin."""
    # The import prints a banner (and reads sys.stdout.encoding): send it to /dev/null.
    with open(os.devnull, "w", encoding="utf-8") as sink, contextlib.redirect_stdout(sink):
        from pypots.imputation import GPVAE
        from pypots.optim.adam import Adam
        from pypots.utils.logging import logger, logger_creator
        from pypots.utils.random import set_random_seed

    warnings.filterwarnings("ignore", message="Sparse invariant checks")
    logger_creator.stream_handler.setLevel(logging.INFO if job["verbose"] else logging.ERROR)
    data = grid_inputs(job)
    set_random_seed(job["seed"])
    val_calls: list[float] = []

    class TimedGPVAE(GPVAE):
        """GPVAE noting when each validation batch is assembled (train pass ends before)."""

        def _assemble_input_for_validating(self, batch: list) -> dict:
            val_calls.append(time.perf_counter())
            return super()._assemble_input_for_validating(batch)

    model = TimedGPVAE(n_steps=data["steps"], n_features=data["train"].shape[-1],
                       latent_size=job["latent"], batch_size=job["batch_size"],
                       epochs=job["epochs"], patience=job["patience"] or None,
                       device=job["device"], saving_path=None, model_saving_strategy=None,
                       optimizer=Adam(lr=job["lr"]) if job.get("lr") else Adam)
    clock = _EpochClock()
    logger.addHandler(clock)
    fit_start = time.perf_counter()
    model.fit({"X": data["train"]}, {"X": data["val"], "X_ori": data["val"]})
    fit_s = time.perf_counter() - fit_start
    train_peak = rss_mib("VmHWM:")
    logger.removeHandler(clock)
    ends = np.array(clock.ends)
    begins = np.concatenate([[fit_start], ends[:-1]])
    train_s = [min((v for v in val_calls if b < v < e), default=e) - b
               for b, e in zip(begins, ends, strict=True)]
    best_epoch = int(model.best_epoch)

    start = time.perf_counter()
    imputed = np.asarray(model.impute({"X": data["test"]}))
    predict_s = time.perf_counter() - start
    if imputed.ndim == 4:  # (N, n_sampling_times, steps, C)
        imputed = imputed.mean(axis=1)
    draws = np.asarray(model.impute({"X": data["test"]}, n_sampling_times=job["n_sampling"]))
    # Spread of the draws in standardised units; below SPREAD_TOL they are copies up to
    # float round-off (no predictive distribution).
    spread = float(np.nanmax(draws.std(axis=1))) if draws.ndim == 4 else 0.0

    bins, hide = data["test_bins"], data["hide"]
    pick = np.where(bins >= 0, bins, 0)
    rows = np.arange(bins.shape[0])[:, None]
    at = imputed[rows, pick] * data["sd"] + data["mu"]  # (N, T, C) physical units
    ok = (hide & (bins >= 0))[..., None]
    mean = np.where(ok, at, np.nan).astype(np.float32)
    arrays = {"sample": data["sample"], "pred_mean": mean}
    if spread > SPREAD_TOL:
        std = draws.std(axis=1)[rows, pick] * data["sd"]
        arrays["pred_std"] = np.where(ok, std, np.nan).astype(np.float32)
    out = Path(job["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "pypots_gpvae.npz", **arrays)
    epoch_s = np.diff(np.concatenate([[fit_start], ends]))
    return {"epochs_run": int(ends.size), "best_epoch": best_epoch,
            "s_per_epoch": float(epoch_s.mean()) if ends.size else math.nan,
            "train_s_per_epoch": float(np.mean(train_s)) if ends.size else math.nan,
            "time_to_best_s": float(ends[best_epoch - 1] - fit_start),
            "fit_s": fit_s, "train_peak_rss_mib": train_peak, "predict_s": predict_s,
            "pred": str(out / "pypots_gpvae.npz"),
            "epoch_s": epoch_s.round(3).tolist(), "grid_steps": int(data["steps"]),
            "sampling_spread": spread,
            "best_val_loss": float(model.best_loss), "lr": float(model.optimizer.lr)}


RUNNERS = {"linear": run_linear, "ours": run_ours, "pypots": run_pypots}


def child(kind: str, job: dict, queue) -> None:  # noqa: ANN001 (multiprocessing queue)
    """Process entry point: seed, run one method, report its row (+ peak RSS) or the error."""
    try:
        logging.basicConfig(level=logging.INFO if job["verbose"] else logging.WARNING,
                            format="%(asctime)s %(name)s %(levelname)s: %(message)s")
        _seed_all(job["seed"], job["threads"])
        base = rss_mib("VmRSS:")
        row = RUNNERS[kind](job)
        row.update(peak_rss_mib=rss_mib("VmHWM:"), start_rss_mib=base)
        queue.put(row)
    except BaseException:  # report anything to the parent instead of dying silently
        queue.put({"error": traceback.format_exc()})
