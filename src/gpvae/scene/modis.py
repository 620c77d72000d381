"""MODIS Terra 16-day vegetation-index composites (MOD13Q1) over the demo scene, written as
AppEEARS GeoTIFFs in the native sinusoidal projection.

Composites start on days 1, 17, ... 353 of each year. Each MODIS pixel (231.66 m on the
global sinusoidal grid) is the mean of the 10 m pixels of the tile whose centres it holds
(its point spread; a pixel over the tile's edge averages the part inside). Within a period
a day is cloudy for a pixel with the day's cloud cover (gpvae.scene.clouds.cloud_cover); the
composite takes a random clear day of the pixel (maximum-value compositing picks clear days)
and is cloudy (reliability 3, cloud-contaminated values) when it has none. Reflectances are
those of the nearest Sentinel-2 bands (:data:`FROM_S2`) plus noise; NDVI and EVI are computed
from the pixel's reflectance, as MOD13 does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyproj
import rasterio.crs

import gpvae
from gpvae.io.appeears import write_appeears_composite
from gpvae.io.cube import pixel_centres
from gpvae.io.sensors import S2_BANDS
from gpvae.scene import clouds
from gpvae.scene.config import SceneConfig
from gpvae.scene.grid import tile_transform
from gpvae.scene.seeding import rng_for

log = logging.getLogger(__name__)

#: The MODIS sinusoidal projection (AppEEARS' PROJ definition) and its global grid at 250 m.
SINUSOIDAL = "+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R=6371007.181 +units=m +no_defs"
PIXEL = 231.65635826395825
ORIGIN = (-20015109.354, 10007554.677)
#: MOD13Q1 band <- the Sentinel-2 band of nearest spectral response.
FROM_S2 = {"RED": "B04", "NIR": "B8A", "BLUE": "B02", "MIR": "B12"}
PERIOD_DAYS = 16
NOISE = 0.004


def evi(nir: np.ndarray, red: np.ndarray, blue: np.ndarray) -> np.ndarray:
    """MODIS EVI = 2.5 (NIR - red) / (NIR + 6 red - 7.5 blue + 1)."""
    return 2.5 * (nir - red) / (nir + 6.0 * red - 7.5 * blue + 1.0)


def sinusoidal_cells(cfg: SceneConfig, tile: str
                     ) -> tuple[np.ndarray, int, int, rasterio.Affine]:
    """Index of the MODIS pixel holding each 10 m pixel (H * W,), the raster's shape and its
    transform (the MODIS pixels the tile touches)."""
    tcfg = cfg.tiles[tile]
    y, x = pixel_centres(tile_transform(tcfg), cfg.size_px, cfg.size_px)
    xx, yy = np.meshgrid(x, y)
    to_sin = pyproj.Transformer.from_crs(tcfg.crs, SINUSOIDAL, always_xy=True)
    sx, sy = to_sin.transform(xx.ravel(), yy.ravel())
    col = np.floor((np.asarray(sx) - ORIGIN[0]) / PIXEL).astype(np.int64)
    row = np.floor((ORIGIN[1] - np.asarray(sy)) / PIXEL).astype(np.int64)
    r0, c0 = row.min(), col.min()
    h, w = int(row.max() - r0 + 1), int(col.max() - c0 + 1)
    transform = rasterio.Affine(PIXEL, 0.0, ORIGIN[0] + c0 * PIXEL, 0.0, -PIXEL,
                                ORIGIN[1] - r0 * PIXEL)
    return (row - r0) * w + (col - c0), h, w, transform


def composite_starts(cfg: SceneConfig) -> np.ndarray:
    """First days (datetime64[D]) of the 16-day composites of the scene's years."""
    return np.concatenate([np.datetime64(f"{y}-01-01") + np.arange(0, 365, PERIOD_DAYS)
                           for y in cfg.years])


def write_modis(cfg: SceneConfig, tile: str, land: object, root: Path,
                reflectance: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Write the MOD13Q1 composites of a tile into ``root``; returns their first days.
    ``reflectance(times)``: noise-free 10 m surface reflectance (T, S2 band, H, W)."""
    cell, h, w, transform = sinusoidal_cells(cfg, tile)
    ncell = h * w
    count = np.bincount(cell, minlength=ncell).astype(np.float64)
    present = count > 0
    rng = rng_for(cfg.seed, tile, "modis")
    starts = composite_starts(cfg)
    index = [S2_BANDS.index(FROM_S2[b]) for b in FROM_S2]
    crs = rasterio.crs.CRS.from_proj4(SINUSOIDAL).to_wkt()
    log.info("%s: writing %d MOD13Q1 composites (%d x %d sinusoidal pixels)", tile,
             len(starts), w, h)
    for first in starts:
        days = first + np.arange(PERIOD_DAYS)
        doy = (days - days.astype("datetime64[Y]")).astype(int) + 1
        t = gpvae.to_days(days.astype("datetime64[ns]")) + 0.45
        cover = clouds.cloud_cover(doy, land.weather.rain_at(t), cfg.cloud_cover_mean, rng)
        clear = rng.random((ncell, PERIOD_DAYS)) >= cover[None, :]
        any_clear = clear.any(axis=1)
        pick = np.where(any_clear, np.argmax(clear * rng.random(clear.shape), axis=1),
                        rng.integers(PERIOD_DAYS, size=ncell))
        used = np.unique(pick[present])
        refl = reflectance(days[used].astype("datetime64[ns]")
                           + np.timedelta64(630, "m"))[:, index]  # Terra: ~10:30 UTC
        values = np.zeros((len(FROM_S2), ncell))
        for j, u in enumerate(used):
            sel = pick[cell] == u
            for b in range(len(FROM_S2)):
                values[b] += np.bincount(cell[sel], refl[j, b].ravel()[sel], minlength=ncell)
        values = values / np.maximum(count, 1.0)
        alpha = np.where(any_clear, 0.0, rng.uniform(0.5, 1.0, ncell))
        values = (1 - alpha) * values + alpha * 0.45 + rng.normal(0.0, NOISE, values.shape)
        red, nir, blue, mir = values
        bands = {"RED": red, "NIR": nir, "BLUE": blue, "MIR": mir,
                 "NDVI": np.clip((nir - red) / (nir + red), -1.0, 1.0),
                 "EVI": np.clip(evi(nir, red, blue), -1.0, 2.5)}
        reliability = np.where(any_clear, 0, 3)
        out = {b: np.where(present, v, np.nan).reshape(h, w) for b, v in bands.items()}
        write_appeears_composite(root, product="MOD13Q1", first_day=first, values=out,
                                 reliability=np.where(present, reliability, -1).reshape(h, w),
                                 crs=crs, transform=transform)
    return starts
