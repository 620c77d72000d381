"""MODIS vegetation-index composites as delivered by NASA AppEEARS (area sample, GeoTIFF).

AppEEARS writes one GeoTIFF per layer and composite:
``<product>.<version>_<layer>_doy<YYYYDDD>_aid<NNNN>.tif``, e.g.
``MOD13Q1.061__250m_16_days_NDVI_doy2022001_aid0001.tif`` (the layer names of MOD13Q1 start
with an underscore; ``.aid0001`` is also accepted). ``doy`` is the first day of the 16-day
composite; Terra (MOD13Q1) and Aqua (MYD13Q1) composites are 8 days apart and both read as
the MOD13Q1 sensor. Layers: NDVI, EVI (int16, x 1e-4, fill -3000), red, NIR, blue and MIR
reflectance (int16, x 1e-4, fill -1000) and the pixel reliability (-1 fill, 0 good,
1 marginal, 2 snow / ice, 3 cloudy). In the native sinusoidal projection (~231.66 m) or a
projection chosen in the request; the reader warps every layer onto the tile's grid at the
sensor's resolution (250 m, aligned with the tile's 10 m grid): values by area-weighted
average, the reliability by its worst (largest) code covered. A composite's date is the
middle of its period (first day + 8 days): each pixel's own day (layer
``composite_day_of_the_year``) is within 8 days of it. HDF4 files are not read (the pip
builds of GDAL have no HDF4 driver): request GeoTIFF output.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import numpy as np
from rasterio.enums import Resampling
from tqdm.auto import tqdm

from gpvae.errors import InputError
from gpvae.io.coarse import Grid, coarse_grid
from gpvae.io.cube import cube_grid, cube_writer, open_cube
from gpvae.io.generic import merge_first_valid
from gpvae.io.geotiff import raster_grid, write_geotiff
from gpvae.io.quality import MaskRule, MaskRules
from gpvae.io.sensors import Sensor, builtin
from gpvae.io.warp import warp_band
from gpvae.io.window import aoi_window, select_dates, window_transform

log = logging.getLogger(__name__)

#: File name; groups: product, version, layer, year, doy, aid.
APPEEARS_NAME = re.compile(r"^(?P<product>M[OY]D13Q1)\.(?P<version>\d{3})_(?P<layer>\w+?)_"
                           r"doy(?P<year>\d{4})(?P<doy>\d{3})[._](?P<aid>aid\d+)\.tif$")
#: Band of the MOD13Q1 sensor -> AppEEARS layer, and the layer's fill value.
LAYERS: dict[str, tuple[str, int]] = {
    "NDVI": ("_250m_16_days_NDVI", -3000), "EVI": ("_250m_16_days_EVI", -3000),
    "RED": ("_250m_16_days_red_reflectance", -1000),
    "NIR": ("_250m_16_days_NIR_reflectance", -1000),
    "BLUE": ("_250m_16_days_blue_reflectance", -1000),
    "MIR": ("_250m_16_days_MIR_reflectance", -1000)}
RELIABILITY = "_250m_16_days_pixel_reliability"
#: Pixel reliability codes masked by default: snow / ice and cloudy (fill is no data).
RELIABILITY_INVALID = (2, 3)
#: Days from a composite's first day to the date it is given.
COMPOSITE_MIDDLE_DAYS = 8
PLATFORMS = {"MOD": "Terra", "MYD": "Aqua"}


@dataclasses.dataclass(frozen=True)
class Composite:
    """The files of one composite (product, first day, area id): layer -> path."""

    product: str
    first_day: np.datetime64
    aid: str
    files: dict[str, Path]

    @property
    def date(self) -> np.datetime64:
        """The date the composite is given: its period's middle, at noon."""
        return (self.first_day + np.timedelta64(COMPOSITE_MIDDLE_DAYS, "D")).astype(
            "datetime64[ns]") + np.timedelta64(12, "h")

    @property
    def platform(self) -> str:
        return PLATFORMS[self.product[:3]]


def appeears_name(product: str, layer: str, first_day: np.datetime64, aid: int = 1,
                  version: str = "061") -> str:
    """File name of one layer of one composite."""
    day = np.datetime64(first_day, "D")
    doy = int((day - day.astype("datetime64[Y]")).astype(int)) + 1
    year = day.astype("datetime64[Y]").astype(int) + 1970
    return f"{product}.{version}_{layer}_doy{year}{doy:03d}_aid{int(aid):04d}.tif"


def write_appeears_composite(root: Path, *, product: str, first_day: np.datetime64,
                             values: dict[str, np.ndarray], reliability: np.ndarray, crs: str,
                             transform, aid: int = 1) -> list[Path]:
    """Write the layers of one composite: band -> physical values (NaN = fill), written as
    int16 round(v * 1e4); the pixel reliability (int8, -1 = fill)."""
    Path(root).mkdir(parents=True, exist_ok=True)
    out = []
    for band, v in values.items():
        layer, fill = LAYERS[band]
        dn = np.where(np.isfinite(v), np.clip(np.round(np.nan_to_num(v) * 1e4), -32767, 32767),
                      fill).astype(np.int16)
        out.append(write_geotiff(Path(root) / appeears_name(product, layer, first_day, aid), dn,
                                 crs=crs, transform=transform, nodata=fill))
    out.append(write_geotiff(Path(root) / appeears_name(product, RELIABILITY, first_day, aid),
                             np.asarray(reliability, np.int8), crs=crs, transform=transform,
                             nodata=-1))
    return out


def find_composites(src: Path) -> list[Composite]:
    """The composites of AppEEARS GeoTIFFs in ``src`` (and its sub-folders), by first day."""
    src = Path(src)
    if not src.is_dir():
        raise InputError("MODIS (AppEEARS) folder not found", file=src,
                         field="inputs.MOD13Q1.path",
                         fix="point the path at the folder of the AppEEARS GeoTIFF files")
    groups: dict[tuple, dict[str, Path]] = {}
    for path in sorted(src.rglob("*.tif")):
        m = APPEEARS_NAME.match(path.name)
        if m is None:
            continue
        first = (np.datetime64(f"{m['year']}-01-01") + np.timedelta64(int(m["doy"]) - 1, "D"))
        groups.setdefault((m["product"], first, m["aid"]), {})[m["layer"]] = path
    if not groups:
        raise InputError("no AppEEARS MOD13Q1/MYD13Q1 GeoTIFF (e.g. MOD13Q1.061__250m_16_days_"
                         "NDVI_doy2022001_aid0001.tif)", file=src, field="inputs.MOD13Q1.path",
                         fix="request GeoTIFF output from AppEEARS and give its folder")
    return sorted((Composite(p, d, a, f) for (p, d, a), f in groups.items()),
                  key=lambda c: (c.date, c.product, c.aid))


def _grid(sensor: Sensor, reference: Path | None, first: Path, aoi: tuple | None) -> Grid:
    """The tile's grid at the sensor's resolution (from the reference cube), else the first
    file's own grid cut to the AOI."""
    if reference is not None:
        with open_cube(Path(reference)) as ref:
            grid = coarse_grid(cube_grid(ref), sensor.resolution_m)
    else:
        grid = raster_grid(first)
    if aoi is None:
        return grid
    win = aoi_window(aoi, grid[1], grid[2], grid[3], align=1, file=reference or first)
    return grid[0], window_transform(win, grid[1]), int(win.height), int(win.width)


def read_composite(c: Composite, grid: Grid, bands: list[str], sensor: Sensor,
                   invalid: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values (band, y, x), valid (y, x) and the reliability byte (y, x) on ``grid``."""
    missing = [LAYERS[b][0] for b in bands if LAYERS[b][0] not in c.files]
    if RELIABILITY not in c.files:
        missing.append(RELIABILITY)
    if missing:
        raise InputError(f"composite {c.product} {c.first_day} ({c.aid}) lacks layers "
                         f"{missing}", file=next(iter(c.files.values())).parent,
                         field="inputs.MOD13Q1.path",
                         fix="request these layers from AppEEARS (or drop the bands: "
                         "extract.bands)")
    data = np.empty((len(bands), grid[2], grid[3]), np.float32)
    rel = warp_band(c.files[RELIABILITY], grid, resampling=Resampling.max, dtype="int16",
                    src_nodata=-1, dst_nodata=-1)
    valid = rel >= 0
    for i, band in enumerate(bands):
        layer, fill = LAYERS[band]
        raw = warp_band(c.files[layer], grid, resampling=Resampling.average, dtype="float32",
                        src_nodata=fill, dst_nodata=np.nan)
        valid &= np.isfinite(raw)
        data[i] = raw * sensor.scale + sensor.offset
    data[:, ~valid] = np.nan
    return data, valid, np.where(valid, rel, 0).astype(np.uint8)


def extract_appeears(src: Path, tile: str, out: Path, *, sensor: Sensor | str = "MOD13Q1",
                     bands: list[str] | None = None, grid: Path | None = None,
                     reliability_invalid: list[int] | None = None, aoi: tuple | None = None,
                     start: str | None = None, end: str | None = None) -> Path:
    """AppEEARS MOD13Q1 / MYD13Q1 GeoTIFFs -> the MOD13Q1 cube of ``tile`` at 250 m.

    ``grid``: the tile's reference cube (the 250 m grid is aligned with it); None = the
    files' own grid. The cube's quality is the pixel reliability (kind ``classes``, invalid
    ``reliability_invalid``, default snow / ice and cloudy). Composites of one date (two
    area ids) are merged pixel by pixel (first with data wins).
    """
    sensor = builtin(sensor) if isinstance(sensor, str) else sensor
    names = sensor.ordered(bands) if bands else [b for b in sensor.band_names if b in LAYERS]
    unknown = [b for b in names if b not in LAYERS]
    if unknown:
        raise InputError(f"bands {unknown} of {sensor.name} have no AppEEARS MOD13Q1 layer",
                         field="extract.bands", fix=f"use bands among {list(LAYERS)}")
    composites = find_composites(src)
    composites = select_dates(composites, [c.date for c in composites], start, end,
                              what="MODIS composite", file=src)
    target = _grid(sensor, grid, next(iter(composites[0].files.values())), aoi)
    invalid = tuple(int(v) for v in (RELIABILITY_INVALID if reliability_invalid is None
                                     else reliability_invalid))
    rules = MaskRules((MaskRule("pixel_reliability", "classes", invalid),))
    dates = np.unique([c.date for c in composites])
    log.info("extracting %d MODIS composites (%d dates) onto %s's %dx%d grid at %g m",
             len(composites), len(dates), tile, target[3], target[2], abs(target[1].a))
    with cube_writer(out, with_quality=True, times=dates, bands=names,
                     crs=target[0].to_wkt(), transform=target[1], height=target[2],
                     width=target[3], sensor=sensor.name, tile=tile,
                     radiometry=sensor.radiometry, definition=sensor,
                     per_date={"platform": [next(c.platform for c in composites
                                                 if c.date == d) for d in dates]},
                     attrs={"reader": "appeears", **rules.attrs("classes"),
                            "source_files": [str(f) for c in composites
                                             for f in c.files.values()]}) as writer:
        for t, day in enumerate(tqdm(dates, desc=f"MODIS {tile}", unit="date")):
            layers = [read_composite(c, target, names, sensor, invalid) for c in composites
                      if c.date == day]
            writer.write(t, *merge_first_valid(layers))
    return Path(out)
