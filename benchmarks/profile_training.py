"""Where a training step spends its time, per model: data loading, forward, backward, update.

Each model of the config (default: the demo's config/config.yaml models) trains on the pixel
dataset for ``--batches`` batches exactly as ``gpvae train`` does (same loader, normalisation,
batch size, ELBO), in a fresh subprocess. Every phase is timed with ``perf_counter`` (CUDA
synchronised), and pyinstrument (``pip install -e ".[bench]"``) samples the same steps: the
functions with the most self time are printed, and an HTML flame view is written per model.

    PYTHONPATH=src python benchmarks/profile_training.py                       # all demo models
    PYTHONPATH=src python benchmarks/profile_training.py --models gpvae_markov --batches 20
    PYTHONPATH=src python benchmarks/profile_training.py --device cuda --out benchmarks/out/prof
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import time
from pathlib import Path

import yaml

PHASES = ("load", "forward", "backward", "update")


def _self_times(frame, acc: dict[str, float]) -> None:
    """Sum pyinstrument self time per function (file:line function) over the frame tree."""
    if frame is None:
        return
    owner = frame.parent if frame.function.startswith("[") and frame.parent else frame
    key = f"{owner.function} ({owner.file_path_short}:{owner.line_no})"
    acc[key] = acc.get(key, 0.0) + frame.total_self_time
    for child in frame.children:
        _self_times(child, acc)


def _run_one(name: str, model_cfg: dict, pixels: str, batches: int, device: str, out: str,
             top: int, queue: mp.Queue) -> None:
    """Subprocess body: time ``batches`` training steps of one model, with pyinstrument."""
    import torch
    from pyinstrument import Profiler

    from gpvae.data.dataset import (
        BlockSampler,
        PixelDataset,
        dataset_sensor_bands,
        make_loader,
        pin_batch,
    )
    from gpvae.device import autocast, resolve_device, seed_everything
    from gpvae.models.build import build_model
    from gpvae.train.loop import train_settings

    settings = train_settings(model_cfg)
    dev = resolve_device(device)
    bands = dataset_sensor_bands(model_cfg, pixels)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    with PixelDataset(pixels, bands, in_memory_mb=settings["in_memory_mb"]) as ds:
        ds.normalisation = ds.compute_normalisation("train")
        seed_everything(settings["seed"])
        model = build_model(model_cfg, bands).to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=settings["lr"])
        sampler = BlockSampler(ds.indices("train"), settings["batch_size"], shuffle=True,
                               seed=settings["seed"])
        loader = make_loader(ds, sampler, num_workers=settings["num_workers"])
        times = dict.fromkeys(PHASES, 0.0)
        profiler = Profiler(interval=0.001)
        steps, warm = 0, 2  # the first steps (file open, allocator warm-up) are not counted
        it = iter(loader)
        while steps < batches + warm:
            if steps == warm:
                profiler.start()
            t0 = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                sampler.set_epoch(steps)
                it = iter(loader)
                batch = next(it)
            if dev.type == "cuda":
                batch = pin_batch(batch)
            batch = batch.to(dev)
            sync()
            t1 = time.perf_counter()
            with autocast(dev, settings["mixed_precision"]):
                loss = -model.elbo(batch, num_samples=settings["num_samples"]).elbo.float().mean()
            sync()
            t2 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            sync()
            t3 = time.perf_counter()
            opt.step()
            sync()
            t4 = time.perf_counter()
            if steps >= warm:
                for k, dt in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                    times[k] += dt
            steps += 1
        profiler.stop()
    session = profiler.last_session
    acc: dict[str, float] = {}
    _self_times(session.root_frame(), acc)
    total = sum(acc.values()) or 1.0
    hot = sorted(acc.items(), key=lambda kv: -kv[1])[:top]
    html = Path(out) / f"{name}.html"
    html.parent.mkdir(parents=True, exist_ok=True)
    html.write_text(profiler.output_html())
    queue.put({"model": name, "batches": batches, "batch_size": settings["batch_size"],
               "device": str(dev), **{f"{k}_s": v / batches for k, v in times.items()},
               "hot": [(k, v / total) for k, v in hot], "html": str(html)})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    ap.add_argument("--pixels", type=Path, default=None,
                    help="pixel dataset (default: <results>/samples/pixels.nc of the config)")
    ap.add_argument("--models", nargs="*", help="model names of the config (default: all)")
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--top", type=int, default=8, help="hot functions listed per model")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/profile"))
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    cfg = yaml.safe_load(a.config.read_text())
    pixels = a.pixels or Path(cfg.get("results", "results")) / "samples" / "pixels.nc"
    if not pixels.is_file():
        raise SystemExit(f"{pixels}: no pixel dataset; run `snakemake --cores all sample` "
                         "first or pass --pixels")
    names = a.models or list(cfg["models"])
    ctx = mp.get_context("spawn")
    rows = []
    for name in names:
        queue = ctx.Queue()
        proc = ctx.Process(target=_run_one, args=(name, cfg["models"][name], str(pixels),
                                                  a.batches, a.device, str(a.out), a.top,
                                                  queue))
        proc.start()
        row = queue.get()
        proc.join()
        rows.append(row)
        print(f"\n{name}: hot spots (share of sampled self time; flame view {row['html']})")
        for fn, share in row["hot"]:
            print(f"  {100 * share:5.1f}%  {fn}")
    print(f"\nSeconds per training step ({a.batches} steps after 2 warm-up steps, batch "
          f"{rows[0]['batch_size']}), {pixels}, device {a.device} "
          f"({platform.processor() or platform.machine()})\n")
    print("| model | load | forward | backward | update | total | load share |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        total = sum(r[f"{k}_s"] for k in PHASES)
        cells = " | ".join(f"{r[f'{k}_s']:.3f}" for k in PHASES)
        print(f"| {r['model']} | {cells} | {total:.3f} | {100 * r['load_s'] / total:.0f}% |")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
