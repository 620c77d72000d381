"""Grids of coarse sensors (Landsat 30 m, MODIS 250 m) against a tile's fine grid.

A coarse sensor keeps its native resolution in its cube: its grid is aligned with the tile's
fine (10 m) grid, same CRS and top-left corner, with a pixel of ``k`` fine pixels, k =
round(resolution / fine pixel) (:func:`coarse_grid`). A fine pixel belongs to the coarse cell
holding its centre (:func:`cells_of`); the model's coarse decoder predicts a cell as the mean
of the predictions of the fine pixels it covers (docs/models.md, "Sensors at other
resolutions"). Any coarse grid in the tile's CRS works with :func:`cells_of` (e.g. a generic
Landsat cube on its own 30 m grid); a grid in another CRS must be warped first.
"""

from __future__ import annotations

import math

import affine
import numpy as np
import rasterio.crs

from gpvae.errors import InputError

Grid = tuple[rasterio.crs.CRS, affine.Affine, int, int]
#: Cell ids are tile index * CELL_STRIDE + row * width + col (unique over the tiles).
CELL_STRIDE = 1 << 40


def pixel_size(transform: affine.Affine) -> float:
    """Pixel side of a north-up grid (its x step)."""
    return abs(float(transform.a))


def coarse_grid(fine: Grid, resolution_m: float) -> Grid:
    """The grid of a sensor of ``resolution_m`` over the tile's ``fine`` grid: same CRS and
    top-left corner, k x k fine pixels a cell (k >= 1), covering the whole tile (the last row
    and column may overhang it)."""
    crs, transform, h, w = fine
    k = max(1, int(round(float(resolution_m) / pixel_size(transform))))
    coarse = transform @ affine.Affine.scale(k)
    return crs, coarse, math.ceil(h / k), math.ceil(w / k)


def same_grid(a: Grid, b: Grid) -> bool:
    """Same CRS, shape and transform (to 1e-6)."""
    return a[0] == b[0] and a[2:] == b[2:] and a[1].almost_equals(b[1], 1e-6)


def is_coarser(fine: Grid, other: Grid) -> bool:
    """``other`` is in the CRS of ``fine`` with a larger pixel (a coarse sensor's grid)."""
    return other[0] == fine[0] and pixel_size(other[1]) > pixel_size(fine[1]) * (1 + 1e-6)


def cells_of(fine: Grid, coarse: Grid, rows: np.ndarray, cols: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coarse (row, col) of the cells holding the centres of fine pixels (rows, cols), and
    whether the centre lies inside the coarse grid (row, col are 0 where not)."""
    if fine[0] != coarse[0]:
        raise InputError("a coarse cube is not in the tile's CRS", field="crs",
                         fix="extract the coarse sensor on the tile's grid (format landsat / "
                         "appeears warp it), or warp the cube to the tile's CRS")
    ft, ct = fine[1], coarse[1]
    x, y = ft @ (np.asarray(cols, np.float64) + 0.5, np.asarray(rows, np.float64) + 0.5)
    c, r = ~ct @ (x, y)
    r, c = np.floor(r).astype(np.int64), np.floor(c).astype(np.int64)
    inside = (r >= 0) & (r < coarse[2]) & (c >= 0) & (c < coarse[3])
    return np.where(inside, r, 0), np.where(inside, c, 0), inside


def cell_ids(tile_index: int, coarse: Grid, rows: np.ndarray, cols: np.ndarray,
             inside: np.ndarray) -> np.ndarray:
    """int64 ids of coarse cells, unique over tiles (-1 where not ``inside``)."""
    ids = int(tile_index) * CELL_STRIDE + np.asarray(rows, np.int64) * coarse[3] + cols
    return np.where(inside, ids, -1).astype(np.int64)
