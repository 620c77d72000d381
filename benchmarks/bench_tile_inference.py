"""Tile inference throughput per model: pixels per second, peak memory and bytes written.

Each model runs :func:`gpvae.evaluate.tile.predict_tile` (the block jobs and the mosaic:
embeddings at reference dates, gap-filled S2 with std, class map, packed netCDF + COGs) on
the demo tile in a fresh subprocess, so the peak resident memory (and peak CUDA memory) is
that run's own. The classifier is a random forest on random features of the right layout
(its cost is realistic, its classes are not). The time and the bytes for one full Sentinel-2
tile (10980 x 10980 px, one year of S2 + S1) are extrapolated linearly in pixels, at the
demo's number of dates per year; px/s per core divides by the threads torch used.

    PYTHONPATH=src python benchmarks/bench_tile_inference.py                 # CPU, all models
    PYTHONPATH=src python benchmarks/bench_tile_inference.py --device cuda
    PYTHONPATH=src python benchmarks/bench_tile_inference.py \\
        --checkpoints results/models/gpvae_sparse/best.pt --crop 64 --tile T31TCJ
    PYTHONPATH=src python benchmarks/bench_tile_inference.py --crop 64 --dates 90 180 270 \\
        --num-samples 8                                  # the demo's lighter maps
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import tempfile
from pathlib import Path

import numpy as np

from gpvae.cli import int_or_auto

FULL_TILE_PX = 10980 * 10980


def crop_inputs(cubes: dict[str, Path], masks: dict[str, Path], size: int,
                out: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """Top-left ``size`` x ``size`` crop of each cube and mask (the grid origin is kept)."""
    import xarray as xr

    new_cubes, new_masks = {}, {}
    for kind, files, dest in (("cube", cubes, new_cubes), ("mask", masks, new_masks)):
        for sensor, path in files.items():
            with xr.open_dataset(path, engine="netcdf4") as ds:
                part = ds.isel(y=slice(0, size), x=slice(0, size)).load()
            for var in part.data_vars.values():
                var.encoding = {}
            dest[sensor] = out / f"{kind}_{sensor}.nc"
            part.to_netcdf(dest[sensor], engine="netcdf4")
    return new_cubes, new_masks


def dummy_classifier(path: Path, ref_days: np.ndarray, latent_dim: int, model: str) -> Path:
    """A random forest on random (ref_day, latent) features, saved like the classify stage."""
    from gpvae.evaluate.downstream import EmbeddingTable, make_classifier, save_classifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, ref_days.size * latent_dim))
    y = np.arange(600) % 6
    layout = {"variables": ["mean"], "dims": ["ref_day", "latent"],
              "sizes": [ref_days.size, latent_dim], "ref_day": ref_days.tolist()}
    table = EmbeddingTable(x, y, np.array([]), np.array([]), np.array([]),
                           [f"class_{i}" for i in range(6)], model, layout)
    return save_classifier(path, make_classifier("rf", 0).fit(x, y), table)


def _run_one(checkpoint: str, cubes: dict, masks: dict, args: dict, queue: mp.Queue) -> None:
    """Subprocess body: predict the tile with one model and report its cost JSON."""
    import torch

    from gpvae.evaluate.tile import predict_tile
    from gpvae.io.product import cost_path
    from gpvae.models.build import load_model

    ref_days = np.arange(0.0, 365.0, args["ref_step"])
    try:
        model, meta = load_model(checkpoint, "cpu")
        with tempfile.TemporaryDirectory() as tmp:
            clf = dummy_classifier(Path(tmp) / "rf.joblib", ref_days, model.latent_dim,
                                   str(meta["model_name"]))
            del model
            out = predict_tile(cubes, masks, Path(checkpoint), clf, Path(tmp) / "tile.nc",
                               ref_days=ref_days, year=args["year"],
                               chunk_px=args["chunk_px"], device=args["device"],
                               batch_size=args["batch_size"], dates=args["dates"],
                               num_samples=args["num_samples"], products=args["products"],
                               geotiffs=args["geotiffs"],
                               mixed_precision=args["mixed_precision"])
            cost = json.loads(cost_path(out).read_text())
        cost["threads"] = torch.get_num_threads()
        queue.put(cost)
    except Exception as err:  # report and go on with the next model
        queue.put({"model": Path(checkpoint).parent.name, "error": repr(err)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", nargs="*", type=Path,
                        help="best.pt files (default: results/models/*/best.pt)")
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--tile", default=None, help="tile id (default: the first cube folder)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--chunk-px", type=int_or_auto, default="auto",
                        help="window side, or auto (256 on GPU, 64 on CPU)")
    parser.add_argument("--batch-size", type=int_or_auto, default="auto",
                        help="pixels per model call, or auto (65536 on GPU, 4096 on CPU)")
    parser.add_argument("--ref-step", type=float, default=10.0, help="days between ref dates")
    parser.add_argument("--year", type=int, default=None)
    parser.add_argument("--crop", type=int, default=0, help="use a top-left crop of N x N px")
    parser.add_argument("--dates", type=float, nargs="*", default=None,
                        help="days of the written dates (default: every reference date)")
    parser.add_argument("--num-samples", type=int, default=32)
    parser.add_argument("--products", nargs="*", default=None)
    parser.add_argument("--geotiffs", nargs="*", default=None)
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    checkpoints = args.checkpoints or sorted(args.results.glob("models/*/best.pt"))
    if not checkpoints:
        raise SystemExit("no checkpoint found: train models first or pass --checkpoints")
    tile_dirs = sorted(p for p in (args.results / "cubes").glob("*") if p.is_dir())
    tile_dir = args.results / "cubes" / args.tile if args.tile else tile_dirs[0]
    mask_dir = args.results / "masks" / tile_dir.name
    cubes = {p.stem: p for p in sorted(tile_dir.glob("*.nc"))}
    masks = {s: mask_dir / f"{s}.nc" for s in cubes if (mask_dir / f"{s}.nc").is_file()}
    settings = {"device": args.device, "chunk_px": args.chunk_px, "year": args.year,
                "batch_size": args.batch_size, "ref_step": args.ref_step,
                "dates": args.dates, "num_samples": args.num_samples,
                "products": args.products, "geotiffs": args.geotiffs,
                "mixed_precision": args.mixed_precision}
    ctx = mp.get_context("spawn")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.crop:
            cubes, masks = crop_inputs(cubes, masks, args.crop, Path(tmp))
        for ckpt in checkpoints:
            queue = ctx.Queue()
            proc = ctx.Process(target=_run_one, args=(str(ckpt), cubes, masks, settings, queue))
            proc.start()
            result = queue.get()
            proc.join()
            result.setdefault("model", ckpt.parent.name)
            rows.append(result)
            print(json.dumps(result), flush=True)

    print(f"\nTile {tile_dir.name}{f' (crop {args.crop} px)' if args.crop else ''}, "
          f"chunk {rows[0].get('chunk_px', args.chunk_px)} px, batch "
          f"{rows[0].get('batch_size', args.batch_size)}, ref dates every "
          f"{args.ref_step:g} d; {platform.processor() or platform.machine()}\n")
    print("| model | device | pixels | pixels/s | px/s per core | peak RSS MiB | peak GPU MiB "
          "| 10980² tile (h) | 100 tiles (h) | bytes/px | GB per tile |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | failed: {r['error'][:60]} | | | | | | | | | |")
            continue
        hours = FULL_TILE_PX / r["pixels_per_second"] / 3600.0
        gpu = f"{r['peak_gpu_mib']:.0f}" if "peak_gpu_mib" in r else "-"
        per_px = r.get("bytes", 0) / r["pixels"]
        print(f"| {r['model']} | {r['device']} | {r['pixels']} | {r['pixels_per_second']:.0f} "
              f"| {r['pixels_per_second'] / r['threads']:.0f} | {r['peak_rss_mib']:.0f} "
              f"| {gpu} | {hours:.1f} | {100 * hours:.0f} | {per_px:.1f} "
              f"| {per_px * FULL_TILE_PX / 1e9:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
