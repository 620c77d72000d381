"""Sen2Cor Sentinel-2 L2A SAFE products (folders or ``.SAFE.zip``, read without unpacking).

Format (notes/formats.md): ``S2X_MSIL2A_<datatake>_N<baseline>_R<orbit>_T<tile>_<gen>.SAFE/``
with ``MTD_MSIL2A.xml`` and ``GRANULE/L2A_*/IMG_DATA/R10m/T<tile>_<date>_B02_10m.jp2``
(B02 B03 B04 B08 at 10 m; B05 B06 B07 B8A B11 B12 and SCL in ``R20m``). Reflectance =
(DN + BOA_ADD_OFFSET) / BOA_QUANTIFICATION_VALUE, DN 0 = no data; the offset (-1000 from
processing baseline 04.00 on, reprocessed products included) is keyed on the baseline read
from the metadata, never on the date. SCL is kept as the cube's ``quality`` layer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import re
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from datetime import datetime
from pathlib import Path

import affine
import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from tqdm.auto import tqdm

from gpvae.errors import InputError
from gpvae.io.atomic import atomic_path
from gpvae.io.cube import cube_writer
from gpvae.io.extract import AOI, one_gdal_env, one_per_day
from gpvae.io.failures import reading
from gpvae.io.geotiff import OpenFiles
from gpvae.io.sensors import S2_10M, S2_BANDS, builtin
from gpvae.io.window import aoi_window, in_date_range, spatial_blocks, window_transform

log = logging.getLogger(__name__)

#: SAFE product name; groups: mission, datatake time, baseline, relative orbit, tile.
SAFE_NAME = re.compile(
    r"^(?P<mission>S2[A-D])_MSIL2A_(?P<datatake>\d{8}T\d{6})_N(?P<baseline>\d{4})_"
    r"R(?P<orbit>\d{3})_(?P<tile>T\w{5})_(?P<generated>\d{8}T\d{6})\.SAFE(?:\.zip)?$")
#: Spectral band order of the MTD ``band_id`` attributes.
MTD_BAND_ORDER = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09",
                  "B10", "B11", "B12"]
#: Reflectance offset of baselines >= 04.00 when the MTD lacks BOA_ADD_OFFSET.
BASELINE_04_OFFSET = -1000.0
#: Pixel size (m) of each band and of SCL in a Sen2Cor L2A product.
L2A_RESOLUTION = {b: 10 if b in S2_10M else 20 for b in [*S2_BANDS, "SCL"]}


def band_resolution_folder(band: str) -> str:
    """``R10m`` or ``R20m``: the IMG_DATA folder of a band at its native resolution."""
    return f"R{L2A_RESOLUTION[band]}m"


@dataclasses.dataclass(frozen=True)
class L2ARadiometry:
    """Reflectance = (DN + offset[band]) / quantification (Sen2Cor MTD_MSIL2A.xml)."""

    baseline: str
    quantification: float
    offsets: dict[str, float]

    def reflectance(self, band: str, dn: np.ndarray) -> np.ndarray:
        """Surface reflectance of DNs (float32), NaN where DN = 0 (no data)."""
        dn = np.asarray(dn, dtype=np.float64)
        r = (dn + self.offsets.get(band, 0.0)) / self.quantification
        return np.where(dn == 0, np.nan, r).astype(np.float32)


def baseline_has_offset(baseline: str) -> bool:
    """True from processing baseline 04.00 on (BOA_ADD_OFFSET in use)."""
    return float(baseline) >= 4.0


def l2a_radiometry(baseline: str, *, quantification: float = 10000.0,
                   mtd_offsets: dict[str, float] | None = None) -> L2ARadiometry:
    """Radiometry keyed on the processing baseline: offsets from the MTD for >= 04.00
    (-1000 where absent there), none before 04.00."""
    if baseline_has_offset(baseline):
        offsets = {b: (mtd_offsets or {}).get(b, BASELINE_04_OFFSET) for b in MTD_BAND_ORDER}
    else:
        offsets = {b: 0.0 for b in MTD_BAND_ORDER}
    return L2ARadiometry(baseline=baseline, quantification=float(quantification),
                         offsets=offsets)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_mtd_msil2a(text: str, *, file: object = None) -> tuple[L2ARadiometry, dict]:
    """Radiometry and identification (platform, start time, orbit) of MTD_MSIL2A.xml."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as err:
        raise InputError(f"MTD_MSIL2A.xml is not valid XML ({err})", file=file,
                         fix="re-download the product") from err
    elems = list(root.iter())
    by_tag = {}
    for el in elems:
        by_tag.setdefault(_local(el.tag), el)
    baseline_el = by_tag.get("PROCESSING_BASELINE")
    if baseline_el is None or not (baseline_el.text or "").strip():
        raise InputError("MTD_MSIL2A.xml has no PROCESSING_BASELINE", file=file,
                         field="PROCESSING_BASELINE", fix="re-download the product")
    quant = next((el.text for el in elems if _local(el.tag).endswith(
        "BOA_QUANTIFICATION_VALUE")), None)
    if quant is None:
        raise InputError("MTD_MSIL2A.xml has no BOA_QUANTIFICATION_VALUE", file=file,
                         field="BOA_QUANTIFICATION_VALUE", fix="re-download the product")
    names = {el.get("bandId"): el.get("physicalBand") for el in elems
             if _local(el.tag) == "Spectral_Information"}
    offsets = {}
    for el in elems:
        if _local(el.tag) == "BOA_ADD_OFFSET":
            i = el.get("band_id")
            name = names.get(i) or MTD_BAND_ORDER[int(i)]
            name = name if len(name) == 3 else f"B0{name[1:]}"  # B1 -> B01, B8A stays
            offsets[name] = float(el.text)
    baseline = baseline_el.text.strip()
    if baseline_has_offset(baseline) and not offsets:
        log.warning("%s: baseline %s without BOA_ADD_OFFSET; using %g", file, baseline,
                    BASELINE_04_OFFSET)
    radiometry = l2a_radiometry(baseline, quantification=float(quant), mtd_offsets=offsets)
    ident = {k: (by_tag[k].text or "").strip() for k in (
        "SPACECRAFT_NAME", "PRODUCT_START_TIME", "SENSING_ORBIT_NUMBER") if k in by_tag}
    return radiometry, ident


@dataclasses.dataclass(frozen=True)
class Sen2CorProduct:
    """One L2A SAFE product (folder or zip) and what its name says."""

    path: Path
    name: str
    platform: str
    acquired: np.datetime64
    tile: str
    relative_orbit: int

    @property
    def zipped(self) -> bool:
        """True for a ``.SAFE.zip`` product."""
        return self.path.is_file()

    @functools.cached_property
    def members(self) -> list[str]:
        """Paths of the product's files, relative to the .SAFE folder."""
        if self.zipped:
            with reading(self.path, what="SAFE zip archive"), zipfile.ZipFile(self.path) as z:
                return [m.split("/", 1)[1] for m in z.namelist()
                        if "/" in m and not m.endswith("/")]
        return [str(p.relative_to(self.path)) for p in self.path.rglob("*") if p.is_file()]

    def gdal_path(self, member: str) -> str:
        """Path GDAL opens for a member file (``/vsizip/`` inside a zip)."""
        if self.zipped:
            return f"/vsizip/{self.path.resolve()}/{self.name}/{member}"
        return str(self.path / member)

    def read_text(self, member: str) -> str:
        """Text of a member file."""
        if self.zipped:
            with reading(self.path, what="SAFE zip archive"), zipfile.ZipFile(self.path) as z:
                return z.read(f"{self.name}/{member}").decode("utf-8", errors="replace")
        return (self.path / member).read_text(errors="replace")

    def radiometry(self) -> L2ARadiometry:
        """Radiometry from MTD_MSIL2A.xml (InputError when the file is missing)."""
        if "MTD_MSIL2A.xml" not in self.members:
            raise InputError(f"{self.name} has no MTD_MSIL2A.xml", file=self.path,
                             field="MTD_MSIL2A.xml",
                             fix="re-download the complete product (the metadata holds the "
                                 "quantification value and offsets)")
        return parse_mtd_msil2a(self.read_text("MTD_MSIL2A.xml"),
                                file=self.gdal_path("MTD_MSIL2A.xml"))[0]

    def band_member(self, band: str) -> str:
        """Member path of a band (or SCL) at its documented resolution."""
        folder = band_resolution_folder(band)
        res = L2A_RESOLUTION[band]
        hits = [m for m in self.members if m.startswith("GRANULE/") and
                f"/IMG_DATA/{folder}/" in m and m.endswith(f"_{band}_{res}m.jp2")]
        if len(hits) != 1:
            raise InputError(f"{len(hits)} files for band {band} at {res} m in {self.name}",
                             file=self.path, field=f"IMG_DATA/{folder}/*_{band}_{res}m.jp2",
                             fix="re-download the product or drop the band from the config")
        return hits[0]


def parse_sen2cor_name(path: Path) -> Sen2CorProduct | None:
    """Parse a SAFE folder / zip name; None when it is not an L2A SAFE name."""
    m = SAFE_NAME.match(Path(path).name)
    if m is None:
        return None
    acquired = np.datetime64(datetime.strptime(m["datatake"], "%Y%m%dT%H%M%S"), "ns")
    name = Path(path).name.removesuffix(".zip")
    return Sen2CorProduct(path=Path(path), name=name,
                          platform=f"SENTINEL2{m['mission'][-1]}", acquired=acquired,
                          tile=m["tile"], relative_orbit=int(m["orbit"]))


def find_sen2cor_products(src: Path, tile: str) -> list[Sen2CorProduct]:
    """L2A SAFE folders and .SAFE.zip files of ``tile`` in ``src``, sorted by time."""
    src = Path(src)
    if not src.is_dir():
        raise InputError("Sentinel-2 product folder not found", file=src,
                         field="inputs.S2.path", fix="point inputs.S2.path at the SAFE folder")
    tile = tile if tile.upper().startswith("T") else f"T{tile}"
    found = [parse_sen2cor_name(p) for p in sorted(src.glob(f"*_{tile}_*.SAFE*"))]
    found = [p for p in found if p is not None and p.tile == tile]
    if not found:
        raise InputError(f"no Sen2Cor L2A product of {tile} (S2?_MSIL2A_*_{tile}_*.SAFE[.zip])",
                         file=src, field="inputs.S2.path",
                         fix="check the tile name and the folder")
    return sorted(found, key=lambda p: p.acquired)


class GridReader(OpenFiles):
    """Band 1 of a raster opened once and warped onto a target grid (nearest and, for
    ``bilinear=True``, bilinear; nodata pixels skipped by the kernel), read window by window
    of the target grid. ``expect_res``: the documented pixel size; another one is an
    InputError. A raster already on the target grid is read directly. Context manager."""

    def __init__(self, path: str, *, crs, transform: affine.Affine, height: int, width: int,
                 nodata: float | None = 0, bilinear: bool = False,
                 expect_res: float | None = None, field: str | None = None) -> None:
        super().__init__()
        self.path, self.field = path, field
        with self.opening():
            src = self.open_raster(path, field=field, what="raster")
            if expect_res is not None and not np.allclose(src.res, expect_res):
                raise InputError(f"pixel size {src.res} m, documented {expect_res} m",
                                 file=path, field=field,
                                 fix="give the product as the producer wrote it")
            same = (src.crs == crs and src.transform == transform and src.height == height
                    and src.width == width)
            methods = (Resampling.nearest, Resampling.bilinear) if bilinear else (
                Resampling.nearest,)
            self.views = {m: src if same else self.enter(WarpedVRT(
                src, crs=crs, transform=transform, height=height, width=width, resampling=m,
                src_nodata=nodata, nodata=nodata)) for m in methods}

    def read(self, window: Window | None = None,
             resampling: Resampling = Resampling.nearest) -> np.ndarray:
        """The target grid's ``window`` (default: all of it) by ``resampling``."""
        with reading(self.path, what="raster", field=self.field):
            return self.views[resampling].read(1, window=window)


class L2ASceneReader(OpenFiles):
    """One L2A scene's band (and ``SCL``) rasters opened once on a target grid, read window
    by window: ``read(window)`` -> reflectance (band, y, x), valid (y, x), SCL (y, x).

    Bands are bilinear (nodata skipped), SCL and the no-data test nearest. valid = every
    band has data and SCL != 0. Context manager."""

    def __init__(self, paths: dict[str, str], radiometry: L2ARadiometry, *, crs,
                 transform: affine.Affine, height: int, width: int,
                 check_res: bool = True) -> None:
        grid = {"crs": crs, "transform": transform, "height": height, "width": width}
        self.radiometry = radiometry
        self.bands = [b for b in S2_BANDS if b in paths]
        super().__init__()
        with self.opening():
            self.readers = {band: self.enter(GridReader(
                paths[band], **grid, bilinear=L2A_RESOLUTION[band] != 10, field=band,
                expect_res=L2A_RESOLUTION[band] if check_res else None))
                for band in self.bands}
            self.scl = self.enter(GridReader(
                paths["SCL"], **grid, expect_res=20 if check_res else None, field="SCL"))

    def read(self, window: Window | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(reflectance, valid, SCL) of ``window`` of the target grid (default: all)."""
        scl = self.scl.read(window).astype(np.uint8)
        refl = np.empty((len(self.bands), *scl.shape), np.float32)
        valid = np.ones(scl.shape, bool)
        for i, band in enumerate(self.bands):
            reader = self.readers[band]
            dn = reader.read(window)
            if L2A_RESOLUTION[band] != 10:
                valid &= dn != 0
                dn = reader.read(window, Resampling.bilinear)
            valid &= dn != 0
            refl[i] = self.radiometry.reflectance(band, dn)
        valid &= (scl != 0) & np.isfinite(refl).all(axis=0)
        refl[:, ~valid] = np.nan
        return refl, valid, scl


def _mtd_msil2a(*, baseline: str, platform: str, acquired: np.datetime64, orbit: int,
                offset: float) -> str:
    """Minimal MTD_MSIL2A.xml: baseline, quantification, per-band BOA_ADD_OFFSET."""
    offsets = "" if not baseline_has_offset(baseline) else (
        "<BOA_ADD_OFFSET_VALUES_LIST>" + "".join(
            f'<BOA_ADD_OFFSET band_id="{i}">{offset:g}</BOA_ADD_OFFSET>'
            for i in range(len(MTD_BAND_ORDER))) + "</BOA_ADD_OFFSET_VALUES_LIST>")
    spectral = "".join(f'<Spectral_Information bandId="{i}" physicalBand="'
                       f'{b if b in ("B8A", "B10", "B11", "B12") else "B" + b[1:].lstrip("0")}"'
                       "/>" for i, b in enumerate(MTD_BAND_ORDER))
    when = str(np.datetime64(acquired, "ms")) + "Z"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/'
        'User_Product_Level-2A.xsd">\n<n1:General_Info><Product_Info>'
        f"<PRODUCT_START_TIME>{when}</PRODUCT_START_TIME><Datatake>"
        f"<SPACECRAFT_NAME>Sentinel-2{platform[-1]}</SPACECRAFT_NAME>"
        f"<SENSING_ORBIT_NUMBER>{orbit}</SENSING_ORBIT_NUMBER></Datatake>"
        f"<PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE></Product_Info>"
        f"<Product_Image_Characteristics><Spectral_Information_List>{spectral}"
        "</Spectral_Information_List><QUANTIFICATION_VALUES_LIST>"
        '<BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE>'
        f"</QUANTIFICATION_VALUES_LIST>{offsets}</Product_Image_Characteristics>"
        "</n1:General_Info>\n</n1:Level-2A_User_Product>\n")


def write_sen2cor_product(root: Path, *, tile: str, acquired: np.datetime64, platform: str,
                          reflectance: dict[str, np.ndarray], scl: np.ndarray, crs: str,
                          transform: affine.Affine, baseline: str = "05.09", orbit: int = 51,
                          offset: float = BASELINE_04_OFFSET, zipped: bool = False,
                          resolutions: dict[str, int] | None = None,
                          with_mtd: bool = True) -> Path:
    """Write a small Sen2Cor L2A SAFE (lossless JP2) folder or .SAFE.zip; return its path.

    ``reflectance``: band -> reflectance at its native resolution (NaN = no data, DN 0);
    DN = round(r * 10000 - offset) for baselines >= 04.00. ``scl`` at 20 m. ``transform``:
    the 10 m grid. ``resolutions`` overrides a band's pixel size (to fake bad products).
    """
    tile = tile if tile.startswith("T") else f"T{tile}"
    when = np.datetime64(acquired, "s").item().strftime("%Y%m%dT%H%M%S")
    name = (f"S2{platform[-1]}_MSIL2A_{when}_N{baseline.replace('.', '')}_R{orbit:03d}_{tile}_"
            f"{when}.SAFE")
    add = offset if baseline_has_offset(baseline) else 0.0
    res_of = {**L2A_RESOLUTION, **(resolutions or {})}
    target = Path(root) / (name + (".zip" if zipped else ""))
    target.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if zipped:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=target.parent)))
        else:
            tmp = stack.enter_context(atomic_path(target, directory=True))
        img = tmp / "GRANULE" / f"L2A_{tile}_A000001_{when}" / "IMG_DATA"
        for band, values in {**reflectance, "SCL": scl}.items():
            values = np.asarray(values, dtype=np.float64)
            folder = img / band_resolution_folder(band)
            folder.mkdir(parents=True, exist_ok=True)
            if band == "SCL":
                dn = values.astype(np.uint16)
            else:
                dn = np.where(np.isfinite(values), np.clip(np.round(
                    np.nan_to_num(values) * 10000 - add), 1, 65535), 0).astype(np.uint16)
            with rasterio.open(folder / f"{tile}_{when}_{band}_{L2A_RESOLUTION[band]}m.jp2",
                               "w", driver="JP2OpenJPEG", height=dn.shape[0],
                               width=dn.shape[1], count=1, dtype="uint16", crs=crs,
                               transform=transform @ affine.Affine.scale(res_of[band] / 10),
                               QUALITY=100, REVERSIBLE="YES") as dst:
                dst.write(dn, 1)
        if with_mtd:
            (tmp / "MTD_MSIL2A.xml").write_text(_mtd_msil2a(
                baseline=baseline, platform=platform, acquired=acquired, orbit=orbit,
                offset=offset))
        if zipped:
            with atomic_path(target) as ztmp, zipfile.ZipFile(ztmp, "w") as z:
                for f in sorted(tmp.rglob("*")):
                    if f.is_file():
                        z.write(f, f"{name}/{f.relative_to(tmp)}")
    return target


@dataclasses.dataclass(frozen=True)
class L2AScene:
    """One Sentinel-2 L2A acquisition to read: band (and ``SCL``) rasters and radiometry."""

    name: str
    acquired: np.datetime64
    platform: str
    relative_orbit: int
    source: str
    paths: dict[str, str]
    radiometry: L2ARadiometry


def check_bands(bands: list[str] | None) -> list[str]:
    """Requested Sentinel-2 bands in canonical order (default: all)."""
    bands = list(S2_BANDS if bands is None else bands)
    unknown = [b for b in bands if b not in S2_BANDS]
    if unknown:
        raise InputError(f"unknown Sentinel-2 bands {unknown}", field="bands",
                         fix=f"use canonical names among {S2_BANDS}")
    return [b for b in S2_BANDS if b in bands]


@one_gdal_env
def write_l2a_cube(scenes: list[L2AScene], tile: str, out: Path, *, bands: list[str],
                   aoi: AOI | None = None, reader: str) -> Path:
    """S2 cube at 10 m of L2A scenes on the 10 m grid of the first scene's first 10 m band.

    valid = every band has data (DN != 0) and SCL != 0; ``quality`` = SCL (nearest to 10 m,
    ``quality_kind = scl``: the mask stage applies the invalid classes). Duplicate days: the
    scene with more valid SCL pixels in the AOI is kept (gpvae.io.extract.one_per_day).
    """
    ref_band = next((b for b in bands if b in S2_10M), None)
    if ref_band is None:
        raise InputError("no 10 m band requested", field="bands",
                         fix="include at least one of B02 B03 B04 B08 (the 10 m grid)")
    ref_path = scenes[0].paths[ref_band]
    with reading(ref_path, what="raster", field=ref_band), rasterio.open(ref_path) as r:
        if not np.allclose(r.res, 10):
            raise InputError(f"pixel size {r.res} m, documented 10 m", file=ref_path,
                             field=ref_band, fix="give the product as the producer wrote it")
        crs, transform, h, w = r.crs, r.transform, r.height, r.width
    window = aoi_window(aoi, transform, h, w, file=ref_path)
    grid = {"crs": crs, "transform": window_transform(window, transform),
            "height": int(window.height), "width": int(window.width)}

    def n_valid(sc: L2AScene) -> int:
        with GridReader(sc.paths["SCL"], **grid) as scl:
            return sum(int(np.count_nonzero(scl.read(win) != 0))
                       for win in spatial_blocks(grid["height"], grid["width"]))

    scenes = one_per_day(sorted(scenes, key=lambda sc: sc.acquired), lambda sc: sc.acquired,
                         n_valid, lambda sc: sc.name)
    log.info("extracting %d %s scenes of %s -> %s", len(scenes), reader, tile, out)
    with cube_writer(out, with_quality=True, times=[sc.acquired for sc in scenes],
                     bands=bands, crs=crs.to_wkt(), transform=grid["transform"],
                     height=grid["height"], width=grid["width"], sensor="S2", tile=tile,
                     radiometry=builtin("S2").radiometry,
                     per_date={"platform": [sc.platform for sc in scenes],
                               "orbit_direction": [""] * len(scenes),
                               "relative_orbit": [sc.relative_orbit for sc in scenes]},
                     attrs={"reader": reader, "quality_kind": "scl",
                            "source_files": [sc.source for sc in scenes]}) as writer:
        for t, sc in enumerate(tqdm(scenes, desc=f"S2 {tile}", unit="scene")):
            with L2ASceneReader({b: sc.paths[b] for b in [*bands, "SCL"]}, sc.radiometry,
                                **grid) as reader:
                n = writer.write_blocks(t, reader.read)
            log.debug("%s: %.1f%% valid", sc.name, 100 * n / (grid["height"] * grid["width"]))
    return Path(out)


def sen2cor_scene(p: Sen2CorProduct, bands: list[str]) -> L2AScene:
    """The L2A scene of a SAFE product (metadata read, band files located)."""
    return L2AScene(name=p.name, acquired=p.acquired, platform=p.platform,
                    relative_orbit=p.relative_orbit, source=str(p.path),
                    paths={b: p.gdal_path(p.band_member(b)) for b in [*bands, "SCL"]},
                    radiometry=p.radiometry())


def extract_s2_sen2cor(src: Path, tile: str, out: Path, *, bands: list[str] | None = None,
                       aoi: AOI | None = None, start: str | None = None,
                       end: str | None = None) -> Path:
    """Sen2Cor L2A products of ``tile`` (SAFE folders and/or .SAFE.zip) -> S2 cube at 10 m
    (see :func:`write_l2a_cube`)."""
    bands = check_bands(bands)
    products = find_sen2cor_products(src, tile)
    keep = in_date_range(np.array([p.acquired for p in products]), start, end)
    products = [p for p, k in zip(products, keep, strict=True) if k]
    if not products:
        raise InputError(f"no Sen2Cor product of {tile} between {start} and {end}", file=src,
                         field="start/end", fix="widen the date range")
    return write_l2a_cube([sen2cor_scene(p, bands) for p in products], tile, out,
                          bands=bands, aoi=aoi, reader="sen2cor")
