"""Gap filling, ablation, classification and speed of the GP-VAEs with DEFAULT settings against
the pipeline's baselines, on the demo and real data (issue 15's evidence).

Only the library's public pipeline functions run (what a user gets): the datasets through
sample_pixels / table_to_pixels and make_hidden (gapfill_data.py), models through train_model
with nothing but their type and prior set, gap filling through gapfill_model /
gapfill_baseline, features through embed_pixels / embed_raw_linear and classification
through classify (gapfill_methods.py, gapfill_classify.py). Every (dataset, method) result is
cached as JSON under --out (a rerun prints the tables from the cache; --force reruns).

    # from the repository root, venv with the bench extra (pip install -e ".[bench]")
    snakemake --cores all results/samples/pixels.nc          # the demo's pixel dataset
    OMP_NUM_THREADS=1 python benchmarks/bench_gapfill.py                  # everything
    OMP_NUM_THREADS=1 python benchmarks/bench_gapfill.py --datasets sits \\
        --methods main --steps 100                                        # a quick check
    OMP_NUM_THREADS=1 python benchmarks/bench_gapfill.py --tables gapfill --print-only

Method groups of --methods: ``main`` (every GP-VAE prior + the five baselines), ``families``
(banded_gpvae, iid_vae, hivae, seq_vae), ``ablation`` (the default markov GP-VAE with one
item of the recipe off: markov:<variant>), or method names (gpvae_markov, linear,
markov:no_hiding, ...). --tables picks what is run and printed: gapfill (main + families),
ablation, classify, peer (PyPOTS GPVAE epoch time beside ours).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gapfill_data import DATASETS, describe, gapfill_defaults, prepare  # noqa: E402
from gapfill_methods import (  # noqa: E402
    ABLATIONS,
    BASELINES,
    MODELS,
    gap_entries,
    method_dir,
    rescore,
    run_method,
    score_prediction,
)

PRIORS = ("gpvae_markov", "gpvae_sparse", "gpvae_exact")
FAMILIES = ("banded_gpvae", "iid_vae", "hivae", "seq_vae")
GROUPS = {"main": PRIORS + BASELINES, "families": FAMILIES,
          "ablation": tuple(f"markov:{k}" for k in ABLATIONS)}
TABLES = ("gapfill", "ablation", "classify", "peer")
#: Datasets of the ablation and the peer comparison by default.
ABLATION_DATASETS = ("sits", "demo", "worldcereal")
PEER_DATASETS = ("demo", "worldcereal")

log = logging.getLogger("bench_gapfill")


def fmt(v, digits: int = 4) -> str:
    """Number cell; n/a for None / NaN."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}f}"


def expand(methods: list[str]) -> list[str]:
    """Method names from names and group names, in order, without repeats."""
    out: list[str] = []
    for m in methods:
        for name in GROUPS.get(m, (m,)):
            if name not in out:
                out.append(name)
    unknown = [m for m in out if m not in MODELS and m not in BASELINES
               and not (m.startswith("markov:") and m.split(":", 1)[1] in ABLATIONS)]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}")
    return out


# --- tables -----------------------------------------------------------------------------------
def gapfill_table(name: str, rows: list[dict], sizes: dict) -> None:
    """The per-dataset gap-filling table (markdown)."""
    ok = [r for r in rows if "error" not in r]
    lin = next((r for r in ok if r["method"] == "linear"), None)
    best = min((r["MAE"] for r in ok), default=math.nan)
    sensors = ", ".join(f"{s} {t} dates x {b} bands" for s, (t, b) in sizes["sensors"].items())
    print(f"\n### {name}\n\ntrain {sizes['train']} / val {sizes['val']} / test {sizes['test']} "
          f"series; {sensors}; {sizes['regions']} region(s); scored: {sizes['hidden_obs']} "
          f"hidden {sizes['hidden_sensor']} observations of {sizes['test_hidden']} test series "
          f"({ok[0]['n']:.0f} values, {ok[0]['gap_n']:.0f} in the long gaps)\n" if ok else "")
    print("| method | MAE | vs linear | RMSE | CRPS | cov. 90 % | width 90 % | gap MAE | "
          "train s | s/epoch | steps (best) | batch |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['method']} | failed: {r['error'].strip().splitlines()[-1][:80]} |"
                  + " |" * 10)
            continue
        rel = (f"{100 * (r['MAE'] / lin['MAE'] - 1):+.1f} %" if lin else "n/a")
        mae = fmt(r["MAE"])
        mae = f"**{mae}**" if r["MAE"] == best else mae
        trained = "train_s" in r
        cells = [r["method"], mae, rel, fmt(r["RMSE"]), fmt(r["CRPS"]), fmt(r["coverage90"], 3),
                 fmt(r["width90"]), fmt(r["gap_MAE"]),
                 fmt(r.get("train_s"), 0) if trained else "-",
                 fmt(r.get("s_per_epoch"), 2) if trained else "-",
                 f"{r['steps_run']} ({r['best_step']})" if trained else "-",
                 str(r.get("batch_size", "-"))]
        print("| " + " | ".join(cells) + " |")
    partial = [f"{r['method']} ({r['n_prob']:.0f} of {r['n']:.0f})" for r in ok
               if r.get("n_prob", r["n"]) < r["n"]]
    if partial:
        print(f"\nCRPS, coverage and width over the entries with a predictive std only: "
              f"{', '.join(partial)}; n/a: none has one. MAE, RMSE and gap MAE: every entry.")


def scales(values: list[float]) -> str:
    """Median [min-max] of learned length scales (days)."""
    if not values:
        return "n/a"
    return f"{np.median(values):.0f} [{min(values):.0f}-{max(values):.0f}]"


def ablation_table(name: str, rows: list[dict]) -> None:
    """The ablation table of one dataset (markdown)."""
    ok = {r["method"].split(":", 1)[1]: r for r in rows if "error" not in r}
    base = ok.get("default")
    steps = {((r.get("model_cfg") or {}).get("train") or {}).get("steps") for r in rows}
    steps.discard(None)
    budget = (f" (reduced budget: train.steps {', '.join(map(str, sorted(steps)))} for every "
              "variant but old_budget)" if steps else "")
    print(f"\n### {name}{budget}\n")
    print("| variant | MAE | vs default | gap MAE | cov. 90 % | active units (of 8) | length "
          "scales, d: median [range] | noise std | steps (best) | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        v = r["method"].split(":", 1)[1]
        if "error" in r:
            print(f"| {v} | failed |" + " |" * 8)
            continue
        rel = f"{100 * (r['MAE'] / base['MAE'] - 1):+.1f} %" if base else "n/a"
        print(f"| {v} | {fmt(r['MAE'])} | {rel} | {fmt(r['gap_MAE'])} | "
              f"{fmt(r['coverage90'], 3)} | {fmt(r['active_units'], 0)} | "
              f"{scales(r['lengthscales'])} | {fmt(r['noise_std_mean'], 3)} | "
              f"{r['steps_run']} ({r['best_step']}) | {fmt(r['train_s'], 0)} |")


def classify_table(name: str, df) -> None:
    """Macro-F1 mean ± std over seeds per feature set and label fraction (markdown)."""
    cols = [("labels_1pct", "1 %"), ("labels_10pct", "10 %"), ("labels_100pct", "100 %")]
    print(f"\n### {name}\n")
    print("| features | " + " | ".join(f"macro-F1, {c} labels" for _, c in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for feat, sub in df.groupby("features", sort=False):
        cells = []
        for proto, _ in cols:
            v = sub[sub["protocol"] == proto]["value"].to_numpy()
            cells.append(f"{v.mean():.3f} ± {v.std():.3f}" if v.size else "n/a")
        print(f"| {feat} | " + " | ".join(cells) + " |")


# --- runs -------------------------------------------------------------------------------------
def run_gapfill(spec: dict, methods: list[tuple[str, int | None]], a: argparse.Namespace,
                scored) -> list[dict]:
    """Run (or read back) each (method, steps override) on one dataset."""
    rows = []
    for m, steps in methods:
        start = time.perf_counter()
        if a.print_only:
            path = method_dir(spec["work"], m, steps) / "result.json"
            if not path.exists():
                continue
            row = rescore({**json.loads(path.read_text()), "method": m,
                           "pred_file": str(path.parent / "gapfill.nc")}, scored)
        else:
            row = run_method(spec, m, steps=steps, device=a.device, force=a.force,
                             scored=scored)
            log.info("%s %s: %s in %.0f s", spec["name"], m,
                     "FAILED" if "error" in row else f"MAE {row['MAE']:.4f}",
                     time.perf_counter() - start)
        rows.append(row)
    return rows


def run_classify(spec: dict, rows: list[dict], a: argparse.Namespace):
    """Macro-F1 rows of the GP-VAE embeddings of the main-table models and of the ablation
    variants run, raw_linear and whittaker."""
    from gapfill_classify import feature_files, macro_f1_table

    ckpts = {r["method"].replace(":", "-"): Path(r["checkpoint"]) for r in rows
             if "error" not in r and r.get("checkpoint") and Path(r["checkpoint"]).exists()
             and (r["method"] in PRIORS or r["method"].startswith("markov:"))
             and r["method"] != "markov:default"}  # the default: gpvae_markov
    work = spec["work"] / ("classify" if a.steps is None else f"classify@{a.steps}steps")
    files = feature_files(spec, ckpts, work, gapfill_defaults())
    return macro_f1_table(files, work, force=a.force)


def run_peer(spec: dict, ours: dict | None, a: argparse.Namespace, scored) -> dict | None:
    """PyPOTS GPVAE (bench_peer's runner, fresh process) on the same pixels / hidden file, our
    default batch size, its defaults otherwise; cached."""
    from bench_peer import run_method as run_spawned

    out = spec["work"] / "pypots_gpvae"
    cache = out / "result.json"
    if cache.exists() and not a.force:
        row = json.loads(cache.read_text())
        return rescore({**row, "pred_file": row["pred"]}, scored)
    if a.print_only or ours is None or "error" in ours:
        return None
    job = {"pixels": str(spec["pixels"]), "hidden": str(spec["hidden"]), "device": a.device,
           "seed": 0, "threads": 1, "verbose": False, "out_dir": str(out),
           "grid": "month" if spec["name"] == "worldcereal" else "days", "grid_days": 5.0,
           "latent": 8, "batch_size": int(ours["batch_size"]), "epochs": a.peer_epochs,
           "patience": 5, "n_sampling": 3, "lr": None}
    start = time.perf_counter()
    row = run_spawned("pypots", job, a.timeout)
    row["wall_s"] = time.perf_counter() - start
    if "error" in row:
        log.error("PyPOTS on %s failed:\n%s", spec["name"], row["error"])
        return row
    row.update(score_prediction(Path(row["pred"]), *scored))
    row["job"] = job
    out.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(row, indent=1, default=float))
    return row


def peer_table(pairs: list[tuple[str, dict, dict]]) -> None:
    print("| dataset | method | batch | epochs run | train s/epoch | s/epoch incl. validation | "
          "PyPOTS ÷ ours (train s/epoch) | MAE | CRPS |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, ours, py in pairs:
        ratio = py["train_s_per_epoch"] / ours["s_per_epoch"] if py and ours else math.nan
        if ours:
            per = (ours["train_pass_s"] + ours["validation_s"]) / ours["epochs_run"]
            print(f"| {name} | ours gpvae_markov (defaults) | {ours['batch_size']} | "
                  f"{ours['epochs_run']:.1f} | {fmt(ours['s_per_epoch'], 2)} | {fmt(per, 2)} | "
                  f"{fmt(ratio, 2)}x | {fmt(ours['MAE'])} | {fmt(ours['CRPS'])} |")
        if py and "error" not in py:
            print(f"| {name} | PyPOTS GPVAE (its defaults) | {py['job']['batch_size']} | "
                  f"{py['epochs_run']} | {fmt(py['train_s_per_epoch'], 2)} | "
                  f"{fmt(py['s_per_epoch'], 2)} | - | {fmt(py['MAE'])} | n/a |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    ap.add_argument("--methods", nargs="+", default=["main", "families"],
                    help="method or group names for the gapfill table (default: main "
                         "families)")
    ap.add_argument("--tables", nargs="+", default=list(TABLES), choices=TABLES)
    ap.add_argument("--ablation-datasets", nargs="+", default=list(ABLATION_DATASETS))
    ap.add_argument("--steps", type=int, default=None,
                    help="override train.steps (quick runs; cached apart)")
    ap.add_argument("--ablation-steps", nargs="*", default=[], metavar="DATASET=STEPS",
                    help="train.steps of every ablation variant on a dataset (a reduced "
                         "budget where the full one is unaffordable), e.g. demo=1000")
    ap.add_argument("--skip", nargs="*", default=[],
                    help="dataset:method pairs not run (unaffordable), e.g. demo:gpvae_exact")
    ap.add_argument("--peer-epochs", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=7200, help="PyPOTS run, seconds")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/out/gapfill")
    ap.add_argument("--demo-pixels", default="results/samples/pixels.nc")
    ap.add_argument("--force", action="store_true", help="rerun cached results")
    ap.add_argument("--print-only", action="store_true", help="print cached results only")
    a = ap.parse_args()
    os.chdir(ROOT)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: "
                        "%(message)s")
    for noisy in ("gpvae.data", "gpvae.models.build", "pyogrio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import torch

    torch.set_num_threads(a.threads)
    started = time.perf_counter()
    print(f"# bench_gapfill ({dt.datetime.now():%Y-%m-%d %H:%M})\n")
    print(f"{platform.platform()} | {platform.processor() or platform.machine()} | "
          f"os.cpu_count() {os.cpu_count()} | torch {torch.__version__}, {a.threads} thread(s)"
          f" | device {a.device} | python {platform.python_version()}")
    print("command: " + " ".join(shlex.quote(x) for x in [sys.executable, *sys.argv]))
    methods = expand(a.methods)
    skip = set(a.skip)
    ablation_steps = {k: int(v) for k, v in (x.split("=") for x in a.ablation_steps)}
    results: dict[str, dict] = {}
    for name in a.datasets:
        spec = prepare(name, Path(a.out), Path(a.demo_pixels))
        scored = gap_entries(spec["pixels"], spec["hidden"])
        wanted = []
        if "gapfill" in a.tables or "classify" in a.tables or "peer" in a.tables:
            main_methods = methods if "gapfill" in a.tables else list(PRIORS)
            wanted += [(m, a.steps) for m in main_methods]
        if "ablation" in a.tables and name in a.ablation_datasets:
            steps = ablation_steps.get(name, a.steps)
            wanted += [(m, steps) for m in GROUPS["ablation"] if (m, steps) not in wanted]
        wanted = [(m, s) for m, s in wanted if f"{name}:{m}" not in skip]
        rows = run_gapfill(spec, wanted, a, scored)
        results[name] = {"spec": spec, "sizes": describe(spec), "rows": rows}
        if "classify" in a.tables and spec["labelled"]:
            results[name]["classify"] = run_classify(spec, rows, a)
        if "peer" in a.tables and name in PEER_DATASETS:
            ours = next((r for r in rows if r["method"] == "gpvae_markov"), None)
            results[name]["peer"] = (ours, run_peer(spec, ours, a, scored))

    if "gapfill" in a.tables:
        print("\n## Gap filling (test split, hidden entries; physical units)")
        for name, res in results.items():
            rows = [r for r in res["rows"] if not r["method"].startswith("markov:")]
            gapfill_table(name, rows, res["sizes"])
    if "ablation" in a.tables:
        print("\n## Ablation (default markov GP-VAE, one item switched off)")
        for name, res in results.items():
            rows = [r for r in res["rows"] if r["method"].startswith("markov:")]
            if rows:
                ablation_table(name, rows)
    if "classify" in a.tables:
        print("\n## Classification (random forest, macro-F1 mean ± std over seeds 0-2; "
              "grouped split, test part)")
        for name, res in results.items():
            if "classify" in res:
                classify_table(name, res["classify"])
    if "peer" in a.tables:
        print("\n## Training time per epoch: ours (defaults) and PyPOTS GPVAE\n")
        peer_table([(n, *r["peer"]) for n, r in results.items() if "peer" in r])
    print(f"\ntotal wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
