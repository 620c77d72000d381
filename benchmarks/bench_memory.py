"""Peak memory of the data stages against the tile size: is it flat?

Writes synthetic products of growing size (square tiles of 512, 2048 and 8192 px by default,
a few dates): Theia L2A folders (4 bands at 10 m, 6 at 20 m, CLM/EDG masks), S1Tiling VV/VH
images (one orbit) and a parcel GeoPackage (square parcels), all written block by block so
the generator itself stays small. Then runs each data stage as the pipeline's rule calls it
(``python -m gpvae.cli ...``) in a fresh process and reports its wall time and peak resident
memory (``ru_maxrss`` of the child process, MiB), and the memory the stage adds over the
resident memory after importing the same modules.

    PYTHONPATH=src python benchmarks/bench_memory.py                    # 512, 2048, 8192 px
    PYTHONPATH=src python benchmarks/bench_memory.py --sizes 512 2048 --dates 2
    PYTHONPATH=src python benchmarks/bench_memory.py --src /tmp/base/src  # another version

``--src`` runs the stages of another checkout's ``src/`` (e.g. the code before a change:
``git archive <commit> src | tar -x -C /tmp/base``) on the same products. Products are
kept in ``--work`` (default ``benchmarks/out/memory``) and reused when present.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MIB = 2.0**20
CRS = "EPSG:32631"
ROWS = 512  # rows written per block by the generator
S2_10M = ("B2", "B3", "B4", "B8")
S2_20M = ("B5", "B6", "B7", "B8A", "B11", "B12")


def _field(size: int, rows: slice, seed: int, scale: float, base: float) -> np.ndarray:
    """A smooth, compressible field with a little noise, on rows ``rows`` of a square grid."""
    y = np.arange(rows.start, rows.stop, dtype=np.float32)[:, None]
    x = np.arange(size, dtype=np.float32)[None, :]
    rng = np.random.default_rng([seed, rows.start])
    value = base + scale * (np.sin(x / 97.0 + seed) + np.cos(y / 131.0 - seed))
    return value + rng.normal(0, scale * 0.02, (rows.stop - rows.start, size))


def _write(path: Path, size: int, dtype: str, transform, fill, nodata=None) -> None:
    """A tiled, deflate GeoTIFF of ``size`` x ``size`` filled by ``fill(rows)`` in blocks."""
    import rasterio
    from rasterio.windows import Window

    profile = {"driver": "GTiff", "height": size, "width": size, "count": 1, "dtype": dtype,
               "crs": CRS, "transform": transform, "compress": "deflate", "tiled": True,
               "blockxsize": 256, "blockysize": 256}
    if nodata is not None:
        profile["nodata"] = nodata
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, size, ROWS):
            rows = slice(r0, min(size, r0 + ROWS))
            dst.write(fill(rows).astype(dtype), 1, window=Window(0, r0, size, rows.stop - r0))


def make_products(root: Path, size: int, dates: int) -> dict[str, Path]:
    """Theia S2, S1Tiling ASC and parcels of one ``size`` x ``size`` tile under ``root``."""
    import affine

    from gpvae.io.s1tiling import s1tiling_name
    from gpvae.io.theia import theia_product_name

    done = root / "done"
    paths = {"s2": root / "S2", "s1": root / "S1", "parcels": root / "parcels.gpkg"}
    if done.exists():
        return paths
    t10 = affine.Affine(10.0, 0, 300000.0, 0, -10.0, 4900000.0)
    t20 = t10 * affine.Affine.scale(2.0)
    for d in range(dates):
        when = np.datetime64("2022-03-01T10:30") + np.timedelta64(10 * d, "D")
        name = theia_product_name(tile="T31TCJ", acquired=when, platform="SENTINEL2A")
        folder = paths["s2"] / name
        for k, band in enumerate(S2_10M + S2_20M):
            res = 1 if band in S2_10M else 2
            _write(folder / f"{name}_FRE_{band}.tif", size // res, "int16",
                   t10 if res == 1 else t20, lambda rows, k=k, r=res, d=d: _field(
                       size // r, rows, 10 * d + k, 400.0, 1500.0), nodata=-10000)
        _write(folder / "MASKS" / f"{name}_CLM_R1.tif", size, "uint8", t10,
               lambda rows, d=d: (_field(size, rows, d, 1.0, 0.0) > 1.2).astype(np.uint8))
        _write(folder / "MASKS" / f"{name}_EDG_R1.tif", size, "uint8", t10,
               lambda rows: np.zeros((rows.stop - rows.start, size)))
        for pol in ("vv", "vh"):
            fname = s1tiling_name(tile="T31TCJ", acquired=when, platform="s1a",
                                  orbit_direction="ASC", relative_orbit=30, polarisation=pol)
            _write(paths["s1"] / fname, size, "float32", t10,
                   lambda rows, p=pol, d=d: 10 ** (_field(size, rows, d + (p == "vh"), 2.0,
                                                     -14.0) / 10))
    _parcels(paths["parcels"], size, t10)
    done.write_text("ok")
    return paths


def _parcels(path: Path, size: int, transform, side: int = 64) -> None:
    """Square parcels of ``side`` px on a regular grid, 5 classes."""
    import geopandas as gpd
    from shapely.geometry import box

    n = size // side
    x0, y0 = transform.c, transform.f
    geoms, ids, classes = [], [], []
    for i in range(n):
        for j in range(n):
            left, top = x0 + j * side * 10.0, y0 - i * side * 10.0
            geoms.append(box(left + 20, top - side * 10.0 + 20, left + side * 10.0 - 20,
                             top - 20))
            ids.append(i * n + j + 1)
            classes.append(f"c{(i + j) % 5}")
    gpd.GeoDataFrame({"parcel_id": ids, "class": classes}, geometry=geoms, crs=CRS
                     ).to_file(path, driver="GPKG")


#: Child code: run one CLI command, report seconds and peak RSS (and RSS after imports).
CHILD = """
import json, resource, sys, time, importlib
for m in {modules!r}:
    importlib.import_module(m)
from gpvae.cli import main
def rss():
    with open('/proc/self/status') as f:
        return next(int(l.split()[1]) for l in f if l.startswith('VmRSS')) / 1024
base = rss()
t0 = time.perf_counter()
code = main({argv!r})
sec = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"code": code, "seconds": sec, "peak": peak, "base": base}}))
"""

STAGE_MODULES = {"extract": ["gpvae.io.readers", "gpvae.io.extract"],
                 "mask": ["gpvae.preprocess.mask"]}


def run_stage(src: Path, argv: list[str]) -> dict:
    """One CLI command in a fresh process with ``src`` first on the path."""
    code = CHILD.format(modules=STAGE_MODULES.get(argv[0], []), argv=argv)
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out["code"] != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return out


def stages(paths: dict[str, Path], out: Path) -> list[tuple[str, list[str]]]:
    """The data stages as the rules call them (extract S2 / S1, mask S2 with dilation)."""
    cube_s2, cube_s1 = out / "cubes" / "S2.nc", out / "cubes" / "S1_ASC.nc"
    return [
        ("extract S2", ["extract", "--sensor", "S2", "--input", str(paths["s2"]), "--tile",
                        "T31TCJ", "--out", str(cube_s2), "--format", "theia"]),
        ("extract S1_ASC", ["extract", "--sensor", "S1_ASC", "--input", str(paths["s1"]),
                            "--tile", "T31TCJ", "--out", str(cube_s1), "--format",
                            "s1tiling"]),
        ("mask S2", ["mask", "--cube", str(cube_s2), "--out", str(out / "masks" / "S2.nc"),
                     "--table", str(out / "masks" / "S2_cc.csv"), "--clm-bits", "0",
                     "--dilation", "1"]),
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 2048, 8192])
    p.add_argument("--dates", type=int, default=2)
    p.add_argument("--src", type=Path, default=REPO / "src",
                   help="the src/ folder whose stages run (default: this checkout)")
    p.add_argument("--work", type=Path, default=REPO / "benchmarks" / "out" / "memory")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    rows = []
    for size in a.sizes:
        paths = make_products(a.work / f"{size}px_{a.dates}d", size, a.dates)
        out = a.work / f"{size}px_{a.dates}d" / f"out_{zlib.crc32(str(a.src).encode())}"
        for name, argv in stages(paths, out):
            r = run_stage(a.src, argv)
            rows.append({"stage": name, "size": size, "mpx": size * size / 1e6, **r,
                         "added": r["peak"] - r["base"]})
            print(f"{name} {size}px: {r['seconds']:.1f} s, peak {r['peak']:.0f} MiB "
                  f"(added {r['peak'] - r['base']:.0f})", file=sys.stderr)
    print(f"\n{time.strftime('%Y-%m-%d %H:%M')}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, code: {a.src}, {a.dates} dates per sensor\n")
    print("| stage | tile px | Mpx | s | peak RSS MiB | added MiB | added bytes/px |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['stage']} | {r['size']} x {r['size']} | {r['mpx']:.1f} | "
              f"{r['seconds']:.1f} | {r['peak']:.0f} | {r['added']:.0f} | "
              f"{r['added'] * MIB / (r['mpx'] * 1e6):.2f} |")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
