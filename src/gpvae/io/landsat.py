"""Landsat 8/9 Collection 2 Level-2 science products: naming, writer and reader.

A product (USGS EarthExplorer / M2M delivery) is a folder or an uncompressed ``.tar`` named
by its product id ``LC08_L2SP_PPPRRR_YYYYMMDD_yyyymmdd_02_T1`` (sensor LC08 / LC09, WRS-2
path and row, acquisition and processing dates, collection 02, tier) holding
``<id>_SR_B1.TIF`` ... ``_SR_B7.TIF`` (uint16 DN, 0 = fill; reflectance = DN * 2.75e-05 - 0.2,
read from ``REFLECTANCE_MULT_BAND_n`` / ``REFLECTANCE_ADD_BAND_n`` of ``<id>_MTL.xml`` when
present), ``<id>_QA_PIXEL.TIF`` (uint16 CFMask bits: 0 fill, 1 dilated cloud, 2 cirrus,
3 cloud, 4 cloud shadow, 5 snow, 6 clear, 7 water, 8-15 confidences) and
``<id>_QA_RADSAT.TIF`` (bit n-1 set: band n saturated; bit 11 terrain occlusion). Products
are on their own 30 m UTM grid: the reader warps them onto the tile's grid at 30 m
(:func:`gpvae.io.coarse.coarse_grid`), reflectance by area-weighted average, quality by
nearest neighbour (Landsat's own grid, aligned with the tile's, is then copied unchanged).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import tarfile
import tempfile
from datetime import datetime
from pathlib import Path
from xml.etree import ElementTree

import affine
import numpy as np
import rasterio
from rasterio.enums import Resampling
from tqdm.auto import tqdm

from gpvae.errors import InputError
from gpvae.io.atomic import atomic_path
from gpvae.io.coarse import Grid, coarse_grid
from gpvae.io.cube import cube_grid, cube_writer, open_cube
from gpvae.io.extract import one_per_day
from gpvae.io.failures import reading
from gpvae.io.geotiff import write_geotiff
from gpvae.io.quality import MaskRules
from gpvae.io.sensors import Sensor, builtin
from gpvae.io.warp import warp_band
from gpvae.io.window import aoi_window, select_dates, window_transform

log = logging.getLogger(__name__)

#: Product id; groups: sensor, path, row, acquired, processed, tier.
LANDSAT_ID = re.compile(r"^(?P<sensor>L[CO]0[89])_L2SP_(?P<path>\d{3})(?P<row>\d{3})_"
                        r"(?P<date>\d{8})_(?P<processed>\d{8})_02_(?P<tier>T1|T2|RT)$")
#: Default quality rules: QA_PIXEL dilated cloud, cirrus, cloud, shadow (fill is no data);
#: QA_RADSAT: the saturation bit of every extracted band (added by the reader).
QA_PIXEL_INVALID = (1, 2, 3, 4)
#: Product scale of SR bands (Collection 2 Level-2), used when the MTL file is absent.
SR_MULT, SR_ADD = 2.75e-5, -0.2
#: QA_PIXEL value of fill pixels (bit 0); the value outside a warped scene's footprint.
QA_FILL = 1


@dataclasses.dataclass(frozen=True)
class LandsatProduct:
    """One product (folder or .tar) and what its id says."""

    location: Path
    product_id: str
    platform: str  # LANDSAT_8 | LANDSAT_9
    wrs_path: int
    wrs_row: int
    acquired: np.datetime64

    def file(self, suffix: str) -> str:
        """GDAL path of one file of the product (``SR_B4.TIF``, ``QA_PIXEL.TIF``, ``MTL.xml``)."""
        name = f"{self.product_id}_{suffix}"
        if self.location.suffix == ".tar":
            return f"/vsitar/{self.location}/{name}"
        return str(self.location / name)


def parse_landsat_id(name: str) -> re.Match | None:
    """Match a Collection 2 Level-2 product id (None when ``name`` is not one)."""
    return LANDSAT_ID.match(name)


def landsat_product_id(*, spacecraft: int, wrs_path: int, wrs_row: int,
                       acquired: np.datetime64, processed: np.datetime64 | None = None,
                       tier: str = "T1") -> str:
    """Product id, e.g. ``LC08_L2SP_199030_20220105_20220114_02_T1``."""
    day = np.datetime64(acquired, "D")
    proc = np.datetime64(processed, "D") if processed is not None else day + 9
    stamp = [str(d).replace("-", "") for d in (day, proc)]
    return (f"LC0{int(spacecraft)}_L2SP_{int(wrs_path):03d}{int(wrs_row):03d}_{stamp[0]}_"
            f"{stamp[1]}_02_{tier}")


def _mtl_xml(product_id: str, acquired: np.datetime64, spacecraft: int, bands: list[int]
             ) -> str:
    """Minimal MTL.xml: product contents, image attributes and the SR scale of each band."""
    when = np.datetime64(acquired, "ms").item()
    scale = "".join(f"<REFLECTANCE_MULT_BAND_{n}>{SR_MULT:.4E}</REFLECTANCE_MULT_BAND_{n}>"
                    f"<REFLECTANCE_ADD_BAND_{n}>{SR_ADD:.6f}</REFLECTANCE_ADD_BAND_{n}>"
                    for n in bands)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<LANDSAT_METADATA_FILE>\n'
            f"  <PRODUCT_CONTENTS><LANDSAT_PRODUCT_ID>{product_id}</LANDSAT_PRODUCT_ID>"
            "<PROCESSING_LEVEL>L2SP</PROCESSING_LEVEL><COLLECTION_NUMBER>02"
            "</COLLECTION_NUMBER></PRODUCT_CONTENTS>\n"
            f"  <IMAGE_ATTRIBUTES><SPACECRAFT_ID>LANDSAT_{spacecraft}</SPACECRAFT_ID>"
            f"<DATE_ACQUIRED>{when:%Y-%m-%d}</DATE_ACQUIRED>"
            f"<SCENE_CENTER_TIME>\"{when:%H:%M:%S}.{when.microsecond // 1000:03d}0000Z\""
            "</SCENE_CENTER_TIME></IMAGE_ATTRIBUTES>\n"
            f"  <LEVEL2_SURFACE_REFLECTANCE_PARAMETERS>{scale}"
            "</LEVEL2_SURFACE_REFLECTANCE_PARAMETERS>\n</LANDSAT_METADATA_FILE>\n")


def write_landsat_product(root: Path, *, spacecraft: int, wrs_path: int, wrs_row: int,
                          acquired: np.datetime64, reflectance: dict[str, np.ndarray],
                          qa_pixel: np.ndarray, qa_radsat: np.ndarray, crs: str,
                          transform: affine.Affine, tar: bool = False) -> Path:
    """Write one product folder (or ``.tar``): SR bands as uint16 DN = round((r + 0.2) /
    2.75e-5) (NaN -> 0, fill), QA_PIXEL, QA_RADSAT (uint16) and MTL.xml; atomically."""
    product_id = landsat_product_id(spacecraft=spacecraft, wrs_path=wrs_path,
                                    wrs_row=wrs_row, acquired=acquired)
    numbers = sorted(int(b.removeprefix("SR_B")) for b in reflectance)
    target = Path(root) / (product_id + (".tar" if tar else ""))
    Path(root).mkdir(parents=True, exist_ok=True)

    def write_files(folder: Path) -> None:
        for band, refl in reflectance.items():
            dn = np.round((np.nan_to_num(np.asarray(refl, np.float64), nan=SR_ADD) - SR_ADD)
                          / SR_MULT)
            dn = np.where(np.isfinite(refl), np.clip(dn, 1, 65535), 0).astype(np.uint16)
            write_geotiff(folder / f"{product_id}_{band}.TIF", dn, crs=crs,
                          transform=transform, nodata=0)
        write_geotiff(folder / f"{product_id}_QA_PIXEL.TIF", np.asarray(qa_pixel, np.uint16),
                      crs=crs, transform=transform, nodata=QA_FILL)
        write_geotiff(folder / f"{product_id}_QA_RADSAT.TIF", np.asarray(qa_radsat, np.uint16),
                      crs=crs, transform=transform)
        (folder / f"{product_id}_MTL.xml").write_text(
            _mtl_xml(product_id, acquired, spacecraft, numbers))

    if not tar:
        with atomic_path(target, directory=True) as tmp:
            write_files(tmp)
        return target
    with tempfile.TemporaryDirectory(dir=root) as folder, atomic_path(target) as tmp:
        write_files(Path(folder))
        with tarfile.open(tmp, "w") as archive:
            for f in sorted(Path(folder).iterdir()):
                archive.add(f, arcname=f.name)
    return target


def find_landsat_products(src: Path) -> list[LandsatProduct]:
    """Products under ``src`` (folders or .tar named by a product id, at any depth up to 2),
    sorted by acquisition; InputError when there is none."""
    src = Path(src)
    if not src.exists():
        raise InputError("Landsat product folder not found", file=src,
                         field="inputs.LANDSAT.path",
                         fix="point inputs.LANDSAT.path at the folder of Landsat C2 L2 "
                         "product folders or .tar files")
    found = []
    for path in sorted([*src.glob("*"), *src.glob("*/*")]):
        name = path.name.removesuffix(".tar")
        m = parse_landsat_id(name)
        if m is None or not (path.is_dir() or path.suffix == ".tar"):
            continue
        found.append(LandsatProduct(path, name, f"LANDSAT_{int(m['sensor'][-1])}",
                                    int(m["path"]), int(m["row"]),
                                    _acquired(path, name, m)))
    if not found:
        raise InputError("no Landsat Collection 2 Level-2 product (LC08_L2SP_..._02_T1 folder "
                         "or .tar)", file=src, field="inputs.LANDSAT.path",
                         fix="unpack nothing: give the folder holding the product folders or "
                         ".tar files as delivered by USGS")
    return sorted(found, key=lambda p: (p.acquired, p.product_id))


def _acquired(path: Path, name: str, m: re.Match) -> np.datetime64:
    """Acquisition time: DATE_ACQUIRED + SCENE_CENTER_TIME of the MTL.xml, else the id's
    date at noon."""
    product = LandsatProduct(path, name, "", 0, 0, np.datetime64("NaT"))
    mtl = _read_mtl(product)
    day = datetime.strptime(m["date"], "%Y%m%d")
    when = np.datetime64(day, "ns") + np.timedelta64(12, "h")
    if mtl is not None:
        clock = (mtl.findtext(".//SCENE_CENTER_TIME") or "").strip('"').rstrip("Z")
        try:
            hms = datetime.strptime(clock[:8], "%H:%M:%S")
            when = np.datetime64(day.replace(hour=hms.hour, minute=hms.minute,
                                             second=hms.second), "ns")
        except ValueError:
            pass
    return when


def _read_mtl(product: LandsatProduct) -> ElementTree.Element | None:
    """The parsed MTL.xml of a product (None when absent)."""
    path = product.file("MTL.xml")
    try:
        if path.startswith("/vsitar/"):
            with tarfile.open(product.location) as archive:
                member = archive.extractfile(f"{product.product_id}_MTL.xml")
                text = member.read().decode() if member is not None else None
        else:
            text = Path(path).read_text() if Path(path).is_file() else None
    except (KeyError, OSError, tarfile.TarError):
        return None
    if text is None:
        return None
    with reading(path, what="Landsat MTL.xml"):
        return ElementTree.fromstring(text)


def band_scale(product: LandsatProduct, band: str) -> tuple[float, float]:
    """(mult, add) of an SR band: the MTL.xml's, else the Collection 2 constants."""
    n = band.removeprefix("SR_B")
    mtl = _read_mtl(product)
    if mtl is None:
        return SR_MULT, SR_ADD
    mult, add = (mtl.findtext(f".//REFLECTANCE_{k}_BAND_{n}") for k in ("MULT", "ADD"))
    return (float(mult) if mult else SR_MULT), (float(add) if add else SR_ADD)


def default_rules(bands: list[str]) -> list[dict]:
    """QA_PIXEL clouds and shadows, and QA_RADSAT saturation of the extracted bands."""
    bits = [int(b.removeprefix("SR_B")) - 1 for b in bands]
    return [{"variable": "QA_PIXEL", "kind": "bits", "invalid": list(QA_PIXEL_INVALID)},
            {"variable": "QA_RADSAT", "kind": "bits", "invalid": bits}]


def tile_grid(sensor: Sensor, reference: Path | None, first: LandsatProduct,
              aoi: tuple | None) -> Grid:
    """The grid to warp onto: the reference cube's grid at the sensor's resolution, else the
    first product's own grid (cut to the AOI)."""
    if reference is not None:
        with open_cube(Path(reference)) as ref:
            return coarse_grid(cube_grid(ref), sensor.resolution_m)
    with reading(first.file("QA_PIXEL.TIF"), what="GeoTIFF raster"), \
            rasterio.open(first.file("QA_PIXEL.TIF")) as src:
        crs, transform, h, w = src.crs, src.transform, src.height, src.width
    win = aoi_window(aoi, transform, h, w, align=1, file=first.location)
    return crs, window_transform(win, transform), int(win.height), int(win.width)


def read_landsat(product: LandsatProduct, grid: Grid, bands: list[str], rules: MaskRules
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reflectance (band, y, x), valid (y, x) and the invalid flag (y, x) of one product on
    ``grid``."""
    data = np.empty((len(bands), grid[2], grid[3]), np.float32)
    valid = np.ones(grid[2:], bool)
    for i, band in enumerate(bands):
        dn = warp_band(product.file(f"{band}.TIF"), grid, resampling=Resampling.average,
                       dtype="float32", src_nodata=0, dst_nodata=0)
        mult, add = band_scale(product, band)
        valid &= dn > 0
        data[i] = np.where(dn > 0, dn * mult + add, np.nan)
    planes = {}
    for var, fill in (("QA_PIXEL", QA_FILL), ("QA_RADSAT", 0)):
        if var in rules.variables:
            planes[var] = warp_band(product.file(f"{var}.TIF"), grid,
                                    resampling=Resampling.nearest, dtype="uint16",
                                    src_nodata=None, dst_nodata=fill)
    if "QA_PIXEL" in planes:
        valid &= (planes["QA_PIXEL"] & QA_FILL) == 0
    data[:, ~valid] = np.nan
    return data, valid, rules.stored(planes, "boolean") if planes else np.zeros_like(valid)


def extract_landsat(src: Path, tile: str, out: Path, *, sensor: Sensor | str = "LANDSAT",
                    bands: list[str] | None = None, grid: Path | None = None,
                    mask: dict | list | None = None, aoi: tuple | None = None,
                    start: str | None = None, end: str | None = None) -> Path:
    """Landsat C2 L2 products -> the LANDSAT cube of ``tile`` on the tile's 30 m grid.

    ``grid``: the tile's reference cube (its finest sensor: the coarse grid is aligned with
    it); None = the first product's grid. ``mask``: quality rules (default
    :func:`default_rules`), evaluated at extraction (the cube's quality is the boolean
    invalid flag). Products that do not cover the grid are skipped; two products on one day
    (adjacent WRS rows): the one with more valid pixels is kept.
    """
    sensor = builtin(sensor) if isinstance(sensor, str) else sensor
    names = sensor.ordered(bands) if bands else [b for b in sensor.band_names
                                                 if b.startswith("SR_B")]
    rules = MaskRules.from_config(mask or default_rules(names), file=src)
    products = find_landsat_products(src)
    products = select_dates(products, [p.acquired for p in products], start, end,
                            what="Landsat product", file=src)
    target = tile_grid(sensor, grid, products[0], aoi)
    if grid is not None and aoi is not None:
        win = aoi_window(aoi, target[1], target[2], target[3], align=1, file=grid)
        target = (target[0], window_transform(win, target[1]), int(win.height),
                  int(win.width))

    def n_valid(p: LandsatProduct) -> int:
        qa = warp_band(p.file("QA_PIXEL.TIF"), target, resampling=Resampling.nearest,
                       dtype="uint16", src_nodata=None, dst_nodata=QA_FILL)
        return int(((qa & QA_FILL) == 0).sum())

    valid = {p.product_id: n_valid(p) for p in products}
    products = [p for p in one_per_day(products, lambda p: p.acquired,
                                       lambda p: valid[p.product_id], lambda p: p.product_id)
                if valid[p.product_id]]
    if not products:
        raise InputError(f"no Landsat product covers tile {tile}", file=src,
                         field="inputs.LANDSAT.path",
                         fix="give products whose WRS-2 path/row overlaps the tile")
    log.info("extracting %d Landsat products onto %s's %dx%d grid at %g m", len(products),
             tile, target[3], target[2], abs(target[1].a))
    with cube_writer(out, with_quality=True, times=[p.acquired for p in products],
                     bands=names, crs=target[0].to_wkt(), transform=target[1],
                     height=target[2], width=target[3], sensor=sensor.name, tile=tile,
                     radiometry=sensor.radiometry, definition=sensor,
                     per_date={"platform": [p.platform for p in products],
                               "relative_orbit": [p.wrs_path for p in products]},
                     attrs={"reader": "landsat_c2l2", **rules.attrs("boolean"),
                            "source_files": [str(p.location) for p in products]}) as writer:
        for t, p in enumerate(tqdm(products, desc=f"LANDSAT {tile}", unit="product")):
            writer.write(t, *read_landsat(p, target, names, rules))
    return Path(out)
