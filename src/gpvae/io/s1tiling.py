"""S1Tiling Sentinel-1 backscatter images: naming, writer and reader.

Format (docs/contracts.md section 0, notes/formats.md): a flat folder of
``s1{a|b}_<tile without T>_{vv|vh}_{ASC|DES}_<relorbit 3 digits>_<YYYYMMDD>t<hhmmss|xxxxxx>.tif``
Float32 linear calibrated backscatter (0 = no data), with optional ``<stem>_BorderMask.tif``
(uint8, 1 = valid), on the tile's 10 m grid.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import affine
import numpy as np
from rasterio.windows import Window

from gpvae.errors import InputError
from gpvae.io.atomic import atomic_path
from gpvae.io.geotiff import OpenFiles, read_band, write_geotiff

#: Image name; groups: platform, tile, pol, direction, orbit, date, time.
S1TILING_NAME = re.compile(
    r"^(?P<platform>s1[a-d])_(?P<tile>\w{5})_(?P<pol>vv|vh|hh|hv)_(?P<direction>ASC|DES)_"
    r"(?P<orbit>\d{3})_(?P<date>\d{8})t(?P<time>\d{6}|xxxxxx)\.tif$"
)


@dataclasses.dataclass(frozen=True)
class S1Image:
    """One S1Tiling image file and what its name says."""

    path: Path
    platform: str
    tile: str
    polarisation: str
    orbit_direction: str
    relative_orbit: int
    acquired: np.datetime64

    @property
    def border_mask(self) -> Path:
        """Path of the image's (optional) border mask."""
        return self.path.with_name(self.path.stem + "_BorderMask.tif")


def s1tiling_tile(tile: str) -> str:
    """S1Tiling tile code: the MGRS tile without its leading ``T`` (T31TCJ -> 31TCJ)."""
    return tile[1:] if tile.upper().startswith("T") else tile


def s1tiling_name(*, tile: str, acquired: np.datetime64, platform: str, orbit_direction: str,
                  relative_orbit: int, polarisation: str) -> str:
    """S1Tiling file name, e.g. ``s1a_31TCJ_vv_ASC_030_20220103t061234.tif``."""
    when = np.datetime64(acquired, "s").item()
    return (f"{platform.lower()}_{s1tiling_tile(tile)}_{polarisation.lower()}_"
            f"{orbit_direction.upper()}_{int(relative_orbit):03d}_"
            f"{when.strftime('%Y%m%d')}t{when.strftime('%H%M%S')}.tif")


def parse_s1tiling_name(path: Path) -> S1Image | None:
    """Parse an S1Tiling image name; None when the name does not match (e.g. masks, LIA)."""
    m = S1TILING_NAME.match(Path(path).name)
    if m is None:
        return None
    clock = "000000" if m["time"] == "xxxxxx" else m["time"]
    acquired = np.datetime64(datetime.strptime(m["date"] + clock, "%Y%m%d%H%M%S"), "ns")
    return S1Image(path=Path(path), platform=m["platform"], tile=m["tile"],
                   polarisation=m["pol"].upper(), orbit_direction=m["direction"],
                   relative_orbit=int(m["orbit"]), acquired=acquired)


def write_s1tiling_image(root: Path, *, tile: str, acquired: np.datetime64, platform: str,
                         orbit_direction: str, relative_orbit: int, polarisation: str,
                         sigma0: np.ndarray, crs: str, transform: affine.Affine,
                         border_mask: bool = True) -> Path:
    """Write one S1Tiling image (Float32 linear, NaN or 0 -> 0 = no data) and, if
    ``border_mask``, its ``_BorderMask.tif`` (uint8, 1 = valid). ``platform``: s1a/s1b."""
    sigma0 = np.asarray(sigma0, dtype=np.float32)
    good = np.isfinite(sigma0) & (sigma0 != 0)
    name = s1tiling_name(tile=tile, acquired=acquired, platform=platform,
                         orbit_direction=orbit_direction, relative_orbit=relative_orbit,
                         polarisation=polarisation)
    target = Path(root) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if border_mask:
        mask_target = target.with_name(target.stem + "_BorderMask.tif")
        with atomic_path(mask_target) as tmp:
            write_geotiff(tmp, good.astype(np.uint8), crs=crs, transform=transform)
    with atomic_path(target) as tmp:
        write_geotiff(tmp, np.where(good, sigma0, 0).astype(np.float32), crs=crs,
                      transform=transform, nodata=0)
    return target


def find_s1tiling_images(s1_dir: Path, tile: str, orbit_direction: str | None = None
                         ) -> list[S1Image]:
    """S1Tiling images of ``tile`` (and orbit direction) in ``s1_dir``, sorted by time."""
    s1_dir = Path(s1_dir)
    if not s1_dir.is_dir():
        raise InputError("Sentinel-1 folder not found", file=s1_dir, field="inputs.S1.path",
                         fix="point inputs.S1.path at the S1Tiling output folder")
    code = s1tiling_tile(tile)
    images = [im for im in (parse_s1tiling_name(p) for p in sorted(s1_dir.glob("s1*.tif")))
              if im is not None and im.tile == code
              and (orbit_direction is None or im.orbit_direction == orbit_direction)]
    if not images:
        raise InputError(f"no S1Tiling image for tile {code}"
                         + (f" orbit {orbit_direction}" if orbit_direction else ""),
                         file=s1_dir, field="inputs.S1.path",
                         fix="check the tile name, the orbit direction and the folder")
    return sorted(images, key=lambda im: (im.acquired, im.polarisation))


@dataclasses.dataclass(frozen=True)
class S1Acquisition:
    """The VV and VH images of one acquisition (platform, orbit, time)."""

    vv: S1Image
    vh: S1Image

    @property
    def acquired(self) -> np.datetime64:
        """Acquisition time (from the name)."""
        return self.vv.acquired


def group_s1tiling_images(images: list[S1Image]) -> list[S1Acquisition]:
    """Pair VV and VH images of the same acquisition; a missing partner is an InputError."""
    groups: dict[tuple, dict[str, S1Image]] = {}
    for im in images:
        key = (im.platform, im.tile, im.orbit_direction, im.relative_orbit, im.acquired)
        groups.setdefault(key, {})[im.polarisation] = im
    out = []
    for pols in groups.values():
        for need, have in (("VV", "VH"), ("VH", "VV")):
            if need not in pols and have in pols:
                other = pols[have].path
                missing = other.with_name(other.name.replace(f"_{have.lower()}_",
                                                             f"_{need.lower()}_"))
                raise InputError(f"S1Tiling {need} image missing for {other.name}",
                                 file=missing, field=need,
                                 fix="provide both VV and VH (rerun S1Tiling for this date)")
        if "VV" in pols:
            out.append(S1Acquisition(vv=pols["VV"], vh=pols["VH"]))
    return sorted(out, key=lambda a: a.acquired)


def check_linear(values: np.ndarray, *, file: Path, field: str,
                 max_negative_fraction: float = 0.5) -> None:
    """Reject dB input: linear backscatter is >= 0, dB of sigma0 is mostly negative."""
    data = values[np.isfinite(values) & (values != 0)]
    if data.size and (data < 0).mean() > max_negative_fraction:
        raise InputError(f"{(data < 0).mean():.0%} of the values are negative: this looks like "
                         "backscatter in dB, linear backscatter is expected", file=file,
                         field=field, fix="give S1Tiling's linear outputs (dB = 10 log10 is "
                         "only applied inside the model)")


class S1TilingReader(OpenFiles):
    """The VV / VH images (and border masks) of one acquisition opened once, read window by
    window: ``read(window)`` -> (VV, VH) linear sigma0 (2, y, x) with NaN where invalid, and
    valid (y, x) = BorderMask of both images (when present) AND finite value > 0 for both
    pols. ``grid_check(image, grid)`` is called with each image's grid when it is opened.
    Use as a context manager."""

    def __init__(self, acq: S1Acquisition, *,
                 grid_check: Callable[[S1Image, tuple], None] | None = None) -> None:
        self.images = (acq.vv, acq.vh)
        self.files: list[Path] = []
        self.sources: list[tuple] = []
        super().__init__()
        with self.opening():
            for im in self.images:
                if not im.path.is_file():
                    raise InputError("raster file not found", file=im.path,
                                     fix="check the product is complete (re-download it)")
                src = self.open_raster(im.path, field=im.polarisation)
                if grid_check is not None:
                    grid_check(im, (src.crs, src.transform, src.height, src.width))
                self.files.append(im.path)
                border = None
                if im.border_mask.is_file():
                    border = self.open_raster(im.border_mask, field="BorderMask")
                    self.files.append(im.border_mask)
                self.sources.append((im, src, border))

    def read(self, window: Window | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(sigma0 (2, y, x), valid (y, x)) of ``window`` (default: the whole image)."""
        data, valid = [], None
        for im, src, border in self.sources:
            values = read_band(src, field=im.polarisation, window=window).astype(np.float32)
            check_linear(values, file=im.path, field=im.polarisation)
            ok = np.isfinite(values) & (values > 0)
            if border is not None:
                ok &= read_band(border, field="BorderMask", window=window).astype(bool)
            valid = ok if valid is None else valid & ok
            data.append(values)
        stack = np.stack(data)
        stack[:, ~valid] = np.nan
        return stack, valid


def read_s1tiling_acquisition(acq: S1Acquisition, *, window: Window | None = None,
                              grid_check: Callable[[S1Image, tuple], None] | None = None
                              ) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """Read (VV, VH) linear sigma0 (2, y, x) with NaN where invalid, valid (y, x), files, in
    one go (see :class:`S1TilingReader`, what the extract stage uses block by block)."""
    with S1TilingReader(acq, grid_check=grid_check) as reader:
        data, valid = reader.read(window)
        return data, valid, list(reader.files)
