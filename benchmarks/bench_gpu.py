"""GPU numbers in one command: tile inference px/s per model, and markov / exact at T = 1000.

1. **Embedding + gap filling** of one year of S2 + S1 (ascending and descending) on a
   synthetic ``--size`` x ``--size`` block (2048 px: 4.2 M pixels): every model of the demo
   config (``config/config.yaml``: same type, prior, kernel, sizes; weights untrained, which
   costs the same), through :func:`gpvae.evaluate.tile.predict_pixels` exactly as a
   ``predict_block`` job calls it: normalisation and compaction of each batch on the host,
   latent posterior at 37 reference dates (every 10 days), the S2 predictive mean and std at
   those dates (``--num-samples`` decoded samples), in float32 and with bf16 autocast. The
   series are one synthetic batch (a 5-day S2 revisit with ~60 % clouds, S1 every 6 days per
   orbit) reused for every batch of the block, so the host does not generate data while the
   GPU waits; the downstream classifier (a CPU random forest) is left out (``null``). Output:
   px/s, peak GPU memory, hours per 10980 x 10980 tile and per 100 tiles.
2. **markov / exact** ELBO forward + backward at ``--T`` dates (32 pixels x 4 latents) with
   the parallel associative scan (benchmarks/bench_priors.py, each in a fresh process).

    python benchmarks/bench_gpu.py                        # on a GPU machine: the full table
    python benchmarks/bench_gpu.py --device cpu --size 32 --T 200 --batch 1024  # CPU check
    python benchmarks/bench_gpu.py --models gpvae_markov --precisions bf16 --json gpu.json

Run from the repository root (``PYTHONPATH=src`` unless the package is installed).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_priors

FULL_TILE_PX = 10980 * 10980
S2_BANDS_N = 10


class NullClassifier:
    """Stands in for the downstream random forest (a CPU step, not timed here)."""

    @staticmethod
    def predict(x: np.ndarray) -> np.ndarray:
        return np.zeros(len(x), dtype=np.int16)


def synthetic_year(n: int, rng: np.random.Generator, bands: dict[str, list[str]]
                   ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], float]:
    """One year of series for ``n`` pixels: physical values (n, T, C) with NaN = missing, the
    dates (days since EPOCH) per sensor, and the span's origin."""
    from gpvae import to_days

    start = np.datetime64("2023-01-01", "ns")
    origin = float(to_days(np.array([start]))[0])
    peak = rng.uniform(120, 240, n)[:, None]
    series, days = {}, {}
    for sensor, step, offset in (("S2", 5, 0), ("S1_ASC", 6, 1), ("S1_DES", 6, 4)):
        t = np.arange(offset, 365, step, dtype=np.float64)
        veg = np.exp(-((t[None, :] - peak) / 45.0) ** 2)  # (n, T)
        if sensor == "S2":
            soil = np.linspace(0.08, 0.28, len(bands[sensor]))
            green = np.linspace(0.03, 0.42, len(bands[sensor]))
            v = soil + veg[..., None] * (green - soil)
            v = v + rng.normal(0, 0.01, v.shape)
            v[rng.random(v.shape[:2]) < 0.6] = np.nan  # clouds
        else:
            db = np.stack([-14 + 5 * veg, -21 + 7 * veg], axis=-1)
            v = 10 ** ((db + rng.normal(0, 0.8, db.shape)) / 10)
        series[sensor] = v.astype(np.float32)
        days[sensor] = origin + t
    return series, days, origin


def normalisation_of(series: dict[str, np.ndarray], registry, bands) -> object:
    """Per-band statistics of the synthetic series (as the training split would give)."""
    from gpvae.data.normalise import (
        Normalisation,
        RunningMoments,
        apply_transform,
        sensor_stats,
    )

    stats = {}
    for s, v in series.items():
        m = RunningMoments.zeros(v.shape[-1])
        m.update(apply_transform(v, registry[s].transform))
        stats[s] = sensor_stats(m, registry[s], bands[s], file="synthetic")
    return Normalisation(stats)


def demo_models(names: list[str] | None) -> dict[str, dict]:
    """Model configs of the demo (config/config.yaml)."""
    import yaml

    models = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["models"]
    return {k: v for k, v in models.items() if not names or k in names}


def time_model(name: str, cfg: dict, *, device: str, size: int, batch: int,
               num_samples: int, precision: str, ref_step: float, seed: int = 0) -> dict:
    """px/s of embedding + gap filling of a size x size block with one model."""
    import torch

    from gpvae.evaluate.tile import predict_pixels
    from gpvae.io.sensors import builtin_sensors
    from gpvae.models.build import build_model

    registry = builtin_sensors()
    bands = {s: registry[s].band_names for s in ("S2", "S1_ASC", "S1_DES")}
    cfg = {**cfg, "sensors": [s for s in cfg.get("sensors") or bands if s in bands]}
    sensor_bands = {s: bands[s] for s in cfg["sensors"]}
    rng = np.random.default_rng(seed)
    series, days, origin = synthetic_year(batch, rng, sensor_bands)
    meta = {"normalisation": normalisation_of(series, registry, sensor_bands)}
    torch.manual_seed(seed)
    model = build_model(cfg, sensor_bands, span=(0.0, 365.0)).to(device).eval()
    ref_days = np.arange(0.0, 365.0, ref_step)
    dev = torch.device(device)
    kw = {"num_samples": num_samples, "gapfill": "S2" if "S2" in sensor_bands else None,
          "mixed_precision": precision == "bf16"}
    predict_pixels(model, meta, series, days, origin, ref_days, NullClassifier(), batch,
                   **kw)  # warm-up (kernels, allocator)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(dev)
    pixels = size * size
    n_batches = -(-pixels // batch)
    used = batch
    t0 = time.perf_counter()
    for _ in range(n_batches):
        _, used = predict_pixels(model, meta, series, days, origin, ref_days, NullClassifier(),
                                 used, **kw)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    done = n_batches * batch
    row = {"model": name, "precision": precision, "device": str(dev), "pixels": done,
           "seconds": seconds, "pixels_per_second": done / seconds, "batch": used,
           "threads": torch.get_num_threads()}
    if dev.type == "cuda":
        row["peak_gpu_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
        row["gpu"] = torch.cuda.get_device_name(dev)
    return row


def scan_ratio(device: str, T: int, repeats: int, timeout: float) -> list[dict]:
    """exact and markov (parallel scan, and the auto choice) at T dates, fresh processes."""
    from bench_priors import measure

    return [measure(p, T, 32, 4, device, repeats, timeout)
            for p in ("exact", "markov:parallel", "markov")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cuda or cpu")
    p.add_argument("--size", type=int, default=2048, help="block side, px")
    p.add_argument("--batch", type=int, default=None,
                   help="pixels per model call (default 65536 on CUDA, 4096 on CPU)")
    p.add_argument("--models", nargs="*", default=None, help="demo model names (default all)")
    p.add_argument("--precisions", nargs="+", default=None, choices=["fp32", "bf16"],
                   help="default fp32 and bf16 on CUDA, fp32 on CPU")
    p.add_argument("--num-samples", type=int, default=32)
    p.add_argument("--ref-step", type=float, default=10.0)
    p.add_argument("--T", type=int, default=1000, help="dates of the markov/exact ratio")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--skip-ratio", action="store_true")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    cuda = device == "cuda"
    batch = a.batch or (65536 if cuda else 4096)
    precisions = a.precisions or (["fp32", "bf16"] if cuda else ["fp32"])
    rows = []
    for name, cfg in demo_models(a.models).items():
        for prec in precisions:
            try:
                r = time_model(name, cfg, device=device, size=a.size, batch=batch,
                               num_samples=a.num_samples, precision=prec, ref_step=a.ref_step)
            except Exception as err:  # report and go on (e.g. out of memory at batch 1)
                r = {"model": name, "precision": prec, "error": repr(err)[:120]}
            rows.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
    where = rows[0].get("gpu") or platform.processor() or platform.machine()
    print(f"\n{time.strftime('%Y-%m-%d %H:%M')}, {device} ({where}), torch {torch.__version__}; "
          f"block {a.size} x {a.size} px, batch {batch}, 37 reference dates, S2 + S1 ASC + "
          f"DES one year, {a.num_samples} decoded samples\n")
    print("| model | precision | px/s | peak GPU MiB | one 10980² tile (h) | 100 tiles (h) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | {r['precision']} | failed: {r['error']} | | | |")
            continue
        hours = FULL_TILE_PX / r["pixels_per_second"] / 3600
        gpu = f"{r['peak_gpu_mib']:.0f}" if "peak_gpu_mib" in r else "-"
        print(f"| {r['model']} | {r['precision']} | {r['pixels_per_second']:.0f} | {gpu} | "
              f"{hours:.2f} | {100 * hours:.1f} |")
    ratio = []
    if not a.skip_ratio:
        ratio = scan_ratio(device, a.T, a.repeats, a.timeout)
        by = {r["prior"]: r for r in ratio}
        print(f"\nELBO forward + backward, 32 pixels x 4 latents, T = {a.T}, {device}\n")
        print("| prior | ms | peak MiB |")
        print("|---|---|---|")
        for r in ratio:
            print(f"| {r['prior']} | {r['seconds'] * 1e3:.1f} | {r['peak_mib']:.1f} |")
        for k in ("markov:parallel", "markov"):
            print(f"\nexact / {k}: {by['exact']['seconds'] / by[k]['seconds']:.1f}x", end="")
        print()
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"inference": rows, "ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()
