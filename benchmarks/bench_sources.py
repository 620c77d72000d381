"""What each added source buys: S2 gap filling in long gaps and classification, on the demo.

The multi-source example (config/examples/multisource.yaml: the demo scene with Sentinel-2,
Sentinel-1 ASC + DES, Landsat 8/9 Collection 2 Level-2 products and MODIS MOD13Q1 AppEEARS
composites) is run through the pipeline at a small size, with four markov GP-VAEs that differ
only in their sensors: S2; S2 + S1; S2 + S1 + Landsat; S2 + S1 + Landsat + MODIS. All four
see the same pixel dataset (same sample, same split by parcel) and the same seed.

- Gap filling: the pipeline's hiding protocol (gpvae.evaluate.hiding) on the TEST split, with
  no random hiding and one long gap of 60-90 days per series (``random_fraction: 0``,
  ``gap_days: [60, 90]``): every clear S2 date inside the gap is hidden from every model and
  from the linear baseline; MAE (reflectance) at the hidden entries, against the observed
  values (``hidden``) and the simulator's noise-free surface (``truth``), band = all.
- Classification: the pipeline's downstream stage on the frozen embeddings, parcel protocol
  (train/val/test split by parcel in the sample stage), macro-F1 on the test split, mean and
  std over the downstream seeds, per classifier; ``raw_linear`` (raw S2 bands linearly
  gap-filled) is the reference.

    OMP_NUM_THREADS=1 python benchmarks/bench_sources.py        # 2 tiles of 96 px, 300 steps
    OMP_NUM_THREADS=1 python benchmarks/bench_sources.py --size 128 --steps 3000 --years 2022 2023

Outputs under --out (default benchmarks/out/sources/): the Snakemake working folder and the
table (``sources.md``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config" / "examples" / "multisource.yaml"
MODELS = ("s2", "s2_s1", "s2_s1_landsat", "s2_s1_landsat_modis")


def make_config(args: argparse.Namespace) -> dict:
    """The multi-source example at benchmark size, every path inside the working folder."""
    cfg = yaml.safe_load(EXAMPLE.read_text())
    cfg.update(results="results", device="cpu", seed=args.seed, tiles=list(args.tiles))
    cfg["scene"].update(size_px=args.size, years=list(args.years), seed=args.seed)
    cfg["sample"].update(per_class=args.per_class)
    cfg["gapfill"] = {"random_fraction": 0.0, "gap_days": list(args.gap_days), "seed": 0,
                      "baselines": ["linear"]}
    cfg["downstream"] = {"protocols": ["parcel"], "classifiers": list(args.classifiers)}
    cfg["predict"] = {"enabled": False}
    for name in MODELS:
        cfg["models"][name]["train"] = {"steps": args.steps}
    cfg["models"] = {name: cfg["models"][name] for name in MODELS}
    return cfg


def run_pipeline(work: Path, cfg: dict, cores: int) -> float:
    """Run the targets of the tables; returns the wall time (s)."""
    (work / "config").mkdir(parents=True, exist_ok=True)
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    targets = [f"results/metrics/{kind}_{m}.csv" for m in MODELS
               for kind in ("gapfill", "classification")]
    targets += ["results/metrics/gapfill_linear.csv",
                "results/metrics/classification_raw_linear.csv"]
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(work),
           "--cores", str(cores), *targets]  # the Snakefile reads config/config.yaml
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(proc.stdout[-4000:] + proc.stderr[-4000:])
    return time.perf_counter() - start


def gapfill_row(results: Path, name: str) -> dict:
    g = pd.read_csv(results / "metrics" / f"gapfill_{name}.csv")
    g = g[(g.band == "all") & (g.split == "test")]
    row = {}
    for protocol in ("hidden", "truth"):
        sel = g[(g.protocol == protocol)]
        for metric in ("MAE", "RMSE"):
            v = sel[sel.metric == metric].value
            row[f"{metric} {protocol}"] = f"{float(v.iloc[0]):.4f}" if len(v) else "n/a"
    return row


def classification_row(results: Path, name: str, classifiers: list[str]) -> dict:
    c = pd.read_csv(results / "metrics" / f"classification_{name}.csv")
    c = c[(c.metric == "macro_f1") & (c.protocol == "parcel") & (c.split == "test")]
    row = {}
    for clf in classifiers:
        v = c[c.classifier == clf].value
        row[f"macro-F1 {clf}"] = f"{v.mean():.3f} ± {v.std(ddof=0):.3f}"
    return row


def sample_summary(results: Path, gap_days: list[float]) -> str:
    import numpy as np
    import xarray as xr

    with xr.open_dataset(results / "samples" / "pixels.nc") as ds:
        split = ds["split"].values.astype(str)
        parts = ", ".join(f"{s} {int((split == s).sum())}" for s in ("train", "val", "test"))
        dates = {s: ds.sizes[f"time_{s}"] for s in ds.attrs["sensors"].split()}
        parcels = np.unique(ds["parcel_id"].values).size if "parcel_id" in ds else "?"
    with xr.open_dataset(results / "gapfill" / "hidden.nc") as h:
        hidden = int(h[f"hidden_{h.attrs['sensor']}"].values.sum())
        length = float(h["gap_length_days"].values.mean())
    return (f"samples: {parts} ({parcels} parcels); dates per sensor: {dates}; "
            f"{hidden} hidden S2 dates (one gap of {gap_days[0]:g}-{gap_days[1]:g} days per "
            f"test series, mean {length:.0f} days)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=96, help="tile size in 10 m pixels")
    p.add_argument("--tiles", nargs="+", default=["T31TCJ", "T31UDQ"])
    p.add_argument("--years", nargs="+", type=int, default=[2022])
    p.add_argument("--steps", type=int, default=300, help="training steps per model")
    p.add_argument("--per-class", type=int, default=60)
    p.add_argument("--gap-days", nargs=2, type=float, default=[60.0, 90.0])
    p.add_argument("--classifiers", nargs="+", default=["logreg", "rf"])
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--cores", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "sources")
    args = p.parse_args()
    work = args.out.resolve()
    cfg = make_config(args)
    seconds = run_pipeline(work, cfg, args.cores)
    results = work / "results"
    rows = []
    for name, sources in zip(("linear (S2 only)", *MODELS),
                             ("S2", "S2", "S2 + S1", "S2 + S1 + Landsat",
                              "S2 + S1 + Landsat + MODIS"), strict=True):
        key = "linear" if name.startswith("linear") else name
        row = {"model": name, "sources": sources, **gapfill_row(results, key)}
        feats = "raw_linear" if key == "linear" else key
        row.update(classification_row(results, feats, args.classifiers))
        rows.append(row)
    table = pd.DataFrame(rows).to_markdown(index=False)
    notes = (f"\n\n{sample_summary(results, args.gap_days)}\n"
             f"settings: {len(args.tiles)} tile(s) of {args.size} x {args.size} px, years "
             f"{args.years}, {args.steps} training steps per model, seed {args.seed}; "
             f"the linear row's classification is raw_linear (raw S2 bands, linearly "
             f"gap-filled)\nwhole run: {seconds:.0f} s")
    (work / "sources.md").write_text(table + notes + "\n")
    print(table + notes)


if __name__ == "__main__":
    main()
