"""Input fixtures for the config/examples runs: one small, realistic product set per format.

Every builder encodes the same simulated truth (:class:`SceneSeries`: a 32 x 32 px tile of
the demo landscape, gpvae.scene, over ~20 dates of one year, with cloud patches flagged in a
Sen2Cor-like SCL layer) in one producer's format, so a model has something to learn:

- :func:`write_sen2cor_set`: Sen2Cor L2A SAFE folders and ``.SAFE.zip`` (baseline keyed offset);
- :func:`write_stac_catalog`: a static STAC catalog of COGs with Earth-search asset keys;
- :func:`write_generic_cube`: a FORCE-like netCDF (int16 DN, QAI bit variable) and a dB S1 cube;
- :func:`write_parcels` / :func:`write_grid_parcels`: parcel GeoPackages (3-4 classes).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from pathlib import Path

import affine
import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
import xarray as xr

import gpvae
from gpvae.io.sen2cor import write_sen2cor_product
from gpvae.io.sensors import S2_BANDS
from gpvae.io.stac import EARTH_SEARCH_KEYS
from gpvae.scene import phenology, sar
from gpvae.scene.config import scene_config
from gpvae.scene.grid import block_mean_2x2, tile_transform
from gpvae.scene.parcels import allocate_classes, voronoi_fields
from gpvae.scene.simulate import Landscape, build_landscape, surface_reflectance

TILE = "T31TCJ"
#: Four crop / land-cover classes of the fixtures (enough for a classification check).
CLASS_WEIGHTS = {"winter_cereal": 0.3, "maize": 0.3, "grassland": 0.2, "deciduous_forest": 0.2}
#: Sen2Cor SCL codes the fixtures use: vegetation, cloud high probability.
SCL_VEGETATION, SCL_CLOUD = 4, 9
#: Processing baseline 04.00 (BOA offset -1000) was introduced on 2022-01-25.
BASELINE_04_START = np.datetime64("2022-01-25")


@dataclasses.dataclass(frozen=True)
class SceneSeries:
    """Simulated S2 reflectance (T, B, H, W) on a 10 m grid, SCL (T, H/2, W/2) at 20 m,
    S1 linear sigma0 per polarisation (T1, H, W), and the parcels they come from."""

    times: np.ndarray
    reflectance: np.ndarray
    scl20: np.ndarray
    s1_times: np.ndarray
    sigma0: dict[str, np.ndarray]
    parcels: gpd.GeoDataFrame
    crs: str
    transform: affine.Affine

    @property
    def size(self) -> int:
        return self.reflectance.shape[-1]

    def scl10(self) -> np.ndarray:
        """SCL on the 10 m grid (nearest: each 20 m pixel repeated 2 x 2)."""
        return np.kron(self.scl20, np.ones((1, 2, 2), np.uint8))

    def bands_native(self, t: int) -> dict[str, np.ndarray]:
        """Reflectance of date ``t`` per band at its native resolution (20 m: 2 x 2 means)."""
        out = {}
        for i, band in enumerate(S2_BANDS):
            r = self.reflectance[t, i]
            out[band] = r if band in ("B02", "B03", "B04", "B08") else block_mean_2x2(r)
        return out


def cloud_patches(n_dates: int, size20: int, rng: np.random.Generator,
                  fraction: float = 0.35) -> np.ndarray:
    """SCL (T, size20, size20): vegetation, with a random rectangular cloud on ``fraction``
    of the dates (a quarter to a half of the tile)."""
    scl = np.full((n_dates, size20, size20), SCL_VEGETATION, np.uint8)
    for t in np.flatnonzero(rng.random(n_dates) < fraction):
        h, w = rng.integers(size20 // 2, size20, 2)
        r0, c0 = rng.integers(0, size20 - h + 1), rng.integers(0, size20 - w + 1)
        scl[t, r0:r0 + h, c0:c0 + w] = SCL_CLOUD
    return scl


def s1_sigma0(land: Landscape, times: np.ndarray, size: int, seed: int,
              direction: str = "DES") -> dict[str, np.ndarray]:
    """Speckled linear sigma0 (T, H, W) per polarisation (water-cloud model of gpvae.scene)."""
    t = gpvae.to_days(times)
    fr = phenology.cover_fractions(land.phenology, t)
    moisture = land.weather.moisture_at(t)
    wind = np.random.default_rng(seed).lognormal(0.0, 0.6, len(t))
    rng = np.random.default_rng(seed + 1)
    out = {}
    for pol in ("VV", "VH"):
        sig = sar.parcel_sigma0(land.phenology, fr, moisture, land.spectral.moisture_response,
                                land.sar, direction, pol, wind)
        pix = (land.coverage @ sig.astype(np.float32)).T.reshape(len(t), size, size)
        out[pol] = sar.speckle(pix, 4.5, rng).astype(np.float32)
    return out


def scene_series(*, seed: int = 5, size: int = 32, n_dates: int = 20, year: int = 2022,
                 noise: float = 0.005) -> SceneSeries:
    """The simulated truth every fixture encodes: ``n_dates`` S2 dates (and S1 every 12 days)
    over ``year``; cloudy pixels get bright, flat reflectance."""
    cfg = scene_config({"seed": seed, "years": [year], "size_px": size, "min_parcels": 12,
                        "tiles": {TILE: {"class_weights": CLASS_WEIGHTS}}})
    land = build_landscape(cfg, TILE)
    start = np.datetime64(f"{year}-01-10")
    step = (365 - 20) // n_dates
    days = start + np.arange(n_dates) * step * np.timedelta64(1, "D")
    times = (days.astype("datetime64[ns]") + np.timedelta64(38_000, "s")).astype("datetime64[ns]")
    refl = surface_reflectance(land, times, size)
    rng = np.random.default_rng(seed)
    refl = np.clip(refl + rng.normal(0.0, noise, refl.shape), 0.001, 1.0).astype(np.float32)
    scl20 = cloud_patches(n_dates, size // 2, rng)
    cloudy = np.kron(scl20 == SCL_CLOUD, np.ones((1, 2, 2), bool))
    bright = rng.uniform(0.3, 0.5, (n_dates, 1, 1, 1)).astype(np.float32)
    refl = np.where(cloudy[:, None], bright, refl)
    s1_days = np.arange(np.datetime64(f"{year}-01-04"), np.datetime64(f"{year + 1}-01-01"),
                        np.timedelta64(12, "D"))
    s1_times = (s1_days.astype("datetime64[ns]") + np.timedelta64(21_000, "s"))
    return SceneSeries(times=times, reflectance=refl, scl20=scl20, s1_times=s1_times,
                       sigma0=s1_sigma0(land, s1_times, size, seed),
                       parcels=land.parcels, crs=cfg.tiles[TILE].crs,
                       transform=tile_transform(cfg.tiles[TILE]))


def write_parcels(path: Path, series: SceneSeries) -> Path:
    """The series' parcels as a GeoPackage (``parcel_id``, ``class``), reprojected to WGS84
    so the reader's reprojection to the tile CRS is exercised."""
    path.parent.mkdir(parents=True, exist_ok=True)
    series.parcels.to_crs("EPSG:4326").to_file(path, layer="parcels", driver="GPKG",
                                               engine="pyogrio")
    return path


def write_grid_parcels(path: Path, *, bounds: tuple[float, float, float, float], crs: str,
                       n: int = 16, seed: int = 0,
                       classes: tuple[str, ...] = ("wheat", "maize", "grassland")) -> Path:
    """Voronoi fields over ``bounds`` (xmin, ymin, xmax, ymax) with 3-4 classes, every class
    present (for real cubes that come without parcels)."""
    rng = np.random.default_rng(seed)
    cells = voronoi_fields(bounds, n, rng)
    names = allocate_classes(n, {c: 1.0 for c in classes}, rng)
    names[: len(classes)] = classes  # every class at least once
    geoms = [shapely.buffer(c, -5.0, join_style="mitre") for c in cells]
    gdf = gpd.GeoDataFrame({"field_id": np.arange(1, n + 1, dtype=np.int64),
                            "crop": names.astype(str)}, geometry=geoms, crs=crs)
    path.parent.mkdir(parents=True, exist_ok=True)
    gdf.to_file(path, layer="parcels", driver="GPKG", engine="pyogrio")
    return path


def write_sen2cor_set(root: Path, series: SceneSeries) -> Path:
    """One Sen2Cor L2A SAFE per date in ``root``: baseline 03.01 before 2022-01-25 (no BOA
    offset), 05.09 after (offset -1000); every third product as a ``.SAFE.zip``."""
    for t, when in enumerate(series.times):
        baseline = "05.09" if when >= BASELINE_04_START else "03.01"
        write_sen2cor_product(root, tile=TILE, acquired=when,
                              platform="SENTINEL2A" if t % 2 else "SENTINEL2B",
                              reflectance=series.bands_native(t), scl=series.scl20[t],
                              crs=series.crs, transform=series.transform, baseline=baseline,
                              zipped=t % 3 == 2)
    return root


def _write_cog(path: Path, array: np.ndarray, crs: str, transform: affine.Affine) -> None:
    with rasterio.open(path, "w", driver="COG", height=array.shape[0], width=array.shape[1],
                       count=1, dtype=array.dtype.name, crs=crs, transform=transform,
                       BLOCKSIZE=16) as dst:
        dst.write(array, 1)


def write_stac_catalog(root: Path, series: SceneSeries) -> Path:
    """A self-contained static STAC catalog, one Earth-search-like item per date (COG per
    band, DN = reflectance * 10000 + 1000 for baseline >= 04.00; the item's wrong
    ``boa_offset_applied`` flag must be ignored); returns ``catalog.json``."""
    import pystac

    root.mkdir(parents=True, exist_ok=True)
    cat = pystac.Catalog(id="gpvae-example", description="small Sentinel-2 L2A COGs")
    zone, band_letter, square = TILE[1:3], TILE[3], TILE[4:]
    for t, when in enumerate(series.times):
        day = str(np.datetime64(when, "D"))
        baseline = "05.09" if when >= BASELINE_04_START else "03.01"
        add = 1000 if baseline >= "04.00" else 0
        item_id = f"S2B_{TILE[1:]}_{day.replace('-', '')}_0_L2A"
        folder = root / item_id
        folder.mkdir()
        item = pystac.Item(
            id=item_id, geometry=None, bbox=None, collection="sentinel-2-l2a",
            datetime=dt.datetime.fromisoformat(str(np.datetime64(when, "s")) + "+00:00"),
            properties={"platform": "sentinel-2b", "s2:processing_baseline": baseline,
                        "earthsearch:boa_offset_applied": True, "mgrs:utm_zone": int(zone),
                        "mgrs:latitude_band": band_letter, "mgrs:grid_square": square,
                        "sat:relative_orbit": 51})
        layers = {**series.bands_native(t), "SCL": series.scl20[t]}
        for band, values in layers.items():
            res = 10 if values.shape[-1] == series.size else 20
            if band == "SCL":
                arr = values.astype(np.uint8)
            else:
                arr = np.clip(np.round(values * 10000 + add), 1, 65535).astype(np.uint16)
            _write_cog(folder / f"{band}.tif", arr, series.crs,
                       series.transform * affine.Affine.scale(res / 10))
            item.add_asset(EARTH_SEARCH_KEYS[band], pystac.Asset(
                href=f"./{band}.tif", media_type=pystac.MediaType.COG, roles=["data"]))
        cat.add_item(item)
    return save_catalog(cat, root)


def save_catalog(cat, root: Path) -> Path:  # cat: a pystac.Catalog
    """Save a static, self-contained catalog whose assets sit in each item's folder."""
    import pystac

    cat.normalize_hrefs(str(root))
    for item in cat.get_items():
        for asset in item.assets.values():
            asset.href = os.path.join(os.path.dirname(item.get_self_href()),
                                      os.path.basename(asset.href))
    cat.make_all_asset_hrefs_relative()
    cat.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return root / "catalog.json"


#: FORCE-like QAI bits of the generic cube: 0 no data, 1 cloud, 3 cloud shadow.
QAI_NODATA, QAI_CLOUD, QAI_SHADOW = 0, 1, 3
#: Generic cube variable of each S2 band (FORCE-like names, scale 1e-4, fill -9999).
GENERIC_S2_VARS = {"B02": "BLUE", "B03": "GREEN", "B04": "RED", "B05": "REDEDGE1",
                   "B06": "REDEDGE2", "B07": "REDEDGE3", "B08": "BROADNIR", "B8A": "NIR",
                   "B11": "SWIR1", "B12": "SWIR2"}


def _grid_coords(series: SceneSeries) -> dict[str, np.ndarray]:
    a = series.transform
    return {"y": a.f + a.e * (np.arange(series.size) + 0.5),
            "x": a.c + a.a * (np.arange(series.size) + 0.5)}


def write_generic_cube(path: Path, series: SceneSeries) -> Path:
    """FORCE-like S2 cube: int16 DN (reflectance * 10000, fill -9999) per band on
    (date, y, x), a ``QAI`` uint16 bit variable and a ``spatial_ref`` grid mapping."""
    refl = series.reflectance
    cloudy = series.scl10() == SCL_CLOUD
    qai = (cloudy.astype(np.uint16) << QAI_CLOUD)
    coords = {"date": series.times, **_grid_coords(series)}
    attrs = {"grid_mapping": "spatial_ref"}
    data = {}
    for i, band in enumerate(S2_BANDS):
        dn = np.round(refl[:, i] * 10000).astype(np.int16)
        dn[0, :2, :] = -9999  # a no-data strip on the first date
        data[GENERIC_S2_VARS[band]] = (("date", "y", "x"), dn, attrs)
    qai[0, :2, :] |= 1 << QAI_NODATA
    data["QAI"] = (("date", "y", "x"), qai)
    ds = xr.Dataset(data, coords=coords)
    ds["spatial_ref"] = xr.DataArray(0, attrs={"crs_wkt": rasterio.crs.CRS.from_string(
        series.crs).to_wkt()})
    encoding = {v: {"_FillValue": -9999, "zlib": True} for v in GENERIC_S2_VARS.values()}
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path, encoding=encoding)
    return path


def write_generic_s1_cube(path: Path, series: SceneSeries) -> Path:
    """S1 cube in dB (float32 ``VV_dB``, ``VH_dB`` on (time, y, x), NaN = no data), with a
    ``spatial_ref`` grid mapping: one orbit direction (descending)."""
    coords = {"time": pd.DatetimeIndex(series.s1_times), **_grid_coords(series)}
    attrs = {"grid_mapping": "spatial_ref", "units": "dB"}
    ds = xr.Dataset({f"{pol}_dB": (("time", "y", "x"),
                                   (10 * np.log10(v)).astype(np.float32), attrs)
                     for pol, v in series.sigma0.items()}, coords=coords)
    ds["spatial_ref"] = xr.DataArray(0, attrs={"crs_wkt": rasterio.crs.CRS.from_string(
        series.crs).to_wkt()})
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path)
    return path


# ---- a multi-year Landsat 8/9 Collection 2 Level-2 cube (any sensor, any band) -------------
#: Landsat SR band <- the simulated Sentinel-2 band of the same spectral region.
LANDSAT_FROM_S2 = {"SR_B1": "B02", "SR_B2": "B02", "SR_B3": "B03", "SR_B4": "B04",
                   "SR_B5": "B8A", "SR_B6": "B11", "SR_B7": "B12"}
#: QA_PIXEL bits (USGS C2 L2): 0 fill, 1 dilated cloud, 3 cloud, 4 cloud shadow.
QA_FILL, QA_DILATED, QA_CLOUD, QA_SHADOW = 0, 1, 3, 4
#: Landsat C2 L2 surface reflectance encoding: reflectance = DN * 2.75e-5 - 0.2, DN 0 = fill.
LANDSAT_SCALE, LANDSAT_OFFSET = 2.75e-5, -0.2


@dataclasses.dataclass(frozen=True)
class LandsatSeries:
    """Two years of simulated Landsat reflectance (T, B, H, W), its cloud and saturation
    flags (T, H, W), and the parcels."""

    times: np.ndarray
    reflectance: np.ndarray
    cloud: np.ndarray
    saturated: np.ndarray
    parcels: gpd.GeoDataFrame
    crs: str
    transform: affine.Affine


def landsat_series(*, seed: int = 11, size: int = 32, years: tuple[int, ...] = (2021, 2022),
                   step_days: int = 16, noise: float = 0.005) -> LandsatSeries:
    """A 16-day Landsat revisit over ``years`` of the demo landscape (one landscape, several
    seasons), with cloud patches (QA_PIXEL) and a saturated patch on some dates (QA_RADSAT)."""
    cfg = scene_config({"seed": seed, "years": list(years), "size_px": size, "min_parcels": 12,
                        "tiles": {TILE: {"class_weights": CLASS_WEIGHTS}}})
    land = build_landscape(cfg, TILE)
    days = np.arange(np.datetime64(f"{years[0]}-01-05"), np.datetime64(f"{years[-1]}-12-31"),
                     np.timedelta64(step_days, "D"))
    times = (days.astype("datetime64[ns]") + np.timedelta64(37_800, "s"))
    s2 = surface_reflectance(land, times, size)
    rng = np.random.default_rng(seed)
    refl = np.stack([s2[:, S2_BANDS.index(b)] for b in LANDSAT_FROM_S2.values()], axis=1)
    refl = np.clip(refl + rng.normal(0.0, noise, refl.shape), 0.001, 1.0).astype(np.float32)
    cloud = np.kron(cloud_patches(len(times), size // 2, rng) == SCL_CLOUD,
                    np.ones((1, 2, 2), bool))
    refl = np.where(cloud[:, None], rng.uniform(0.3, 0.5, (len(times), 1, 1, 1)), refl)
    saturated = np.zeros_like(cloud)
    saturated[1::5, : size // 4, : size // 4] = True  # a saturated corner on every 5th date
    refl = np.where(saturated[:, None], 1.55, refl).astype(np.float32)
    return LandsatSeries(times=times, reflectance=refl, cloud=cloud, saturated=saturated,
                         parcels=land.parcels, crs=cfg.tiles[TILE].crs,
                         transform=tile_transform(cfg.tiles[TILE]))


def write_landsat_cube(path: Path, series: LandsatSeries) -> Path:
    """A Landsat C2 L2 cube as an openEO / STAC stack would give it: uint16 DN per band
    (``SR_B1`` ... ``SR_B7``, DN 0 = fill), ``QA_PIXEL`` (cloud bits) and ``QA_RADSAT``
    (saturation bit per band), a ``spatial_ref`` grid mapping."""
    dn = np.round((series.reflectance - LANDSAT_OFFSET) / LANDSAT_SCALE).astype(np.uint16)
    qa = (series.cloud.astype(np.uint16) << QA_CLOUD) | (series.cloud.astype(np.uint16)
                                                       << QA_DILATED)
    radsat = np.where(series.saturated, np.uint16(1 << 3), np.uint16(0))  # band 4 saturated
    size = series.reflectance.shape[-1]
    a = series.transform
    coords = {"time": series.times, "y": a.f + a.e * (np.arange(size) + 0.5),
              "x": a.c + a.a * (np.arange(size) + 0.5)}
    attrs = {"grid_mapping": "spatial_ref"}
    data = {b: (("time", "y", "x"), dn[:, i], attrs) for i, b in enumerate(LANDSAT_FROM_S2)}
    data["QA_PIXEL"] = (("time", "y", "x"), qa, attrs)
    data["QA_RADSAT"] = (("time", "y", "x"), radsat.astype(np.uint16), attrs)
    ds = xr.Dataset(data, coords=coords)
    ds["spatial_ref"] = xr.DataArray(0, attrs={"crs_wkt": rasterio.crs.CRS.from_string(
        series.crs).to_wkt()})
    encoding = {b: {"_FillValue": 0, "zlib": True} for b in LANDSAT_FROM_S2}
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path, encoding=encoding)
    return path


def write_landsat_parcels(path: Path, series: LandsatSeries) -> Path:
    """The Landsat series' parcels as a GeoPackage (``parcel_id``, ``class``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    series.parcels.to_file(path, layer="parcels", driver="GPKG", engine="pyogrio")
    return path
