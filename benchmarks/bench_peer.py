"""Peer benchmark: PyPOTS ``imputation.GPVAE`` (Fortuin et al. 2020, the maintained public
GP-VAE) against our GP-VAE models, on the same data, hiding protocol, seeds and hardware.

Datasets: the demo pixel dataset (``results/samples/pixels.nc`` + ``results/gapfill/
hidden.nc``) and the WorldCereal 2017 table converted with config/examples/worldcereal.yaml.
Every method sees S2 only (S1 is ignored), trains on the ``train`` split, picks its best epoch
on the ``val`` split, and gap-fills the test samples of the hidden file with the hidden S2
values removed; all are scored by the parent process on the same hidden entries (reflectance
units, gpvae.evaluate.gapfill_metrics: MAE, RMSE, Gaussian CRPS where a predictive std
exists). Rows: ``linear`` interpolation (gapfill_baseline), ours (train_model + gapfill_model,
priors markov, sparse and, with --with-exact, exact), and PyPOTS GPVAE on a regular grid (each
sample's year in --grid-days bins, WorldCereal: one bin per calendar month; bin = mean of its
visible observations; per-band train-split standardisation; a hidden date is predicted by its
bin's imputed value), trained with its own ``fit(train_set, val_set)``. Each method runs in a
fresh spawned process, so the peak RSS (VmHWM) is its own; all use the same torch threads
(--threads, default 1) and seeds (torch, numpy, PyPOTS' set_random_seed).

    # from the repository root, venv with pypots==1.5 (pip install -e ".[bench]")
    PYTHONPATH=src /work/venv-bench/bin/python benchmarks/bench_peer.py
    PYTHONPATH=src /work/venv-bench/bin/python benchmarks/bench_peer.py --dataset demo \\
        --epochs 2 --max-train 300                                    # quick check
    PYTHONPATH=src /work/venv-bench/bin/python benchmarks/bench_peer.py --with-exact \\
        --json benchmarks/out/peer/rows.json
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import importlib.metadata
import json
import math
import multiprocessing as mp
import os
import platform
import queue
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from peer_common import (  # noqa: E402
    csv_mae,
    dataset_sizes,
    eval_arrays,
    grid_bins,
    load_predictions,
    prepare_demo,
    prepare_worldcereal,
    restrict_train,
    score,
    shared_bins,
)
from peer_methods import SPREAD_TOL, child  # noqa: E402

PYPOTS = "PyPOTS GPVAE"
#: PyPOTS GPVAE settings we leave at the library's defaults (reported in the notes).
PYPOTS_DEFAULTS = ("kernel cauchy, length_scale 7 steps (fixed), sigma 1, beta 0.2, "
                   "encoder/decoder (64, 64), window_size 3")


def run_method(kind: str, job: dict, timeout: float) -> dict:
    """One method in a fresh spawned process; its row, or a row with ``error``."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=child, args=(kind, job, q))
    p.start()
    deadline = time.monotonic() + timeout
    row = None
    while row is None:
        try:
            row = q.get(timeout=5)
        except queue.Empty:
            if not p.is_alive():
                row = {"error": f"process exited with code {p.exitcode}"}
            elif time.monotonic() > deadline:
                p.terminate()
                row = {"error": f"timeout after {timeout:.0f} s"}
    p.join(30)
    return row


def our_config(cfg: dict, prior: str, a: argparse.Namespace) -> dict:
    """S2-only model entry: the dataset config's GP-VAE with this prior (else its first GP-VAE
    with the prior swapped), latent size, epochs, batch size, seed and patience overridden."""
    gps = [m for m in cfg["models"].values() if m.get("type", "gpvae") == "gpvae"]
    base = next((m for m in gps if m.get("prior") == prior), gps[0] if gps else {})
    out = copy.deepcopy(base)
    out.update(type="gpvae", prior=prior, sensors=["S2"], latent_dim=a.latent)
    out.pop("bands", None)
    out.pop("description", None)
    train = {k: v for k, v in (out.get("train") or {}).items() if k == "lr"}
    train.update(epochs=a.epochs, batch_size=a.batch_size, seed=a.seed, patience=a.patience)
    out["train"] = train
    return out


def fmt(v: float | None, digits: int = 4) -> str:
    """Number cell (n/a for None/NaN)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}f}"


def bench_dataset(spec: dict, a: argparse.Namespace, device: str, threads: int) -> list[dict]:
    """Run and score every method on one dataset; prints its header, table and notes."""
    work = Path(a.work) / spec["name"]
    pixels, hidden = spec["pixels"], spec["hidden"]
    if a.max_train:
        pixels, hidden = restrict_train(pixels, hidden, work, a.max_train, a.seed)
    sizes = dataset_sizes(pixels, hidden)
    ev = eval_arrays(pixels, hidden)
    grid_days = a.grid_days if spec["grid"] == "days" else None
    bins, steps = grid_bins(ev["times"], ev["years"], spec["grid"], a.grid_days)
    leak = shared_bins(ev["observed"], ev["hide"], bins, steps)
    print(f"\n## {spec['name']}\n")
    print(f"pixels {pixels} | hidden {hidden}")
    print(f"samples train {sizes['train']} / val {sizes['val']} / test {sizes['test']}; S2 "
          f"{sizes['dates_S2']} union dates x {sizes['bands_S2']} bands (file sensors: "
          f"{sizes['sensors']}; S1 ignored: every model here is S2-only); scored: "
          f"{sizes['hidden_obs']} hidden observations over {sizes['hidden_samples']} test "
          "samples", flush=True)

    common = {"pixels": str(pixels), "hidden": str(hidden), "device": device, "seed": a.seed,
              "threads": threads, "verbose": a.verbose}
    methods = [("linear", "linear", {})]
    for prior in ["markov", "sparse"] + (["exact"] if a.with_exact else []):
        name = f"ours gpvae_{prior}"
        methods.append((name, "ours", {"name": f"peer_{prior}",
                                       "model_cfg": our_config(spec["config"], prior, a)}))
    methods.append((PYPOTS, "pypots", {"grid": spec["grid"], "grid_days": a.grid_days,
                                       "latent": a.latent, "batch_size": a.batch_size,
                                       "epochs": a.epochs, "patience": a.patience,
                                       "n_sampling": a.n_sampling, "lr": a.pypots_lr}))
    rows = []
    for label, kind, extra in methods:
        job = {**common, **extra, "out_dir": str(work / label.replace(" ", "_"))}
        start = time.perf_counter()
        row = run_method(kind, job, a.timeout)
        row.update(dataset=spec["name"], method=label, wall_s=time.perf_counter() - start)
        if "error" in row:
            print(f"  {label}: FAILED\n{row['error']}", flush=True)
        else:
            mean, std = load_predictions(Path(row["pred"]), ev["sample"])
            row.update(score(ev["observed"], ev["hide"], mean, std))
            clean = score(ev["observed"], ev["hide"], mean, std, subset=~leak)
            row.update(MAE_no_shared_bin=clean["MAE"], n_no_shared_bin=clean["n"])
            print(f"  {label}: done in {row['wall_s']:.0f} s (MAE {row['MAE']:.4f})",
                  flush=True)
            if "csv" in row:  # cross-check against the gapfill stage's own tidy metrics
                row["csv_MAE"] = csv_mae(Path(row["csv"]))
        if "model_cfg" in extra:
            row["model_cfg"] = extra["model_cfg"]
        rows.append(row)
    _print_table(rows)
    _print_notes(spec, rows, sizes, leak, ev, steps, grid_days)
    return rows


def _print_table(rows: list[dict]) -> None:
    """The markdown table with ratios against the PyPOTS row."""
    ref = next((r for r in rows if r["method"] == PYPOTS and "error" not in r), None)
    print("\n| method | epochs run (best) | s/epoch | time to best val (s) | MAE | RMSE | CRPS "
          "| peak RSS (MiB) | PyPOTS s/epoch ÷ ours | MAE ÷ PyPOTS MAE |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['method']} | failed |" + " |" * 8)
            continue
        trained = "epochs_run" in r
        epochs = f"{r['epochs_run']} ({r['best_epoch']})" if trained else "n/a"
        speed = "n/a"
        if ref is not None and r["method"].startswith("ours"):
            speed = f"{ref['s_per_epoch'] / r['s_per_epoch']:.2f}x"
        rel = f"{r['MAE'] / ref['MAE']:.2f}" if ref is not None else "n/a"
        cells = [r["method"], epochs, fmt(r.get("s_per_epoch"), 2),
                 fmt(r.get("time_to_best_s"), 1), fmt(r["MAE"]),
                 fmt(r["RMSE"]), fmt(r["CRPS"]), _rss_cell(r), speed, rel]
        print("| " + " | ".join(cells) + " |")


def _rss_cell(r: dict) -> str:
    """Peak RSS of the method's process, with the peak reached by the end of training."""
    cell = fmt(r.get("peak_rss_mib"), 0)
    if "train_peak_rss_mib" in r:
        cell += f" (fit {r['train_peak_rss_mib']:.0f})"
    return cell


def _print_notes(spec: dict, rows: list[dict], sizes: dict, leak: np.ndarray, ev: dict,
                 steps: int, grid_days: float | None) -> None:
    """How the numbers were obtained, the PyPOTS grid and its shared-bin leak."""
    ok = [r for r in rows if "error" not in r]
    ns = sorted({r["n"] for r in ok})
    miss = {r["method"]: r["unpredicted"] for r in ok if r["unpredicted"]}
    print(f"\nNotes ({spec['name']}):")
    for note in spec["notes"]:
        print(f"- {note}")
    print(f"- scored entries (hidden date x band with an observed value): {ns}"
          + (f"; left unpredicted (scored as missing, excluded): {miss}" if miss else
             "; every method predicted every one"))
    grid = (f"{grid_days:g}-day bins over each sample's year ({steps} steps, days since Jan 1 "
            "of the sample's `year`)" if grid_days else
            f"one step per calendar month of the sample's `year` ({steps} steps; the table's "
            "own monthly composites, each in its month's bin)")
    n_hidden = int(ev["hide"].sum())
    n_leak = int(leak.sum())
    print(f"- PyPOTS grid: {grid}; visible observations averaged per bin, hidden values "
          "removed before binning, per-band standardisation with the train split's binned "
          "mean/std, predictions de-normalised; a hidden date is predicted by its bin.")
    print(f"- shared bins (leak in PyPOTS' favour): {n_leak} of {n_hidden} hidden observations "
          f"({100 * n_leak / max(n_hidden, 1):.1f}%) share a bin with a visible observation; "
          "there PyPOTS returns the visible bin mean.")
    if n_leak:
        parts = [f"{r['method']} {fmt(r['MAE_no_shared_bin'])}" for r in ok]
        print(f"- MAE on the {n_hidden - n_leak} hidden observations without a shared bin "
              f"(n = {ok[0]['n_no_shared_bin'] if ok else 0} entries): " + "; ".join(parts))
    py = next((r for r in ok if r["method"] == PYPOTS), None)
    if py is not None and py["best_epoch"] >= py["epochs_run"] - 1:
        print(f"- PyPOTS' best epoch is {py['best_epoch']} of {py['epochs_run']}: still "
              "improving when the epoch budget ran out (not converged).")
    if py is not None:
        crps = ("CRPS n/a: PyPOTS' impute decodes the posterior mean, so its "
                f"n_sampling_times draws are identical up to round-off (max std "
                f"{py['sampling_spread']:.1e} standardised units)"
                if py["sampling_spread"] <= SPREAD_TOL else
                "CRPS from the std of its n_sampling_times draws")
        print(f"- PyPOTS: {crps}; settings left at its defaults: {PYPOTS_DEFAULTS}; Adam lr "
              f"{py['lr']:g}{' (its default)' if py['lr'] == 1e-3 else ''}; best epoch "
              "= its BaseNNImputer.best_epoch (lowest validation loss = its negative ELBO).")
    ours = next((r for r in ok if r.get("model_cfg")), None)
    if ours is not None:
        c = ours["model_cfg"]
        print(f"- ours: config from {spec['name']}'s config `models:` (kernel {c.get('kernel')}, "
              f"learned lengthscale init {c.get('lengthscale', 30.0)} d, hidden "
              f"{c.get('hidden', 64)}, lr {c['train'].get('lr', 3e-3)}, beta "
              f"{c.get('beta', 1.0)}), sensors [S2]; best epoch by the validation gap-filling "
              "error (metrics.csv gap_mae).")
        late = [r["method"] for r in ok if r.get("model_cfg")
                and r["best_epoch"] >= r["epochs_run"] - 1]
        if late:
            print(f"- best epoch within the last two for {', '.join(late)}: still improving "
                  "when the epoch budget ran out (not converged).")
        checks = [f"{r['method']} {abs(r['MAE'] - r['csv_MAE']):.1e}" for r in ok
                  if "csv_MAE" in r]
        print("- |our MAE - gapfill CSV MAE| (same entries, cross-check): " + ", ".join(checks))
    print("- s/epoch: mean wall time of one epoch (train pass + validation pass); time to best "
          "val: wall time from the start of epoch 1 to the end of the best epoch (ours: "
          "metrics.csv seconds; PyPOTS: its per-epoch log line); peak RSS: VmHWM of the "
          "method's own process (Python + torch + data + prediction; in brackets: by the end "
          "of training).")
    pred = ", ".join(f"{r['method']} {r['predict_s']:.1f}" for r in ok)
    print(f"- prediction wall time (s), not comparable across rows: {pred} (linear / ours: the "
          "gapfill stage end to end, reading pixels.nc and writing netCDF + CSV; PyPOTS: "
          "impute() on in-memory grids, binning excluded)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", choices=["demo", "worldcereal", "both"], default="both")
    ap.add_argument("--pixels", default="results/samples/pixels.nc")
    ap.add_argument("--hidden", default="results/gapfill/hidden.nc")
    ap.add_argument("--table",
                    default="../shared/data/real/worldcereal/"
                            "worldcereal_public_extractions_2017.parquet")
    ap.add_argument("--work", default="benchmarks/out/peer")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--latent", type=int, default=8)
    ap.add_argument("--patience", type=int, default=5,
                    help="early-stopping patience for ours and PyPOTS (0: none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-train", type=int, default=None, help="subsample the train split")
    ap.add_argument("--grid-days", type=float, default=5.0)
    ap.add_argument("--n-sampling", type=int, default=3,
                    help="PyPOTS n_sampling_times used to look for a predictive spread")
    ap.add_argument("--pypots-lr", type=float, default=None,
                    help="PyPOTS Adam learning rate (default: its own, 1e-3)")
    ap.add_argument("--with-exact", action="store_true", help="also the exact prior (slow)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads of every method (default 1: on a shared 2-core "
                         "machine 2 threads made epochs ~4x slower and erratic)")
    ap.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per method")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ap.add_argument("--verbose", action="store_true", help="INFO logs of gpvae and PyPOTS")
    a = ap.parse_args()
    a.patience = min(a.patience, a.epochs)  # PyPOTS asserts patience <= epochs
    os.chdir(ROOT)
    import torch

    threads = a.threads
    device = a.device if a.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    started = time.perf_counter()
    print(f"# GP-VAE peer benchmark: ours vs PyPOTS GPVAE ({dt.datetime.now():%Y-%m-%d %H:%M})")
    print(f"CPU: {platform.platform()} | {platform.processor() or platform.machine()} | "
          f"os.cpu_count() {os.cpu_count()} | torch threads {threads} | device {device}")
    print(f"torch {torch.__version__} | pypots {importlib.metadata.version('pypots')} | "
          f"python {platform.python_version()}")
    print("command: " + " ".join(shlex.quote(x) for x in [sys.executable, *sys.argv]))
    print(f"settings: epochs {a.epochs}, batch size {a.batch_size}, latent {a.latent}, "
          f"patience {a.patience}, seed {a.seed}, max train {a.max_train or 'all'}, "
          f"grid {a.grid_days:g} days (demo)")
    specs = []
    work = Path(a.work)
    if a.dataset in ("demo", "both"):
        specs.append(prepare_demo(Path(a.pixels), Path(a.hidden), ROOT / "config" /
                                  "config.yaml", work / "demo"))
    if a.dataset in ("worldcereal", "both"):
        wc = prepare_worldcereal(Path(a.table), ROOT / "config" / "examples" /
                                 "worldcereal.yaml", work / "worldcereal")
        if wc is None:
            print(f"\n## worldcereal\n\nSKIPPED: table {a.table} not found")
        else:
            specs.append(wc)
    rows = []
    for spec in specs:
        rows += bench_dataset(spec, a, device, threads)
    print(f"\ntotal wall time {time.perf_counter() - started:.0f} s")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1, default=str)


if __name__ == "__main__":
    main()
