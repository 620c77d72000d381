"""Area and date selections shared by the readers: AOI window, date range, spatial blocks."""

from __future__ import annotations

import math

import affine
import numpy as np
from rasterio.windows import Window

from gpvae.errors import InputError

#: Side (pixels) of the spatial blocks the readers and the mask stage work in: a multiple of
#: the cubes' 256-pixel chunks (each block write fills whole chunks) and of 2 (20 m pixels
#: stay whole). Memory per block is independent of the tile's size.
BLOCK_PX = 512


def aoi_window(aoi: tuple[float, float, float, float] | None, transform: affine.Affine,
               height: int, width: int, *, align: int = 2, file: object = None) -> Window:
    """Pixel window covering ``aoi`` = (xmin, ymin, xmax, ymax) in the grid's CRS.

    Snapped outwards to multiples of ``align`` pixels (2: the 20 m Sentinel-2 pixels stay
    whole, and S1/S2 cubes of one tile get the same window) and clipped to the grid.
    """
    if aoi is None:
        return Window(0, 0, width, height)
    xmin, ymin, xmax, ymax = aoi
    if not (xmin < xmax and ymin < ymax):
        raise InputError(f"AOI {aoi} is not (xmin, ymin, xmax, ymax)", file=file, field="aoi",
                         fix="give the AOI as xmin, ymin, xmax, ymax in the tile CRS")
    inv = ~transform
    cols, rows = zip(*(inv @ (x, y) for x in (xmin, xmax) for y in (ymin, ymax)), strict=True)
    c0 = max(0, math.floor(min(cols) / align) * align)
    r0 = max(0, math.floor(min(rows) / align) * align)
    c1 = min(width, math.ceil(max(cols) / align) * align)
    r1 = min(height, math.ceil(max(rows) / align) * align)
    if c1 <= c0 or r1 <= r0:
        raise InputError(f"AOI {aoi} does not overlap the tile grid", file=file, field="aoi",
                         fix="give the AOI in the tile CRS (e.g. UTM metres) inside the tile")
    return Window(c0, r0, c1 - c0, r1 - r0)


def in_date_range(times: np.ndarray, start: str | None, end: str | None) -> np.ndarray:
    """Boolean mask of ``times`` within [start, end] (ISO dates; ``end`` day included)."""
    times = np.asarray(times).astype("datetime64[ns]")
    keep = np.ones(times.shape, bool)
    if start is not None:
        keep &= times >= np.datetime64(str(start), "D").astype("datetime64[ns]")
    if end is not None:
        keep &= times < (np.datetime64(str(end), "D") + 1).astype("datetime64[ns]")
    return keep


def select_dates(items: list, dates: list, start: str | None, end: str | None, *,
                 what: str, file: object) -> list:
    """The ``items`` whose ``dates`` are within [start, end] (:func:`in_date_range`); none
    is an error naming ``what`` (e.g. "Landsat product") and ``file``."""
    keep = in_date_range(np.array(dates), start, end)
    kept = [it for it, k in zip(items, keep, strict=True) if k]
    if not kept:
        raise InputError(f"no {what} between {start} and {end}", file=file,
                         field="start/end", fix="widen the date range")
    return kept


def window_transform(window: Window, transform: affine.Affine) -> affine.Affine:
    """Affine transform of a pixel window's grid."""
    return transform @ affine.Affine.translation(window.col_off, window.row_off)


def spatial_blocks(height: int, width: int, size: int | None = None) -> list[Window]:
    """Row-major windows of at most ``size`` x ``size`` pixels (default :data:`BLOCK_PX`,
    read at call time) tiling a ``height`` x ``width`` grid."""
    size = int(BLOCK_PX if size is None else size)
    return [Window(c, r, min(size, width - c), min(size, height - r))
            for r in range(0, height, size) for c in range(0, width, size)]


def shift(window: Window, by: Window) -> Window:
    """``window`` (relative to ``by``'s grid) in the coordinates of ``by``'s parent grid."""
    return Window(window.col_off + by.col_off, window.row_off + by.row_off, window.width,
                  window.height)
