"""Data-path throughput: extract / mask / sample against a plain read of the same files.

Runs the data stages of the pipeline (one extract and one mask job per tile and sensor, one
sample job) on the demo scene's products, exactly as the Snakemake rules call them (the same
``gpvae.cli`` arguments, built from ``config/config.yaml``), every output in a temporary
folder (never ``results/``). Each stage, and its "practical limit", runs in a fresh process
(multiprocessing spawn). The limit is a plain read into numpy of the same files: every band
of every GeoTIFF the stage reads (whole, rasterio), the same variables of its netCDF inputs
(netCDF4), the parcel GeoPackage (pyogrio); a plain write of the stage's outputs (same
variables, chunks and compression, netCDF4) is timed too, as stages also write. The OS page
cache is warm for all of them: the input files are read once just before every run. Per
stage: wall seconds of the stage call (imports timed apart), input files and their size (MB
= 1e6 bytes, the sum of the sizes of the files the stage reads), MB/s, plain read and write
seconds and ratios, peak resident memory (VmHWM, MiB), output size, and how the stage reads
its inputs (from the code). Then memory against the number of dates (extract and mask of one
S2 cube on half of its dates and on all) and of samples (the sample stage at three
``per_class`` settings: peak RSS per 1000 samples, against the size of the sample arrays).

    PYTHONPATH=src python benchmarks/bench_data_path.py                        # the demo
    PYTHONPATH=src python benchmarks/bench_data_path.py --tiles T31TCJ --no-scaling  # quick
    PYTHONPATH=src python benchmarks/bench_data_path.py --repeats 3 --json data_path.json
    PYTHONPATH=src python benchmarks/bench_data_path.py --tiles T31TCJ --no-scaling --profile 15
    PYTHONPATH=src python benchmarks/bench_data_path.py --scene /data/scene --tiles T31TCJ

``--scene DIR`` holds ``<tile>/S2/`` (Theia L2A folders), ``<tile>/S1/`` (S1Tiling GeoTIFFs),
``<tile>/parcels.gpkg`` and optionally ``<tile>/truth_S2.nc`` (the demo layout).
``--profile N`` adds the top N cProfile entries (internal time) of every stage.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import inspect
import json
import multiprocessing as mp
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MB = 1e6
MIB = 2.0**20
#: Modules a stage imports lazily inside its CLI command (imported before the clock starts).
STAGE_MODULES = {
    "extract": ["gpvae.io.readers", "gpvae.io.extract"],
    "mask": ["gpvae.preprocess.mask"],
    "sample": ["gpvae.preprocess.sample"],
}


LEGEND = """\
- MB: size of the input files the stage reads (1 MB = 1e6 bytes); MB/s = MB / stage s.
- MB read: bytes the process read by system calls during the call (/proc/self/io rchar;
  netCDF-C reads 4 MiB at each file open, so it can exceed MB, or far exceed what a stage
  that loads a few variables of a large file needs).
- stage s: wall time of the stage's CLI command (the rule's arguments), imports excluded.
- plain read s: the same files read into numpy: every band of every GeoTIFF (whole file,
  rasterio), the same netCDF variables (netCDF4), the GeoPackage (pyogrio).
- plain write s: the stage's outputs written again from memory with netCDF4, same
  variables, chunks and compression (CSV as bytes): the practical limit of the writing.
- imports s: importing the stage's modules and building the gpvae CLI parser (paid by
  every Snakemake job, not in stage s).
- peak RSS: VmHWM of the process during the call, MiB (added = peak minus the resident
  memory before the call, after the imports)."""


# ----------------------------------------------------------------------------- child side
def _proc_field(path: str, field: str) -> int:
    """Integer value of ``field`` in a /proc/self file (kB for status, bytes for io)."""
    with open(path) as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def _plain_reader(reads: list[list]) -> Callable[[], int]:
    """A function reading every listed file into numpy, plainly (no processing)."""
    import netCDF4
    import numpy as np
    import pyogrio
    import rasterio

    def run() -> int:
        n = 0
        for kind, path, names in reads:
            if kind == "tif":
                with rasterio.open(path) as src:
                    n += src.read().size
            elif kind == "nc":
                with netCDF4.Dataset(path) as nc:
                    for name in names:
                        var = nc.variables[name]
                        var.set_auto_maskandscale(False)
                        n += np.asarray(var[:]).size
            elif kind == "gpkg":
                n += len(pyogrio.read_dataframe(path))
            else:
                n += len(Path(path).read_bytes())
        return n

    return run


def _plain_writer(outputs: list[str], folder: str) -> Callable[[], int]:
    """A function writing the stage's outputs again from memory, plainly: every netCDF
    variable with its own dims, chunks and compression (netCDF4), other files as bytes."""
    import netCDF4
    import numpy as np

    files = []
    for path in outputs:
        if not path.endswith(".nc"):
            files.append((path, Path(path).read_bytes()))
            continue
        with netCDF4.Dataset(path) as nc:
            dims = {k: len(d) for k, d in nc.dimensions.items()}
            variables = []
            for name, var in nc.variables.items():
                var.set_auto_maskandscale(False)
                filters = var.filters() or {}
                fill = var.getncattr("_FillValue") if "_FillValue" in var.ncattrs() else None
                variables.append((name, var.datatype, var.dimensions, np.asarray(var[...]),
                                  filters, var.chunking(), fill))
        files.append((path, (dims, variables)))

    def run() -> int:
        for i, (path, content) in enumerate(files):
            target = Path(folder) / f"{i}_{Path(path).name}"
            if isinstance(content, bytes):
                target.write_bytes(content)
                continue
            dims, variables = content
            with netCDF4.Dataset(target, "w") as nc:
                for k, n in dims.items():
                    nc.createDimension(k, n)
                for name, dtype, vdims, data, filters, chunks, fill in variables:
                    kw = {"zlib": bool(filters.get("zlib")), "shuffle": bool(
                        filters.get("shuffle")), "complevel": filters.get("complevel") or 4}
                    if vdims and chunks != "contiguous":
                        kw["chunksizes"] = chunks
                    var = nc.createVariable(name, dtype, vdims, fill_value=fill, **kw)
                    var.set_auto_maskandscale(False)
                    if vdims:
                        var[...] = data
                    else:
                        var.assignValue(data)
        return len(files)

    return run


def _stage_runner(stage: str, argv: list[str]) -> Callable[[], object]:
    """The stage's CLI command, parsed from ``argv`` and ready to call."""
    from gpvae.cli import build_parser

    for module in STAGE_MODULES[stage]:
        importlib.import_module(module)
    args = build_parser().parse_args(argv)
    return lambda: args.func(args)


def _child(job: dict, queue: mp.Queue) -> None:
    """Run one job (stage or plain read) in this fresh process; report time and memory."""
    import logging

    logging.basicConfig(level=logging.ERROR)
    t0 = time.perf_counter()
    run = (_stage_runner(job["stage"], job["argv"]) if job["kind"] == "stage"
           else _plain_writer(job["outputs"], job["folder"]) if job["kind"] == "write"
           else _plain_reader(job["reads"]))
    imports = time.perf_counter() - t0
    if job.get("profile"):
        import cProfile
        import io
        import pstats

        prof = cProfile.Profile()
        prof.runcall(run)
        text = io.StringIO()
        stats = pstats.Stats(prof, stream=text).strip_dirs().sort_stats("tottime")
        stats.print_stats(job["profile"])
        queue.put({"profile": text.getvalue()})
        return
    with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current RSS
        f.write("5")
    base = _proc_field("/proc/self/status", "VmRSS:")
    rchar = _proc_field("/proc/self/io", "rchar:")
    t0 = time.perf_counter()
    run()
    seconds = time.perf_counter() - t0
    queue.put({"seconds": seconds, "imports_s": imports,
               "peak_rss_mib": _proc_field("/proc/self/status", "VmHWM:") / 1024,
               "base_rss_mib": base / 1024,
               "rchar_mb": (_proc_field("/proc/self/io", "rchar:") - rchar) / MB})


# ---------------------------------------------------------------------------- parent side
@dataclasses.dataclass
class Stage:
    """One pipeline job to measure: its CLI arguments, input files and plain-read plan."""

    name: str
    stage: str
    argv: list[str]
    inputs: list[Path]
    reads: list[list]
    outputs: list[Path]
    access: str
    results: dict = dataclasses.field(default_factory=dict)


def run_child(job: dict, timeout: float = 3600) -> dict:
    """Run ``job`` in a fresh spawned process and return what it reported."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(job, queue))
    proc.start()
    try:
        out = queue.get(timeout=timeout)
    except Exception as err:  # noqa: BLE001 - a dead or hung child: report, do not hide
        proc.kill()
        raise RuntimeError(f"{job.get('stage', 'plain')} job failed "
                           f"(exit code {proc.exitcode})") from err
    proc.join()
    if proc.exitcode:
        raise RuntimeError(f"job exited with code {proc.exitcode}")
    return out


def warm(files: list[Path]) -> None:
    """Read every file once so that the OS page cache holds it."""
    for path in files:
        with open(path, "rb") as f:
            while f.read(1 << 22):
                pass


def _size(paths: list[Path]) -> float:
    """Total size of the files in MB."""
    return sum(Path(p).stat().st_size for p in paths) / MB


def measure(st: Stage, repeats: int) -> None:
    """Best-of-``repeats`` seconds (max peak RSS) of the stage and of its plain read."""
    stage_runs, plain_runs, write_runs = [], [], []
    for _ in range(repeats):
        warm(st.inputs)
        plain_runs.append(run_child({"kind": "plain", "reads": st.reads}))
        warm(st.inputs)
        stage_runs.append(run_child({"kind": "stage", "stage": st.stage, "argv": st.argv}))
        with tempfile.TemporaryDirectory(prefix="plain_write_") as folder:
            write_runs.append(run_child({"kind": "write", "folder": folder,
                                         "outputs": [str(p) for p in st.outputs]}))
    best = min(stage_runs, key=lambda r: r["seconds"])
    st.results = {
        "files": len(st.inputs), "mb": _size(st.inputs), "stage_s": best["seconds"],
        "plain_s": min(r["seconds"] for r in plain_runs),
        "write_s": min(r["seconds"] for r in write_runs),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in stage_runs),
        "added_rss_mib": max(r["peak_rss_mib"] - r["base_rss_mib"] for r in stage_runs),
        "plain_peak_rss_mib": max(r["peak_rss_mib"] for r in plain_runs),
        "imports_s": min(r["imports_s"] for r in stage_runs),
        "rchar_mb": best["rchar_mb"], "plain_rchar_mb": plain_runs[0]["rchar_mb"],
        "output_mb": _size(st.outputs), "access": st.access,
        "all_stage_s": [r["seconds"] for r in stage_runs],
        "all_plain_s": [r["seconds"] for r in plain_runs],
        "all_write_s": [r["seconds"] for r in write_runs]}


def profile(st: Stage, top: int) -> str:
    """cProfile of one stage call (fresh process), the ``top`` entries by internal time."""
    warm(st.inputs)
    return run_child({"kind": "stage", "stage": st.stage, "argv": st.argv,
                      "profile": top})["profile"]


# ------------------------------------------------------------------ stages from the config
def load_config(path: Path) -> dict:
    """The pipeline configuration with the schema defaults filled in."""
    import yaml

    from gpvae.config import validate_config

    return validate_config(yaml.safe_load(Path(path).read_text()),
                           REPO / "src" / "gpvae" / "schema" / "config.schema.yaml")


def _nc_vars(path: Path, wanted: list[str]) -> list[str]:
    """Those of ``wanted`` that the netCDF file holds."""
    import netCDF4

    with netCDF4.Dataset(path) as nc:
        return [v for v in wanted if v in nc.variables]


def extract_stage(cfg: dict, scene: Path, tile: str, sensor: str, out: Path) -> Stage:
    """The extract job of one tile and sensor, with the files it reads."""
    from gpvae.io.s1tiling import find_s1tiling_images
    from gpvae.io.sensors import S2_BANDS
    from gpvae.io.theia import find_theia_products

    e = cfg["extract"]
    argv = ["extract", "--sensor", sensor, "--tile", tile, "--out", str(out)]
    if e["aoi"]:
        argv += ["--aoi", *map(str, e["aoi"])]
    argv += [f"--{k}={e[k]}" for k in ("start", "end") if e[k]]
    if sensor == "S2":
        product = cfg["inputs"]["S2"].get("product", "FRE")
        src = scene / tile / "S2"
        argv += ["--input", str(src), "--format", "theia", "--options",
                 json.dumps({"product": product})]
        if e["bands"]:
            argv += ["--bands", *e["bands"]]
        files = []
        for p in find_theia_products(src, tile):
            files += [p.band_file(b, product) for b in (e["bands"] or S2_BANDS)]
            files += [p.mask_file("EDG", 1), p.mask_file("CLM", 1)]
        reads = [["tif", str(f), None] for f in files]
        mtd = [p.path / f"{p.name}_MTD_ALL.xml" for p in find_theia_products(src, tile)]
        mtd = [m for m in mtd if m.is_file()]
        files += mtd
        reads += [["text", str(m), None] for m in mtd]
    else:
        src = scene / tile / "S1"
        argv += ["--input", str(src), "--format", "s1tiling"]
        files = []
        for im in find_s1tiling_images(src, tile, sensor.split("_")[1]):
            files += [im.path] + ([im.border_mask] if im.border_mask.is_file() else [])
        reads = [["tif", str(f), None] for f in files]
    access = ("whole file" if not e["aoi"] else "AOI window of each file") + ", a date at a time"
    return Stage(f"extract {tile} {sensor}", "extract", argv, files, reads, [out], access)


def mask_stage(cfg: dict, cube: Path, out: Path, table: Path) -> Stage:
    """The mask job of one cube."""
    m = cfg["mask"]
    argv = ["mask", "--cube", str(cube), "--out", str(out), "--table", str(table),
            "--clm-bits", *map(str, m["clm_bits"]), "--scl-classes",
            *map(str, m["scl_classes"]), "--dilation", str(m["dilation_px"])]
    from gpvae.preprocess import mask

    names = _nc_vars(cube, ["time", "valid", "quality"])
    rows, cols, dates = _nc_dim(cube, "y"), _nc_dim(cube, "x"), _nc_dim(cube, "time")
    per_read = getattr(mask, "dates_per_block", lambda h, w: 1)(rows, cols)
    access = (f"{f'all {dates}' if per_read >= dates else f'blocks of {per_read} of {dates}'}"
              f" dates per read, whole rows ({rows}): {', '.join(names[1:])}")
    tile, sensor = cube.parent.name, cube.stem
    return Stage(f"mask {tile} {sensor}", "mask", argv, [cube], [["nc", str(cube), names]],
                 [out, table], access)


def _nc_dim(path: Path, dim: str) -> int:
    """Length of a dimension of a netCDF file."""
    import netCDF4

    with netCDF4.Dataset(path) as nc:
        return len(nc.dimensions[dim])


def sample_spec(cfg: dict, scene: Path, tiles: list[str], sensors: list[str], cubes: Path,
                masks: Path, sample: dict | None = None) -> dict:
    """The sample rule's --spec document (workflow/rules/common.smk, sample_spec)."""
    inp = cfg["inputs"]
    spec = {}
    for t in tiles:
        truth = scene / t / "truth_S2.nc"
        spec[t] = {"cubes": {s: str(cubes / t / f"{s}.nc") for s in sensors},
                   "masks": {s: str(masks / t / f"{s}.nc") for s in sensors},
                   "parcels": str(scene / t / "parcels.gpkg"),
                   "truth": str(truth) if inp["truth"] and truth.is_file() else None,
                   "region": inp["regions"].get(t, t)}
    return {"inputs": spec, "class_field": inp["parcels"]["class_field"],
            "id_field": inp["parcels"]["id_field"], "sample": sample or cfg["sample"]}


def sample_stage(spec: dict, out: Path, name: str = "sample") -> Stage:
    """The sample job of ``spec``, with the files and variables it reads."""
    from gpvae.preprocess.sample import gather

    files, reads = [], []
    rows = 0
    for t in spec["inputs"].values():
        for s, cube in t["cubes"].items():
            files.append(Path(cube))
            reads.append(["nc", cube, _nc_vars(Path(cube), ["time", "data"])])
            files.append(Path(t["masks"][s]))
            reads.append(["nc", t["masks"][s], ["time", "valid"]])
            rows = max(rows, _nc_dim(Path(cube), "y"))
        files.append(Path(t["parcels"]))
        reads.append(["gpkg", t["parcels"], None])
        if t["truth"]:
            files.append(Path(t["truth"]))
            reads.append(["nc", t["truth"], ["time", "data"]])
    from gpvae.preprocess import sample

    block = inspect.signature(gather).parameters["block"].default
    budget = getattr(sample, "SAMPLE_BLOCK_BYTES", None)
    access = (f"{f'blocks of dates ({budget / MIB:.0f} MiB)' if budget else 'date slices'}, "
              f"windows of {block} rows (grid {rows} rows): cube data, mask valid, truth data")
    argv = ["sample", "--spec", json.dumps(spec, sort_keys=True), "--out", str(out)]
    return Stage(name, "sample", argv, files, reads, [out], access)


# ------------------------------------------------------------------------------- reporting
def table(stages: list[Stage]) -> str:
    """Markdown table of the measured stages, with one total row."""
    head = ("| stage | files | MB | MB read | stage s | MB/s | plain read s | ratio (stage / "
            "plain) | plain write s | stage / (read + write) | imports s | peak RSS MiB "
            "(added) | output MB | reads |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for st in stages:
        r = st.results
        lines.append(
            f"| {st.name} | {r['files']} | {r['mb']:.1f} | {r['rchar_mb']:.1f} | "
            f"{r['stage_s']:.2f} | {r['mb'] / r['stage_s']:.1f} | {r['plain_s']:.2f} | "
            f"{r['stage_s'] / r['plain_s']:.1f}x | {r['write_s']:.2f} | "
            f"{r['stage_s'] / (r['plain_s'] + r['write_s']):.1f}x | {r['imports_s']:.1f} | "
            f"{r['peak_rss_mib']:.0f} ({r['added_rss_mib']:.0f}) | {r['output_mb']:.1f} | "
            f"{r['access']} |")
    tot = {k: sum(st.results[k] for st in stages)
           for k in ("files", "mb", "rchar_mb", "stage_s", "plain_s", "write_s", "imports_s",
                     "output_mb")}
    lines.append(
        f"| **all {len(stages)} jobs** | {tot['files']} | {tot['mb']:.1f} | "
        f"{tot['rchar_mb']:.1f} | {tot['stage_s']:.2f} | {tot['mb'] / tot['stage_s']:.1f} | "
        f"{tot['plain_s']:.2f} | {tot['stage_s'] / tot['plain_s']:.1f}x | "
        f"{tot['write_s']:.2f} | {tot['stage_s'] / (tot['plain_s'] + tot['write_s']):.1f}x | "
        f"{tot['imports_s']:.1f} | {max(st.results['peak_rss_mib'] for st in stages):.0f} "
        "(max) | "
        f"{tot['output_mb']:.1f} | |")
    return "\n".join(lines)


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares slope and intercept of ys on xs."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    return slope, my - slope * mx


def scaling(cfg: dict, scene: Path, tiles: list[str], sensors: list[str], tmp: Path,
            full: dict[str, Stage]) -> dict:
    """Memory against the number of dates (extract, mask) and of samples (sample)."""
    import netCDF4
    import numpy as np

    out: dict = {"dates": [], "samples": []}
    tile = tiles[0]
    first_cube = tmp / "cubes" / tile / "S2.nc"
    with netCDF4.Dataset(first_cube) as nc:
        t = netCDF4.num2date(nc["time"][:], nc["time"].units, only_use_cftime_datetimes=False)
    days = np.array([np.datetime64(x.isoformat(), "D") for x in t])
    end = str(days[len(days) // 2 - 1])
    half_cfg = json.loads(json.dumps(cfg))
    half_cfg["extract"]["end"] = end
    d = tmp / "scaling"
    ex = extract_stage(half_cfg, scene, tile, "S2", d / "cubes" / tile / "S2.nc")
    ex.name = f"extract {tile} S2, dates up to {end}"
    measure(ex, 1)
    mk = mask_stage(cfg, d / "cubes" / tile / "S2.nc", d / "masks" / tile / "S2.nc",
                    d / "masks" / tile / "S2_cloud_cover.csv")
    mk.name = f"mask {tile} S2, dates up to {end}"
    measure(mk, 1)
    for half, whole in ((ex, full[f"extract {tile} S2"]), (mk, full[f"mask {tile} S2"])):
        n_half = _nc_dim(half.outputs[0], "time")
        n_full = _nc_dim(whole.outputs[0], "time")
        out["dates"].append({"stage": whole.name, "dates": [n_half, n_full],
                             "peak_rss_mib": [half.results["peak_rss_mib"],
                                              whole.results["peak_rss_mib"]],
                             "added_rss_mib": [half.results["added_rss_mib"],
                                               whole.results["added_rss_mib"]],
                             "seconds": [half.results["stage_s"], whole.results["stage_s"]]})
    base = cfg["sample"]["per_class"]
    for per_class in sorted({max(1, base // 4), max(1, base // 2), base}):
        s_cfg = dict(cfg["sample"], per_class=per_class)
        spec = sample_spec(cfg, scene, tiles, sensors, tmp / "cubes", tmp / "masks", s_cfg)
        path = d / f"pixels_{per_class}.nc"
        st = sample_stage(spec, path, f"sample per_class={per_class}")
        measure(st, 1)
        with netCDF4.Dataset(path) as nc:
            n = len(nc.dimensions["sample"])
            arr_mb = sum(np.prod(v.shape) * v.dtype.itemsize for k, v in nc.variables.items()
                         if k.startswith(("values_", "truth_"))) / MIB
        out["samples"].append({"per_class": per_class, "samples": n,
                               "peak_rss_mib": st.results["peak_rss_mib"],
                               "added_rss_mib": st.results["added_rss_mib"],
                               "arrays_mib": float(arr_mb), "seconds": st.results["stage_s"]})
    rows = out["samples"]
    slope, icpt = _fit([r["samples"] / 1000 for r in rows], [r["peak_rss_mib"] for r in rows])
    arr_slope, _ = _fit([r["samples"] / 1000 for r in rows], [r["arrays_mib"] for r in rows])
    out["sample_fit"] = {"mib_per_1000_samples": slope, "intercept_mib": icpt,
                         "array_mib_per_1000_samples": arr_slope}
    return out


def scaling_text(sc: dict) -> str:
    """Markdown tables of the memory scaling runs."""
    lines = ["| stage | dates (half, all) | peak RSS MiB (half, all) | added MiB (half, all) | "
             "stage s (half, all) |", "|---|---|---|---|---|"]
    for r in sc["dates"]:
        lines.append(f"| {r['stage']} | {r['dates'][0]}, {r['dates'][1]} | "
                     f"{r['peak_rss_mib'][0]:.0f}, {r['peak_rss_mib'][1]:.0f} | "
                     f"{r['added_rss_mib'][0]:.0f}, {r['added_rss_mib'][1]:.0f} | "
                     f"{r['seconds'][0]:.2f}, {r['seconds'][1]:.2f} |")
    lines += ["", "| sample per_class | samples | peak RSS MiB | added MiB | sample arrays MiB "
              "(values + truth, float32) | stage s |", "|---|---|---|---|---|---|"]
    for r in sc["samples"]:
        lines.append(f"| {r['per_class']} | {r['samples']} | {r['peak_rss_mib']:.0f} | "
                     f"{r['added_rss_mib']:.0f} | {r['arrays_mib']:.1f} | "
                     f"{r['seconds']:.2f} |")
    f = sc["sample_fit"]
    lines += ["", f"sample stage: peak RSS = {f['intercept_mib']:.0f} MiB + "
              f"{f['mib_per_1000_samples']:.1f} MiB per 1000 samples (least squares); the "
              f"sample arrays themselves are {f['array_mib_per_1000_samples']:.1f} MiB per "
              "1000 samples."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its tables; returns the exit code."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", type=Path, default=REPO / "resources" / "demo",
                    help="folder with <tile>/{S2,S1,parcels.gpkg,truth_S2.nc}")
    ap.add_argument("--tiles", nargs="+", default=None, help="tiles (default: all in --scene)")
    ap.add_argument("--config", type=Path, default=REPO / "config" / "config.yaml",
                    help="pipeline config whose extract/mask/sample settings are used")
    ap.add_argument("--repeats", type=int, default=1, help="runs per job (best time kept)")
    ap.add_argument("--json", type=Path, default=None, help="also write every number here")
    ap.add_argument("--no-scaling", action="store_true", help="skip the memory scaling runs")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="also print the top N cProfile entries of every stage")
    ap.add_argument("--keep", action="store_true", help="keep the temporary outputs")
    a = ap.parse_args(argv)
    os.environ["TQDM_DISABLE"] = "1"  # inherited by the spawned children
    if importlib.util.find_spec("gpvae") is None:  # not on PYTHONPATH: use this checkout's
        src = str(REPO / "src")
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (src, os.environ.get(
            "PYTHONPATH")) if p)
        sys.path.insert(0, src)
    cfg = load_config(a.config)
    scene = a.scene.resolve()
    tiles = a.tiles or sorted(p.name for p in scene.iterdir() if (p / "S2").is_dir())
    sensors = ["S2"] + [f"S1_{o}" for o in (cfg["inputs"].get("S1") or {}).get("orbits", [])
                        if all((scene / t / "S1").is_dir() for t in tiles)]
    tmp = Path(tempfile.mkdtemp(prefix="bench_data_path_"))
    t_start = time.perf_counter()
    stages: list[Stage] = []
    try:
        for tile in tiles:
            for s in sensors:
                st = extract_stage(cfg, scene, tile, s, tmp / "cubes" / tile / f"{s}.nc")
                measure(st, a.repeats)
                stages.append(st)
                print(f"  {st.name}: {st.results['stage_s']:.2f} s", flush=True)
        for tile in tiles:
            for s in sensors:
                st = mask_stage(cfg, tmp / "cubes" / tile / f"{s}.nc",
                                tmp / "masks" / tile / f"{s}.nc",
                                tmp / "masks" / tile / f"{s}_cloud_cover.csv")
                measure(st, a.repeats)
                stages.append(st)
                print(f"  {st.name}: {st.results['stage_s']:.2f} s", flush=True)
        spec = sample_spec(cfg, scene, tiles, sensors, tmp / "cubes", tmp / "masks")
        st = sample_stage(spec, tmp / "samples" / "pixels.nc")
        measure(st, a.repeats)
        stages.append(st)
        print(f"  {st.name}: {st.results['stage_s']:.2f} s", flush=True)
        sc = None if a.no_scaling else scaling(cfg, scene, tiles, sensors, tmp,
                                               {s.name: s for s in stages})
        profiles = {st.name: profile(st, a.profile) for st in stages} if a.profile else {}
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    wall = time.perf_counter() - t_start
    print(f"\nData path on {scene} (tiles {' '.join(tiles)}; sensors {' '.join(sensors)}), "
          f"config {a.config.name}; {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}; best of {a.repeats} per job, each job in a "
          "fresh process; OS page cache warm for every run (its input files read once "
          "just before).\n" + LEGEND + "\n")
    print(table(stages))
    if sc:
        print("\nMemory against the number of dates and of samples:\n")
        print(scaling_text(sc))
    for name, text in profiles.items():
        print(f"\ncProfile of {name} (top {a.profile} by internal time):\n{text}")
    print(f"\nbenchmark wall time {wall:.0f} s{'' if not a.keep else f'; outputs in {tmp}'}")
    if a.json:
        a.json.write_text(json.dumps({"stages": [{"name": s.name, "argv": s.argv,
                                                  **s.results} for s in stages],
                                      "scaling": sc, "profiles": profiles,
                                      "wall_s": wall, "tiles": tiles, "sensors": sensors,
                                      "repeats": a.repeats}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
