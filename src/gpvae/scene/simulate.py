"""Simulate one demo tile and write it in real product formats (Theia L2A, S1Tiling, GPKG)."""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Iterable
from pathlib import Path

import geopandas as gpd
import numpy as np
from scipy import sparse
from tqdm import tqdm

import gpvae
from gpvae.errors import InputError
from gpvae.io.atomic import atomic_path
from gpvae.io.cube import write_cube
from gpvae.io.s1tiling import write_s1tiling_image
from gpvae.io.sensors import S2_10M, S2_BANDS
from gpvae.io.theia import write_theia_product
from gpvae.scene import acquisitions, clouds, parcels, phenology, sar, spectra, weather
from gpvae.scene.config import SceneConfig
from gpvae.scene.grid import block_mean_2x2, tile_transform, upsample_2x_bilinear
from gpvae.scene.seeding import rng_for

log = logging.getLogger(__name__)

_I10 = [i for i, b in enumerate(S2_BANDS) if b in S2_10M]
_I20 = [i for i, b in enumerate(S2_BANDS) if b not in S2_10M]


@dataclasses.dataclass(frozen=True)
class Landscape:
    """Everything static about a tile: parcels, sub-pixel coverage, parcel traits, weather."""

    parcels: gpd.GeoDataFrame
    coverage: sparse.csr_matrix
    phenology: phenology.ParcelPhenology
    spectral: spectra.SpectralTraits
    sar: sar.SarTraits
    weather: weather.Weather
    texture: np.ndarray


def build_landscape(cfg: SceneConfig, tile: str) -> Landscape:
    """Parcels (+ a road pseudo-parcel), their traits, the regional weather and a static
    within-field vigour texture (Gaussian random field, std ~0.08)."""
    tcfg = cfg.tiles[tile]
    gdf = parcels.make_parcels(cfg, tile, list(cfg.tiles).index(tile))
    cov = parcels.coverage_matrix(gdf, tile_transform(tcfg), cfg.size_px)
    classes = np.append(gdf["class"].to_numpy(dtype=str), "road")
    seasons = range(cfg.years[0], cfg.years[-1] + 2)
    year_shift = {y: float(rng_for(cfg.seed, tile, "year_shift", y).normal(0.0, 5.0))
                  for y in seasons}
    ph = phenology.draw_phenology(classes, cfg.years, tcfg.phenology_shift_days, year_shift,
                                  rng_for(cfg.seed, tile, "phenology"))
    n = len(classes)
    rng = rng_for(cfg.seed, tile, "texture")
    texture = 0.08 * clouds.gaussian_field((cfg.size_px,) * 2, (2.0, 0.7), (1.0, 0.5), rng)
    return Landscape(parcels=gdf, coverage=cov.astype(np.float32), phenology=ph,
                     spectral=spectra.draw_spectral_traits(n, rng_for(cfg.seed, tile, "spec")),
                     sar=sar.draw_sar_traits(n, rng_for(cfg.seed, tile, "sar")),
                     weather=weather.simulate_weather(cfg, tile), texture=texture)


def surface_reflectance(land: Landscape, times: np.ndarray, size: int) -> np.ndarray:
    """Noise-free, cloud-free 10 m reflectance (T, B, H, W) float32: parcel mixtures spread
    over pixels by sub-pixel coverage (mixed border pixels) plus the vigour texture."""
    t = gpvae.to_days(times)
    fr = phenology.cover_fractions(land.phenology, t)
    refl, contrast = spectra.mixture(fr, land.spectral, land.weather.moisture_at(t))
    npar, nt, nb = refl.shape
    pix = land.coverage @ refl.reshape(npar, nt * nb).astype(np.float32)
    pix += land.texture.reshape(-1, 1) * (land.coverage @ contrast.reshape(npar, nt * nb)
                                          .astype(np.float32))
    out = pix.reshape(size, size, nt, nb).transpose(2, 3, 0, 1)
    return np.clip(out, 0.0005, 1.0).astype(np.float32)


def as_sensor_grid(refl10: np.ndarray) -> dict[str, np.ndarray]:
    """Band dict at native resolution: 10 m bands as is, 20 m bands as 2x2 block means."""
    out = {S2_BANDS[i]: refl10[i] for i in _I10}
    out.update({S2_BANDS[i]: block_mean_2x2(refl10[i]) for i in _I20})
    return out


def truth_cube(refl10: np.ndarray) -> np.ndarray:
    """Truth on the 10 m cube grid: 20 m bands block-averaged then bilinearly resampled back
    to 10 m, as a reader sees them."""
    out = refl10.copy()
    out[:, _I20] = upsample_2x_bilinear(block_mean_2x2(refl10[:, _I20]))
    return out


def _progress(iterable: Iterable[int], desc: str) -> Iterable[int]:
    """tqdm progress bar, shown only on a terminal."""
    return tqdm(iterable, desc=desc, disable=not sys.stderr.isatty(), leave=False)


def write_s2(cfg: SceneConfig, tile: str, land: Landscape, root: Path
             ) -> tuple[acquisitions.Acquisitions, np.ndarray]:
    """Write the Theia L2A products of a tile; return the acquisitions and the truth cube."""
    tcfg = cfg.tiles[tile]
    size, transform = cfg.size_px, tile_transform(tcfg)
    acq = acquisitions.s2_acquisitions(cfg, tile)
    refl = surface_reflectance(land, acq.times, size)
    t = gpvae.to_days(acq.times)
    doy = (acq.days - acq.days.astype("datetime64[Y]")).astype(int) + 1
    crng = rng_for(cfg.seed, tile, "clouds")
    cover = clouds.cloud_cover(doy, land.weather.rain_at(t), cfg.cloud_cover_mean, crng)
    nrng = rng_for(cfg.seed, tile, "s2_noise")
    erng = rng_for(cfg.seed, tile, "swath")
    hrng = rng_for(cfg.seed, tile, "haze")
    haze = clouds.haze_opacity(len(acq), cfg.haze_mean, hrng)
    log.info("%s: writing %d Sentinel-2 products (mean cloud cover %.2f)", tile, len(acq),
             float(cover.mean()) if len(acq) else 0.0)
    for k in _progress(range(len(acq)), f"{tile} S2"):
        layer = clouds.cloud_layer(float(cover[k]), size, float(doy[k]), crng)
        clm = clouds.clm_byte(layer, cfg.mask_miss_fraction)
        observed = clouds.apply_clouds(refl[k], layer, float(crng.uniform(0.8, 1.1)))
        observed = clouds.apply_haze(observed, float(haze[k]), hrng)
        edg = (clouds.swath_edge(size, erng) if erng.random() < cfg.s2_partial_swath_fraction
               else np.zeros((size, size), bool))
        bands = as_sensor_grid(observed)
        edg20 = block_mean_2x2(edg.astype(np.float32)) > 0
        for b, arr in bands.items():
            noisy = np.clip(arr + nrng.normal(0.0, cfg.noise_s2, arr.shape), 0.0, 1.0)
            bands[b] = np.where(edg if arr.shape == edg.shape else edg20, np.nan,
                                noisy).astype(np.float32)
        write_theia_product(root, tile=tile, acquired=acq.times[k],
                            platform=str(acq.platform[k]), reflectance=bands,
                            clm_r1=np.where(edg, 0, clm).astype(np.uint8),
                            edg_r1=edg.astype(np.uint8), crs=tcfg.crs, transform=transform)
    return acq, truth_cube(refl)


def write_s1(cfg: SceneConfig, tile: str, land: Landscape, root: Path,
             s2_days: np.ndarray) -> list[acquisitions.Acquisitions]:
    """Write the S1Tiling VV/VH images of both orbit directions of a tile."""
    tcfg = cfg.tiles[tile]
    size, transform = cfg.size_px, tile_transform(tcfg)
    root.mkdir(parents=True, exist_ok=True)
    texture = np.exp(0.12 * clouds.gaussian_field(
        (size, size), (1.5, 0.5), (1.0, 0.5), rng_for(cfg.seed, tile, "s1_texture")))
    series = []
    for direction in ("ASC", "DES"):
        acq = acquisitions.s1_acquisitions(cfg, tile, direction, s2_days)
        series.append(acq)
        t = gpvae.to_days(acq.times)
        fr = phenology.cover_fractions(land.phenology, t)
        moisture = land.weather.moisture_at(t)
        wind = rng_for(cfg.seed, tile, "wind", direction).lognormal(0.0, 0.6, len(t))
        srng = rng_for(cfg.seed, tile, "speckle", direction)
        log.info("%s: writing %d Sentinel-1 %s dates (VV, VH)", tile, len(acq), direction)
        for pol in ("VV", "VH"):
            sig = sar.parcel_sigma0(land.phenology, fr, moisture,
                                    land.spectral.moisture_response, land.sar, direction, pol,
                                    wind)
            pix = (land.coverage @ sig.astype(np.float32)).T.reshape(len(t), size, size)
            for k in _progress(range(len(acq)), f"{tile} S1 {direction} {pol}"):
                img = sar.speckle(pix[k] * texture, cfg.s1_enl, srng).astype(np.float32)
                write_s1tiling_image(root, tile=tile, acquired=acq.times[k], platform="s1a",
                                     orbit_direction=direction,
                                     relative_orbit=int(acq.relative_orbit[k]),
                                     polarisation=pol.lower(), sigma0=img, crs=tcfg.crs,
                                     transform=transform)
    return series


def simulate_tile(cfg: SceneConfig, tile: str, out_dir: Path) -> Path:
    """Write out_dir/{S2/<Theia products>, S1/<S1Tiling tifs>, parcels.gpkg, truth_S2.nc}
    atomically (built in a temporary folder, renamed on success); return ``out_dir``."""
    if tile not in cfg.tiles:
        raise InputError(f"tile {tile} is not configured in the scene", field="scene.tiles",
                         fix=f"add {tile} under scene.tiles or use one of {list(cfg.tiles)}")
    out_dir = Path(out_dir)
    tcfg = cfg.tiles[tile]
    log.info("%s: simulating %s, %d x %d px, years %s", tile, tcfg.crs, cfg.size_px,
             cfg.size_px, list(cfg.years))
    with atomic_path(out_dir, directory=True) as tmp:
        land = build_landscape(cfg, tile)
        land.parcels.to_file(tmp / "parcels.gpkg", layer="parcels", driver="GPKG",
                             engine="pyogrio")
        s2, truth = write_s2(cfg, tile, land, tmp / "S2")
        write_s1(cfg, tile, land, tmp / "S1", s2.days)
        write_cube(tmp / "truth_S2.nc", data=truth,
                   valid=np.ones((len(s2), cfg.size_px, cfg.size_px), np.uint8),
                   times=s2.times, bands=list(S2_BANDS), crs=tcfg.crs,
                   transform=tile_transform(tcfg), sensor="S2", tile=tile,
                   radiometry="surface_reflectance",
                   per_date={"platform": s2.platform, "orbit_direction": s2.orbit_direction,
                             "relative_orbit": s2.relative_orbit},
                   quality=None,
                   attrs={"reader": "gpvae.scene (simulated truth)", "seed": cfg.seed,
                          "description": "noise-free, cloud-free reflectance; 20 m bands are "
                          "2x2 means resampled bilinearly to 10 m"})
    log.info("%s: done -> %s", tile, out_dir)
    return out_dir
