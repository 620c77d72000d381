"""Tile grid and the 10 m <-> 20 m resampling that a Sentinel-2 sensor and GDAL perform."""

from __future__ import annotations

import affine
import numpy as np

from gpvae.scene.config import TileConfig

#: Pixel size of the simulation grid (metres).
PIXEL_M = 10.0


def tile_transform(tile: TileConfig) -> affine.Affine:
    """North-up 10 m grid of a tile: Affine(10, 0, x_min, 0, -10, y_max)."""
    x0, y0 = tile.origin
    return affine.Affine(PIXEL_M, 0.0, x0, 0.0, -PIXEL_M, y0)


def block_mean_2x2(a: np.ndarray) -> np.ndarray:
    """Average 2x2 blocks over the last two axes (a 20 m pixel integrates four 10 m ones)."""
    *lead, h, w = a.shape
    return a.reshape(*lead, h // 2, 2, w // 2, 2).mean(axis=(-3, -1))


def _upsample_axis(a: np.ndarray, axis: int) -> np.ndarray:
    """Bilinear x2 along one axis with pixel-centre alignment (weights 3/4, 1/4; edges clamp)."""
    a = np.moveaxis(a, axis, -1)
    prev = np.concatenate([a[..., :1], a[..., :-1]], axis=-1)
    nxt = np.concatenate([a[..., 1:], a[..., -1:]], axis=-1)
    out = np.empty(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
    out[..., 0::2] = 0.75 * a + 0.25 * prev
    out[..., 1::2] = 0.75 * a + 0.25 * nxt
    return np.moveaxis(out, -1, axis)


def upsample_2x_bilinear(a: np.ndarray) -> np.ndarray:
    """20 m -> 10 m bilinear resampling over the last two axes, as GDAL does when a reader
    asks for a 20 m band on the 10 m grid (pixel centres at 1/4 and 3/4 of the coarse pixel)."""
    return _upsample_axis(_upsample_axis(a, -1), -2)


def block_mean(a: np.ndarray, k: int) -> np.ndarray:
    """Means of k x k blocks over the last two axes, from the top-left corner; a block the
    image edge cuts averages the pixels it holds (a coarse pixel over the tile's edge sees
    the part inside)."""
    *lead, h, w = a.shape
    hh, ww = -(-h // k) * k, -(-w // k) * k
    padded = np.full((*lead, hh, ww), np.nan, dtype=np.float64)
    padded[..., :h, :w] = a
    blocks = padded.reshape(*lead, hh // k, k, ww // k, k)
    return np.nanmean(blocks, axis=(-3, -1))
