"""Theia/MAJA (MUSCATE) Sentinel-2 L2A products: folder naming, writer and reader.

Format (docs/contracts.md section 0, notes/formats.md): one folder per product
``SENTINEL2A_<YYYYMMDD>-<HHMMSS>-<mmm>_L2A_<tile>_C_V<version>`` holding int16 FRE/SRE bands
(reflectance = DN / 10000, nodata -10000; 10 m R1: B2 B3 B4 B8, 20 m R2: B5 B6 B7 B8A B11 B12),
``MTD_ALL.xml`` and ``MASKS/`` (CLM, EDG, SAT, MG2 at R1/R2).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from xml.sax.saxutils import escape

import affine
import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from gpvae.errors import InputError
from gpvae.io.atomic import atomic_path
from gpvae.io.geotiff import OpenFiles, raster_grid, read_band, write_geotiff
from gpvae.io.sensors import S2_10M, S2_BANDS

log = logging.getLogger(__name__)

#: Reflectance quantification value and nodata DN of Theia L2A bands.
THEIA_SCALE = 10000.0
THEIA_NODATA = -10000

#: Product folder name; groups: platform, date, time, milliseconds, tile, version.
THEIA_NAME = re.compile(
    r"^(?P<platform>SENTINEL2[A-D])_(?P<date>\d{8})-(?P<time>\d{6})-(?P<ms>\d{3})_L2A_"
    r"(?P<tile>T?\w{5})_C_V(?P<version>[\w-]+?)$"
)



def theia_band_name(band: str) -> str:
    """Theia/MAJA file band name of a canonical band: B02 -> B2, B8A -> B8A, B11 -> B11."""
    if band not in S2_BANDS:
        raise KeyError(f"unknown Sentinel-2 band {band!r}; expected one of {S2_BANDS}")
    return band if band in ("B8A", "B11", "B12") else "B" + band[1:].lstrip("0")

@dataclasses.dataclass(frozen=True)
class TheiaProduct:
    """One Theia L2A product folder and what its name says."""

    path: Path
    name: str
    platform: str
    acquired: np.datetime64
    tile: str

    def band_file(self, band: str, product: str = "FRE") -> Path:
        """Path of a canonical band's FRE/SRE GeoTIFF."""
        return self.path / f"{self.name}_{product}_{theia_band_name(band)}.tif"

    def mask_file(self, mask: str, resolution: int = 1) -> Path:
        """Path of a mask GeoTIFF (``CLM``, ``EDG``, ``SAT``, ``MG2``) at R1 or R2."""
        return self.path / "MASKS" / f"{self.name}_{mask}_R{resolution}.tif"


def theia_product_name(*, tile: str, acquired: np.datetime64, platform: str,
                       version: str = "V3-1") -> str:
    """Theia product folder name, e.g. ``SENTINEL2A_20220105-105432-123_L2A_T31TCJ_C_V3-1``."""
    when = np.datetime64(acquired, "ms").item()
    stamp = when.strftime("%Y%m%d-%H%M%S") + f"-{when.microsecond // 1000:03d}"
    version = version if version.startswith("V") else f"V{version}"
    return f"{platform}_{stamp}_L2A_{tile}_C_{version}"


def parse_theia_name(path: Path) -> TheiaProduct | None:
    """Parse a product folder name; None when it is not a Theia L2A name."""
    m = THEIA_NAME.match(Path(path).name)
    if m is None:
        return None
    when = datetime.strptime(m["date"] + m["time"], "%Y%m%d%H%M%S")
    acquired = np.datetime64(when, "ms") + np.timedelta64(int(m["ms"]), "ms")
    return TheiaProduct(path=Path(path), name=Path(path).name, platform=m["platform"],
                        acquired=acquired.astype("datetime64[ns]"), tile=m["tile"])


def _blocks(a: np.ndarray) -> np.ndarray:
    """View (H, W) as (H/2, W/2, 4) 2x2 blocks."""
    h, w = a.shape
    return a.reshape(h // 2, 2, w // 2, 2).transpose(0, 2, 1, 3).reshape(h // 2, w // 2, 4)


def _mtd_xml(name: str, *, tile: str, acquired: np.datetime64, platform: str,
             version: str, crs: str) -> str:
    """Minimal MUSCATE MTD_ALL.xml with the identification and acquisition fields."""
    when = str(np.datetime64(acquired, "ms")) + "Z"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Muscate_Metadata_Document>\n'
        "  <Metadata_Identification><METADATA_FORMAT>METADATA_MUSCATE</METADATA_FORMAT>"
        "</Metadata_Identification>\n"
        f"  <Dataset_Identification><IDENTIFIER>{escape(name)}</IDENTIFIER>"
        f"<PRODUCER_NAME>gpvae demo</PRODUCER_NAME></Dataset_Identification>\n"
        "  <Product_Characteristics>"
        f"<PRODUCT_ID>{escape(name)}</PRODUCT_ID><ACQUISITION_DATE>{when}</ACQUISITION_DATE>"
        f"<PRODUCT_VERSION>{escape(version)}</PRODUCT_VERSION><PLATFORM>{platform}</PLATFORM>"
        "<PRODUCT_LEVEL>L2A</PRODUCT_LEVEL></Product_Characteristics>\n"
        f"  <Geoposition_Informations><Coordinate_Reference_System><GEO_TABLES>"
        f"{escape(str(crs))}</GEO_TABLES></Coordinate_Reference_System>"
        f"<TILE>{escape(tile)}</TILE></Geoposition_Informations>\n"
        "  <Radiometric_Informations><REFLECTANCE_QUANTIFICATION_VALUE>10000"
        "</REFLECTANCE_QUANTIFICATION_VALUE></Radiometric_Informations>\n"
        "</Muscate_Metadata_Document>\n"
    )


def write_theia_product(root: Path, *, tile: str, acquired: np.datetime64, platform: str,
                        reflectance: dict[str, np.ndarray], clm_r1: np.ndarray,
                        edg_r1: np.ndarray, crs: str, transform: affine.Affine,
                        version: str = "V3-1") -> Path:
    """Write one Theia/MAJA L2A product folder (FRE bands + MASKS + MTD_ALL.xml); return it.

    ``reflectance``: canonical band -> float32 reflectance at the band's native resolution
    (10 m bands (H, W), 20 m bands (H/2, W/2)); NaN = no data, written as -10000; DN =
    round(r * 10000). ``clm_r1``: CLM bit byte (H, W); ``edg_r1``: 1 = no data. R2 masks are
    2x2 block reductions (CLM bitwise OR, EDG any); SAT zeros; MG2 bit 1 (clouds) from CLM bit 1
    and bit 3 (cloud shadows) from CLM bit 5. ``transform``: the 10 m grid. Written atomically.
    """
    clm_r1 = np.asarray(clm_r1, dtype=np.uint8)
    edg_r1 = np.asarray(edg_r1).astype(np.uint8)
    h, w = clm_r1.shape
    if h % 2 or w % 2 or edg_r1.shape != (h, w):
        raise ValueError(f"clm_r1/edg_r1 must share an even (H, W) shape, got {clm_r1.shape}, "
                         f"{edg_r1.shape}")
    transform_r2 = transform @ affine.Affine.scale(2.0)
    name = theia_product_name(tile=tile, acquired=acquired, platform=platform, version=version)
    target = Path(root) / name
    with atomic_path(target, directory=True) as tmp:
        (tmp / "MASKS").mkdir()
        for band, refl in reflectance.items():
            refl = np.asarray(refl, dtype=np.float32)
            expected = (h, w) if band in S2_10M else (h // 2, w // 2)
            if refl.shape != expected:
                raise ValueError(f"band {band}: shape {refl.shape}, expected {expected}")
            dn = np.where(np.isfinite(refl), np.round(np.nan_to_num(refl) * THEIA_SCALE),
                          THEIA_NODATA)
            dn = np.clip(dn, -32768, 32767).astype(np.int16)
            write_geotiff(tmp / f"{name}_FRE_{theia_band_name(band)}.tif", dn, crs=crs,
                          transform=transform if band in S2_10M else transform_r2,
                          nodata=THEIA_NODATA)
        clm_r2 = np.bitwise_or.reduce(_blocks(clm_r1), axis=-1).astype(np.uint8)
        edg_r2 = _blocks(edg_r1).any(axis=-1).astype(np.uint8)
        mg2 = (((clm_r1 >> 1) & 1) << 1 | ((clm_r1 >> 5) & 1) << 3).astype(np.uint8)
        masks = {("CLM", 1): clm_r1, ("CLM", 2): clm_r2, ("EDG", 1): edg_r1,
                 ("EDG", 2): edg_r2, ("SAT", 1): np.zeros_like(clm_r1), ("MG2", 1): mg2}
        for (mask, res), arr in masks.items():
            write_geotiff(tmp / "MASKS" / f"{name}_{mask}_R{res}.tif", arr, crs=crs,
                          transform=transform if res == 1 else transform_r2)
        (tmp / f"{name}_MTD_ALL.xml").write_text(
            _mtd_xml(name, tile=tile, acquired=acquired, platform=platform, version=version,
                     crs=crs))
    return target


def find_theia_products(product_dir: Path, tile: str) -> list[TheiaProduct]:
    """Theia L2A product folders of ``tile`` under ``product_dir``, sorted by acquisition."""
    product_dir = Path(product_dir)
    if not product_dir.is_dir():
        raise InputError("Sentinel-2 product folder not found", file=product_dir,
                         field="inputs.S2.path",
                         fix="point inputs.S2.path at the folder holding the Theia products")
    products = [p for p in (parse_theia_name(d) for d in sorted(product_dir.glob(
        f"*_L2A_{tile}_*")) if d.is_dir()) if p is not None]
    if not products:
        raise InputError(f"no Theia L2A product folder for tile {tile} (*_L2A_{tile}_*)",
                         file=product_dir, field="inputs.S2.path",
                         fix="check the tile name and that products are unzipped there")
    return sorted(products, key=lambda p: p.acquired)


@dataclasses.dataclass
class TheiaScene:
    """One product read on the 10 m grid: reflectance (band, y, x), valid and CLM (y, x)."""

    product: TheiaProduct
    reflectance: np.ndarray
    valid: np.ndarray
    clm: np.ndarray
    files: list[Path]


def theia_grid(product: TheiaProduct) -> tuple[rasterio.crs.CRS, affine.Affine, int, int]:
    """10 m grid (crs, transform, height, width) of a product, from its CLM_R1 mask."""
    path = product.mask_file("CLM", 1)
    if not path.is_file():
        raise InputError("Theia mask file missing", file=path, field="CLM_R1",
                         fix="re-download or re-extract this product")
    return raster_grid(path)


class TheiaReader(OpenFiles):
    """A product's rasters opened once (band files, EDG_R1, CLM_R1), read window by window.

    ``read(window)`` returns reflectance (band, y, x), valid and CLM (y, x) of a 10 m window:
    20 m bands are bilinearly resampled to 10 m (GDAL skips nodata neighbours, the file
    declares nodata -10000; a windowed read equals the same pixels of a whole read); a 10 m
    pixel is no data when its 20 m source pixel is no data (nearest lookup of the nodata
    mask). ``valid`` = not EDG_R1 and every band has data; ``clm`` = CLM_R1 byte.
    ``grid_check(product, grid)`` is called with the product's grid (that of CLM_R1) when it
    is opened, before any band is read. Use as a context manager.
    """

    def __init__(self, product: TheiaProduct, *, bands: list[str] | None = None,
                 file_product: str = "FRE",
                 grid_check: Callable[[TheiaProduct, tuple], None] | None = None) -> None:
        self.product = product
        self.bands = list(S2_BANDS if bands is None else bands)
        self.files = []
        for band in self.bands:
            path = product.band_file(band, file_product)
            if not path.is_file():
                raise InputError(f"band {band} missing from Theia product {product.name}",
                                 file=path, field=band,
                                 fix="re-download the product or drop the band from the config")
            self.files.append(path)
        edg_path, clm_path = product.mask_file("EDG", 1), product.mask_file("CLM", 1)
        for path, field in ((edg_path, "EDG_R1"), (clm_path, "CLM_R1")):
            if not path.is_file():
                raise InputError(f"mask {field} missing from Theia product {product.name}",
                                 file=path, field=field, fix="re-download the product")
        super().__init__()
        with self.opening():
            self.clm = self.open_raster(clm_path, field="CLM_R1")
            if grid_check is not None:
                grid_check(product, (self.clm.crs, self.clm.transform, self.clm.height,
                                     self.clm.width))
            self.edg = self.open_raster(edg_path, field="EDG_R1")
            self.sources = [self.open_raster(p, field=b)
                            for p, b in zip(self.files, self.bands, strict=True)]
        self.files += [edg_path, clm_path]

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the 10 m grid."""
        return self.clm.height, self.clm.width

    def read(self, window: Window | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(reflectance (band, y, x), valid (y, x), clm (y, x)) of a 10 m ``window``
        (default: the whole grid)."""
        win = Window(0, 0, self.clm.width, self.clm.height) if window is None else window
        hh, ww = int(win.height), int(win.width)
        win_r2 = Window(win.col_off / 2, win.row_off / 2, win.width / 2, win.height / 2)
        clm = read_band(self.clm, window=win).astype(np.uint8)
        edg = read_band(self.edg, window=win).astype(bool)
        refl = np.empty((len(self.bands), hh, ww), np.float32)
        nodata = np.zeros((hh, ww), bool)
        for i, (band, src) in enumerate(zip(self.bands, self.sources, strict=True)):
            if band in S2_10M:
                dn = read_band(src, field=band, window=win)
                val = dn.astype(np.float32)
            else:  # nearest for the nodata lookup, bilinear for values
                dn = read_band(src, field=band, window=win_r2, out_shape=(hh, ww),
                               resampling=Resampling.nearest)
                val = read_band(src, field=band, window=win_r2, out_shape=(hh, ww),
                                resampling=Resampling.bilinear).astype(np.float32)
            bad = dn == THEIA_NODATA
            refl[i] = np.where(bad, np.nan, val / THEIA_SCALE)
            nodata |= bad | ~np.isfinite(refl[i])
        valid = ~edg & ~nodata
        refl[:, ~valid] = np.nan
        return refl, valid, clm


def read_theia_product(product: TheiaProduct, *, bands: list[str] | None = None,
                       window: Window | None = None, file_product: str = "FRE",
                       grid_check: Callable[[TheiaProduct, tuple], None] | None = None
                       ) -> TheiaScene:
    """Read a product on its 10 m grid (optionally a 10 m window) in one go; see
    :class:`TheiaReader` (what the extract stage uses, block by block)."""
    with TheiaReader(product, bands=bands, file_product=file_product,
                     grid_check=grid_check) as reader:
        refl, valid, clm = reader.read(window)
        return TheiaScene(product=product, reflectance=refl, valid=valid, clm=clm,
                          files=list(reader.files))
