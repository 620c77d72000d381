"""Extract stage: product folders -> canonical cube (docs/contracts.md section 1).

One cube per tile and sensor, written date by date and, within a date, block by block
(gpvae.io.window.spatial_blocks): memory is one block, whatever the tile's size.
Rule for duplicate dates (two products or acquisitions of one sensor on the same UTC day):
keep the one with more valid pixels in the AOI (ties: the earlier one) and log the other.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import rasterio
from rasterio.windows import Window
from tqdm.auto import tqdm

from gpvae.errors import InputError
from gpvae.io.cube import cube_writer
from gpvae.io.failures import reading
from gpvae.io.geotiff import raster_grid, read_band
from gpvae.io.s1tiling import (
    S1Acquisition,
    S1TilingReader,
    find_s1tiling_images,
    group_s1tiling_images,
)
from gpvae.io.sensors import S2_BANDS, builtin
from gpvae.io.theia import TheiaProduct, TheiaReader, find_theia_products, theia_grid
from gpvae.io.window import aoi_window, in_date_range, shift, spatial_blocks, window_transform

log = logging.getLogger(__name__)
T = TypeVar("T")
AOI = tuple[float, float, float, float]


#: GDAL's raster block cache during extraction, MiB. GDAL's default (5 % of the RAM) fills
#: with every block read from a large tile (1 GB extra on an 8192 px tile); this holds a band
#: of 512 rows of every file of a full striped Sentinel-2 tile (~75 MB), which the row-major
#: blocks reuse. benchmarks/bench_memory.py measures the effect.
GDAL_CACHE_MB = 128


def one_gdal_env(func: Callable[..., Path]) -> Callable[..., Path]:
    """Run ``func`` in one GDAL environment (rasterio's defaults, a bounded block cache), not
    one per file open."""
    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> Path:
        with rasterio.Env.from_defaults(GDAL_CACHEMAX=GDAL_CACHE_MB * 2**20):
            return func(*args, **kwargs)
    return wrapper


def one_per_day(items: Sequence[T], acquired: Callable[[T], np.datetime64],
                score: Callable[[T], int], name: Callable[[T], str]) -> list[T]:
    """Keep one item per UTC day: the highest ``score`` (valid pixels), ties the earliest."""
    by_day: dict[np.datetime64, list[T]] = {}
    for item in items:
        by_day.setdefault(np.datetime64(acquired(item), "D"), []).append(item)
    kept = []
    for day, group in sorted(by_day.items()):
        if len(group) > 1:
            scores = [score(it) for it in group]
            best = group[int(np.argmax(scores))]
            dropped = [f"{name(it)} ({s} valid px)" for it, s in zip(group, scores, strict=True)
                       if it is not best]
            log.warning("%s: %d acquisitions on one day; kept %s (%d valid px), dropped %s",
                        day, len(group), name(best), max(scores), ", ".join(dropped))
            group = [best]
        kept.extend(group)
    return kept


def _grid_check(items: Sequence[T], grid: Callable[[T], tuple], name: Callable[[T], str],
                path: Callable[[T], Path]) -> tuple[tuple, Callable[[T, tuple], None]]:
    """Grid of the first item, and a check that another item's grid equals it (else an
    InputError naming both). Readers call the check from the open that reads each file, so
    no file is opened twice."""
    ref = grid(items[0])

    def check(item: T, g: tuple) -> None:
        if g[0] != ref[0] or g[2:] != ref[2:] or not g[1].almost_equals(ref[1], 1e-6):
            raise InputError(
                f"{name(items[0])} and {name(item)} are on different grids "
                f"({ref[0]}, {tuple(ref[1])[:6]}, {ref[2]}x{ref[3]} vs {g[0]}, "
                f"{tuple(g[1])[:6]}, {g[2]}x{g[3]})", file=path(item), field="grid",
                fix="resample all products of a tile onto one grid, or configure them as "
                    "separate tiles")
    return ref, check


def _check_dates(start: str | None, end: str | None) -> None:
    """Dates must parse as ISO dates."""
    for field, value in (("start", start), ("end", end)):
        try:
            if value is not None:
                np.datetime64(str(value), "D")
        except ValueError as err:
            raise InputError(f"{field} date {value!r} is not an ISO date", field=field,
                             fix="write dates as YYYY-MM-DD") from err


def _relative_orbit(product: TheiaProduct) -> int:
    """Relative orbit from MTD_ALL.xml (``ORBIT_NUMBER type="Relative"``); 0 when absent."""
    mtd = product.path / f"{product.name}_MTD_ALL.xml"
    if not mtd.is_file():
        return 0
    m = re.search(r'<ORBIT_NUMBER type="Relative">\s*(\d+)', mtd.read_text(errors="replace"))
    return int(m.group(1)) if m else 0


@one_gdal_env
def extract_s2_theia(product_dir: Path, tile: str, out: Path, *, bands: list[str] | None = None,
                     aoi: AOI | None = None, start: str | None = None, end: str | None = None,
                     product: str = "FRE") -> Path:
    """Theia/MAJA L2A folders of ``tile`` -> S2 cube at 10 m (20 m bands bilinear).

    ``valid`` = not EDG_R1 and every band has data; ``quality`` = CLM_R1 byte; reflectance
    = DN / 10000. ``aoi`` in the tile CRS; ``start``/``end`` ISO dates (inclusive).
    Duplicate days: the product with more valid (non-EDG) pixels in the AOI is kept.
    """
    bands = list(S2_BANDS if bands is None else bands)
    unknown = [b for b in bands if b not in S2_BANDS]
    if unknown:
        raise InputError(f"unknown Sentinel-2 bands {unknown}", field="bands",
                         fix=f"use canonical names among {S2_BANDS}")
    if product not in ("FRE", "SRE"):
        raise InputError(f"Theia product type {product!r} unknown", field="product",
                         fix="use FRE (slope-corrected) or SRE")
    _check_dates(start, end)
    products = find_theia_products(product_dir, tile)
    keep = in_date_range(np.array([p.acquired for p in products]), start, end)
    products = [p for p, k in zip(products, keep, strict=True) if k]
    if not products:
        raise InputError(f"no Theia product of {tile} between {start} and {end}",
                         file=product_dir, field="start/end", fix="widen the date range")
    (crs, transform, h, w), check = _grid_check(products, theia_grid, lambda p: p.name,
                                                lambda p: p.path)
    window = aoi_window(aoi, transform, h, w, file=products[0].path)

    def n_valid(p: TheiaProduct) -> int:
        check(p, theia_grid(p))
        return count_blocks(p.mask_file("EDG", 1), window, lambda edg: edg == 0)

    products = one_per_day(products, lambda p: p.acquired, n_valid, lambda p: p.name)
    log.info("extracting %d Theia products of %s (%dx%d px, %d bands) -> %s",
             len(products), tile, window.height, window.width, len(bands), out)
    with cube_writer(out, with_quality=True, times=[p.acquired for p in products],
                     bands=bands, crs=crs.to_wkt(), transform=window_transform(window, transform),
                     height=int(window.height), width=int(window.width), sensor="S2",
                     tile=tile, radiometry=builtin("S2").radiometry,
                     per_date={"platform": [p.platform for p in products],
                               "orbit_direction": [""] * len(products),
                               "relative_orbit": [_relative_orbit(p) for p in products]},
                     attrs={"reader": f"theia_{product}", "source_files":
                            [str(p.path) for p in products]}) as writer:
        for t, p in enumerate(tqdm(products, desc=f"S2 {tile}", unit="product")):
            with TheiaReader(p, bands=bands, file_product=product, grid_check=check) as rd:
                n = writer.write_blocks(t, lambda win, rd=rd: rd.read(shift(win, window)))
            log.debug("%s: %.1f%% valid", p.name, 100 * n / (window.height * window.width))
    return Path(out)


@one_gdal_env
def extract_s1tiling(s1_dir: Path, tile: str, orbit_direction: str, out: Path, *,
                     aoi: AOI | None = None, start: str | None = None,
                     end: str | None = None) -> Path:
    """S1Tiling VV/VH images of ``tile`` and one orbit direction -> S1_ASC / S1_DES cube.

    valid = BorderMask (when present) AND value > 0 for both pols; linear sigma0 kept as is
    (dB input is rejected). Duplicate days: the acquisition with more valid pixels is kept.
    """
    direction = str(orbit_direction).upper()[:3]
    if direction not in ("ASC", "DES"):
        raise InputError(f"orbit direction {orbit_direction!r} unknown",
                         field="orbit_direction", fix="use ASC or DES")
    _check_dates(start, end)
    acqs = group_s1tiling_images(find_s1tiling_images(s1_dir, tile, direction))
    keep = in_date_range(np.array([a.acquired for a in acqs]), start, end)
    acqs = [a for a, k in zip(acqs, keep, strict=True) if k]
    if not acqs:
        raise InputError(f"no S1Tiling {direction} acquisition of {tile} between {start} and "
                         f"{end}", file=s1_dir, field="start/end", fix="widen the date range")
    (crs, transform, h, w), check = _grid_check(
        [im for a in acqs for im in (a.vv, a.vh)], lambda im: raster_grid(im.path),
        lambda im: im.path.name, lambda im: im.path)
    window = aoi_window(aoi, transform, h, w, file=acqs[0].vv.path)

    def n_valid(a: S1Acquisition) -> int:
        with S1TilingReader(a, grid_check=check) as rd:
            return sum(int(np.count_nonzero(rd.read(shift(win, window))[1]))
                       for win in spatial_blocks(int(window.height), int(window.width)))

    acqs = one_per_day(acqs, lambda a: a.acquired, n_valid, lambda a: a.vv.path.name)
    sensor = f"S1_{direction}"
    log.info("extracting %d S1Tiling %s acquisitions of %s -> %s", len(acqs), direction,
             tile, out)
    with cube_writer(out, times=[a.acquired for a in acqs], bands=builtin(sensor).band_names,
                     crs=crs.to_wkt(), transform=window_transform(window, transform),
                     height=int(window.height), width=int(window.width), sensor=sensor,
                     tile=tile, radiometry=builtin(sensor).radiometry,
                     per_date={"platform": [a.vv.platform for a in acqs],
                               "orbit_direction": [direction] * len(acqs),
                               "relative_orbit": [a.vv.relative_orbit for a in acqs]},
                     attrs={"reader": "s1tiling", "source_files":
                            [str(im.path) for a in acqs for im in (a.vv, a.vh)]}) as writer:
        for t, acq in enumerate(tqdm(acqs, desc=f"{sensor} {tile}", unit="date")):
            with S1TilingReader(acq, grid_check=check) as rd:
                writer.write_blocks(t, lambda win, rd=rd: rd.read(shift(win, window)))
    return Path(out)


def count_blocks(path: Path, window: Window, test: Callable[[np.ndarray], np.ndarray]) -> int:
    """Number of pixels of band 1 of a raster, within ``window``, where ``test`` holds; read
    block by block (bounded memory)."""
    with reading(path, what="GeoTIFF raster"), rasterio.open(path) as src:
        return sum(int(np.count_nonzero(test(read_band(src, window=shift(win, window)))))
                   for win in spatial_blocks(int(window.height), int(window.width)))
