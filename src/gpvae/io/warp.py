"""Warp one raster band of a product onto a target grid (any CRS -> the tile's grid).

Readers of products delivered on their own grid (Landsat WRS-2 scenes in UTM, MODIS in the
sinusoidal projection) call :func:`warp_band` with the tile grid of the sensor's resolution
(:func:`gpvae.io.coarse.coarse_grid`): values with ``average`` (each target pixel is the
area-weighted mean of the source pixels it covers, no-data excluded), quality codes with
``nearest`` or ``max`` (the worst code covered).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject

from gpvae.io.coarse import Grid
from gpvae.io.failures import reading


def warp_band(path: str | Path, grid: Grid, *, resampling: Resampling, dtype: str,
              src_nodata: float | None, dst_nodata: float) -> np.ndarray:
    """Band 1 of ``path`` on ``grid`` (dtype ``dtype``; ``dst_nodata`` where no source pixel
    with data covers a target pixel)."""
    crs, transform, h, w = grid
    out = np.full((h, w), dst_nodata, dtype=dtype)
    with reading(Path(str(path)), what="GeoTIFF raster"):
        with rasterio.open(str(path)) as src:
            reproject(source=rasterio.band(src, 1), destination=out,
                      src_transform=src.transform, src_crs=src.crs,
                      src_nodata=src_nodata if src_nodata is not None else src.nodata,
                      dst_transform=transform, dst_crs=crs, dst_nodata=dst_nodata,
                      resampling=resampling)
    return out
