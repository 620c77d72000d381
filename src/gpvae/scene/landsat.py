"""Landsat 8 and 9 over the demo scene, written as Collection 2 Level-2 products.

Each satellite revisits every 16 days, Landsat 9 eight days after Landsat 8 (one WRS-2 path
per tile), at ~10:30 UTC. A date gets its own clouds and shadows (the S2 cloud model,
gpvae.scene.clouds) on the 10 m surface reflectance, which is mapped to the OLI bands
(:data:`FROM_S2`); the sensor's point spread makes a 30 m pixel the mean of the 3 x 3 10 m
pixels it covers (the pixels inside the tile at its edge); then noise. QA_PIXEL flags cloud
(bit 3) where the 30 m cloud opacity is at least the S2 mask's threshold, dilated cloud
(bit 1) around it, cloud shadow (bit 4), clear (bit 6) elsewhere; thin clouds below the
threshold stay unflagged (residual contamination). Products cover the tile plus a two-pixel
fill margin, on the tile-aligned 30 m UTM grid.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import affine
import numpy as np
from scipy import ndimage

import gpvae
from gpvae.io.landsat import write_landsat_product
from gpvae.io.sensors import S2_BANDS
from gpvae.scene import clouds
from gpvae.scene.acquisitions import Acquisitions, _calendar_days
from gpvae.scene.config import SceneConfig
from gpvae.scene.grid import block_mean, tile_transform
from gpvae.scene.seeding import rng_for

log = logging.getLogger(__name__)

#: OLI band <- the Sentinel-2 band of nearest spectral response (coastal aerosol from blue).
FROM_S2 = {"SR_B1": "B02", "SR_B2": "B02", "SR_B3": "B03", "SR_B4": "B04", "SR_B5": "B8A",
           "SR_B6": "B11", "SR_B7": "B12"}
#: Revisit of each satellite (days); Landsat 9 is half a cycle after Landsat 8.
REVISIT_DAYS = 16
#: 10 m pixels per 30 m pixel side; fill margin of a product around the tile (30 m pixels).
FACTOR, MARGIN = 3, 2
#: Additive reflectance noise of the 30 m pixels.
NOISE = 0.004
#: WRS-2 path and row written in the product ids.
WRS = (199, 30)


def landsat_acquisitions(cfg: SceneConfig, tile: str) -> Acquisitions:
    """Landsat 8 every 16 days from a per-tile offset, Landsat 9 eight days later."""
    rng = rng_for(cfg.seed, tile, "landsat_dates")
    offset = int(rng.integers(REVISIT_DAYS))
    days, platform = [], []
    for k, name in ((0, "LANDSAT_8"), (REVISIT_DAYS // 2, "LANDSAT_9")):
        d = _calendar_days(cfg.years, (offset + k) % REVISIT_DAYS, REVISIT_DAYS)
        days.append(d)
        platform += [name] * len(d)
    days = np.concatenate(days)
    order = np.argsort(days, kind="stable")
    clock = rng.uniform(10.3 * 3600, 10.6 * 3600) + rng.uniform(-20, 20, len(days))
    times = (days[order].astype("datetime64[ns]")
             + np.round(clock * 1e3).astype("timedelta64[ms]")).astype("datetime64[ns]")
    return Acquisitions(times=times, platform=np.asarray(platform)[order].astype(str),
                        orbit_direction=np.full(len(days), "", dtype=str),
                        relative_orbit=np.full(len(days), WRS[0], np.int16))


def qa_pixel(alpha30: np.ndarray, shadow30: np.ndarray) -> np.ndarray:
    """QA_PIXEL bits of 30 m cloud opacity and shadow strength (see the module docstring)."""
    cloud = alpha30 >= clouds.THICK
    dilated = ndimage.binary_dilation(cloud, structure=np.ones((3, 3), bool)) & ~cloud
    shadow = (shadow30 >= clouds.SHADOW_FLAG) & ~cloud
    qa = np.zeros(alpha30.shape, np.uint16)
    qa[cloud] |= (1 << 3) | (3 << 8)  # cloud, high cloud confidence
    qa[dilated] |= 1 << 1
    qa[shadow] |= (1 << 4) | (3 << 10)
    qa[qa == 0] = (1 << 6) | (1 << 8)  # clear, low cloud confidence
    return qa


def with_margin(a: np.ndarray, fill: float) -> np.ndarray:
    """``a`` (..., h, w) inside a frame of :data:`MARGIN` pixels of ``fill``."""
    out = np.full((*a.shape[:-2], a.shape[-2] + 2 * MARGIN, a.shape[-1] + 2 * MARGIN), fill,
                  dtype=a.dtype)
    out[..., MARGIN:-MARGIN, MARGIN:-MARGIN] = a
    return out


def write_landsat(cfg: SceneConfig, tile: str, land: object, root: Path,
                  reflectance: Callable[[np.ndarray], np.ndarray]) -> Acquisitions:
    """Write the Landsat products of a tile into ``root``; ``reflectance(times)`` gives the
    noise-free 10 m surface reflectance (T, S2 band, H, W) of the landscape ``land``."""
    tcfg = cfg.tiles[tile]
    size = cfg.size_px
    acq = landsat_acquisitions(cfg, tile)
    doy = (acq.days - acq.days.astype("datetime64[Y]")).astype(int) + 1
    weather = land.weather
    crng = rng_for(cfg.seed, tile, "landsat_clouds")
    nrng = rng_for(cfg.seed, tile, "landsat_noise")
    cover = clouds.cloud_cover(doy, weather.rain_at(gpvae.to_days(acq.times)),
                               cfg.cloud_cover_mean, crng)
    transform = tile_transform(tcfg) @ affine.Affine.scale(FACTOR) @ affine.Affine.translation(
        -MARGIN, -MARGIN)
    index = [S2_BANDS.index(FROM_S2[b]) for b in FROM_S2]
    log.info("%s: writing %d Landsat 8/9 products", tile, len(acq))
    for k in range(len(acq)):
        refl = reflectance(acq.times[k:k + 1])[0]
        layer = clouds.cloud_layer(float(cover[k]), size, float(doy[k]), crng)
        observed = clouds.apply_clouds(refl, layer, float(crng.uniform(0.8, 1.1)))
        coarse = block_mean(observed[index], FACTOR)
        coarse = coarse + nrng.normal(0.0, NOISE, coarse.shape)
        qa = qa_pixel(block_mean(layer.alpha, FACTOR), block_mean(layer.shadow, FACTOR))
        bands = {b: with_margin(np.clip(coarse[i], -0.19, 1.5), np.nan)
                 for i, b in enumerate(FROM_S2)}
        write_landsat_product(root, spacecraft=int(acq.platform[k][-1]), wrs_path=WRS[0],
                              wrs_row=WRS[1], acquired=acq.times[k], reflectance=bands,
                              qa_pixel=with_margin(qa, 1), qa_radsat=with_margin(
                                  np.zeros_like(qa), 0), crs=tcfg.crs, transform=transform)
    return acq

