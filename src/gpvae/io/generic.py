"""Generic netCDF / zarr cubes (FORCE, eo-learn, openEO, your own) to the canonical cube.

A generic cube has a time axis, one variable per band on (time, y, x) (any order) and an
optional quality variable read with a rule (``boolean``, ``classes``, ``bits``, or the
Sen2Cor ``scl`` / Theia ``theia_clm`` conventions). The CRS comes from the band variables'
CF grid mapping (``crs_wkt`` / ``spatial_ref`` or CF projection parameters), else from the
``crs`` argument. Times are sorted; duplicated timestamps are merged pixel by pixel: the
first observation in file order that has data wins (its quality goes with it).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import affine
import numpy as np
import pyproj
import xarray as xr
from tqdm import tqdm

from gpvae.errors import InputError
from gpvae.io.cube import cube_writer
from gpvae.io.quality import QUALITY_KINDS, any_bit_set, in_classes
from gpvae.io.sar import sar_to_linear
from gpvae.io.sensors import SENSOR_BANDS, SENSOR_RADIOMETRY
from gpvae.io.window import aoi_window, in_date_range, window_transform

if TYPE_CHECKING:
    from gpvae.io.extract import AOI

log = logging.getLogger(__name__)

#: Names recognised as the y / x dimensions of a cube.
Y_NAMES = ("y", "lat", "latitude", "northing", "rows")
X_NAMES = ("x", "lon", "longitude", "easting", "cols")

#: Decoder of one band: (band, raw values (y, x)) -> physical float32 with NaN = no data.
Decoder = Callable[[str, np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class MaskRule:
    """Quality variable and its rule: kind (see gpvae.io.quality) and invalid list."""

    variable: str
    kind: str
    invalid: tuple[int, ...] = ()
    invalid_if: bool = True

    @classmethod
    def from_config(cls, mask: dict | None, *, file: object = None) -> MaskRule | None:
        """Parse ``{"variable", "kind", "invalid": [...], "invalid_if": true}`` (None: none)."""
        if not mask:
            return None
        fix = ("give mask as {variable: NAME, kind: boolean|classes|bits|scl|theia_clm, "
               "invalid: [codes or bits]}")
        if "variable" not in mask or mask.get("kind") not in QUALITY_KINDS:
            raise InputError(f"bad mask rule {mask}", file=file, field="mask", fix=fix)
        invalid = tuple(int(v) for v in mask.get("invalid", ()))
        if mask["kind"] in ("classes", "bits") and not invalid:
            raise InputError(f"mask kind {mask['kind']} needs a non-empty invalid list",
                             file=file, field="mask.invalid", fix=fix)
        return cls(variable=str(mask["variable"]), kind=str(mask["kind"]), invalid=invalid,
                   invalid_if=bool(mask.get("invalid_if", True)))

    def stored_kind(self, values: xr.DataArray) -> str:
        """Kind of the stored quality byte: the rule's own kind when the raw codes fit a byte
        (and bit rules use bits 0-7), else ``boolean`` (the rule is evaluated on read)."""
        if self.kind in ("boolean", "scl", "theia_clm"):
            return self.kind  # byte codes by definition
        lo, hi = float(values.min()), float(values.max())
        if lo >= 0 and hi <= 255 and not (self.kind == "bits" and max(self.invalid) > 7):
            return self.kind
        return "boolean"

    def stored(self, raw: np.ndarray, kind: str) -> np.ndarray:
        """Quality byte of raw codes for a stored ``kind`` (boolean: 1 = invalid)."""
        raw = np.nan_to_num(np.asarray(raw, dtype=np.float64), nan=0.0).astype(np.int64)
        if kind != "boolean":
            return raw.astype(np.uint8)
        if self.kind == "boolean":
            return ((raw != 0) == self.invalid_if).astype(np.uint8)
        evaluated = any_bit_set(raw, self.invalid) if self.kind == "bits" else in_classes(
            raw, self.invalid)
        return evaluated.astype(np.uint8)


def open_any_cube(src: Path) -> xr.Dataset:
    """Open a netCDF file or a zarr store lazily (CF decoding on)."""
    src = Path(src)
    if not src.exists():
        raise InputError("cube not found", file=src, fix="check the input path in the config")
    try:
        if src.is_dir() or src.suffix == ".zarr":
            try:
                return xr.open_zarr(src, consolidated=True)
            except ValueError:  # no consolidated metadata
                return xr.open_zarr(src, consolidated=False)
        return xr.open_dataset(src)
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"cannot open the cube ({err})", file=src,
                         fix="give a netCDF file or a zarr store") from err


def grid_mapping_crs(ds: xr.Dataset, var: str, *, crs: str | None = None,
                     file: object = None) -> str:
    """WKT of the CRS of ``var``: its CF grid mapping, else ``crs``; InputError if neither."""
    name = ds[var].attrs.get("grid_mapping") or ds[var].encoding.get("grid_mapping")
    if name and name in ds.variables:
        attrs = ds[name].attrs
        for key in ("crs_wkt", "spatial_ref"):
            if attrs.get(key):
                return pyproj.CRS.from_user_input(attrs[key]).to_wkt()
        try:
            return pyproj.CRS.from_cf(attrs).to_wkt()
        except pyproj.exceptions.CRSError as err:
            if crs is None:
                raise InputError(f"grid mapping {name!r} is not a CRS ({err})", file=file,
                                 field=f"{var}:grid_mapping",
                                 fix="give the CRS in the config (crs: EPSG:32631)") from err
    if crs is None:
        raise InputError(f"variable {var!r} has no CF grid mapping and no CRS was given",
                         file=file, field=f"{var}:grid_mapping",
                         fix="add a grid-mapping variable (crs_wkt) or set crs in the config")
    return pyproj.CRS.from_user_input(crs).to_wkt()


def spatial_dims(da: xr.DataArray, time_dim: str, *, file: object = None) -> tuple[str, str]:
    """(y, x) dimension names of a band variable."""
    rest = [d for d in da.dims if d != time_dim]
    ydim = next((d for d in rest if d.lower() in Y_NAMES), None)
    xdim = next((d for d in rest if d.lower() in X_NAMES), None)
    if len(rest) != 2 or ydim is None or xdim is None:
        raise InputError(f"variable {da.name!r} has dims {da.dims}; expected the time "
                         f"dimension {time_dim!r} and y/x dimensions", file=file,
                         field=str(da.name), fix="give one variable per band on (time, y, x)")
    return ydim, xdim


def axis_start_step(coord: np.ndarray, name: str, *, file: object = None
                    ) -> tuple[float, float]:
    """First pixel centre and step of a regular 1-D coordinate."""
    c = np.asarray(coord, dtype=np.float64)
    if c.size < 2:
        raise InputError(f"axis {name} needs at least 2 pixels", file=file, field=name,
                         fix="give a cube of at least 2 x 2 pixels")
    steps = np.diff(c)
    if not np.allclose(steps, steps[0], rtol=1e-6, atol=1e-9 * abs(steps[0])) or steps[0] == 0:
        raise InputError(f"axis {name} is not regularly spaced", file=file, field=name,
                         fix="resample the cube to a regular grid first")
    return float(c[0]), float(steps[0])


def north_up_grid(y: np.ndarray, x: np.ndarray, *, file: object = None
                  ) -> tuple[affine.Affine, bool, bool]:
    """North-up transform of pixel-centre axes, and whether y / x must be flipped to it."""
    y0, dy = axis_start_step(y, "y", file=file)
    x0, dx = axis_start_step(x, "x", file=file)
    flip_y, flip_x = dy > 0, dx < 0
    top = y0 + (len(y) - 1) * dy if flip_y else y0
    left = x0 + (len(x) - 1) * dx if flip_x else x0
    transform = affine.Affine(abs(dx), 0, left - abs(dx) / 2, 0, -abs(dy), top + abs(dy) / 2)
    return transform, bool(flip_y), bool(flip_x)


def time_groups(times: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Unique increasing times and, for each, the file indices of its observations (in order)."""
    order = np.argsort(times, kind="stable")
    uniq, first = np.unique(times[order], return_index=True)
    bounds = list(first[1:]) + [order.size]
    return uniq, [order[a:b] for a, b in zip(first, bounds, strict=True)]


def merge_first_valid(layers: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Merge observations of one timestamp: per pixel the first one with data wins."""
    data, valid, quality = (None if a is None else a.copy() for a in layers[0])
    for d, v, q in layers[1:]:
        take = v & ~valid
        data[:, take] = d[:, take]
        if quality is not None:
            quality[take] = q[take]
        valid |= take
    return data, valid, quality


def linear_decoder(sensor: str, *, scale: float = 1.0, offset: float = 0.0,
                   sar_units: str = "linear", file: object = None) -> Decoder:
    """Decoder value = raw * scale + offset (NaN stays NaN); S1 then converted to linear."""
    def decode(band: str, raw: np.ndarray) -> np.ndarray:
        value = np.asarray(raw, dtype=np.float64) * scale + offset
        if sensor.startswith("S1"):
            return sar_to_linear(value, sar_units, file=file, field=band)
        return value.astype(np.float32)
    return decode


def extract_cube_dataset(ds: xr.Dataset, tile: str, out: Path, *, sensor: str,
                         bands: dict[str, str], decode: Decoder, time_var: str = "time",
                         mask: MaskRule | None = None, crs: str | None = None,
                         aoi: AOI | None = None, start: str | None = None,
                         end: str | None = None, reader: str = "generic",
                         source: Path | None = None) -> Path:
    """Write the canonical cube of an opened dataset (band -> variable map), date by date."""
    file = source
    if sensor not in SENSOR_BANDS:
        raise InputError(f"unknown sensor {sensor!r}", file=file, field="sensor",
                         fix=f"use one of {list(SENSOR_BANDS)}")
    unknown = set(bands) - set(SENSOR_BANDS[sensor])
    if unknown or not bands:
        raise InputError(f"bands {sorted(unknown) or '(none)'} are not bands of {sensor}",
                         file=file, field="bands",
                         fix=f"map canonical names {SENSOR_BANDS[sensor]} to variables")
    names = [b for b in SENSOR_BANDS[sensor] if b in bands]
    for b in names:
        if bands[b] not in ds.variables:
            raise InputError(f"band variable {bands[b]!r} (band {b}) not in the cube",
                             file=file, field=f"bands.{b}",
                             fix=f"variables there: {sorted(map(str, ds.data_vars))}")
    if time_var not in ds.variables:
        raise InputError(f"time variable {time_var!r} not in the cube", file=file,
                         field="time_var", fix=f"coordinates there: {sorted(map(str, ds.coords))}")
    if mask is not None and mask.variable not in ds.variables:
        raise InputError(f"mask variable {mask.variable!r} not in the cube", file=file,
                         field="mask.variable", fix="name an existing variable or drop mask")
    first = ds[bands[names[0]]]
    tdim = ds[time_var].dims[0] if ds[time_var].dims else time_var
    ydim, xdim = spatial_dims(first, tdim, file=file)
    wkt = grid_mapping_crs(ds, bands[names[0]], crs=crs, file=file)
    times = ds[time_var].values
    if not np.issubdtype(times.dtype, np.datetime64):
        raise InputError(f"time variable {time_var!r} is not decoded as dates ({times.dtype})",
                         file=file, field=time_var,
                         fix="give CF time units, e.g. 'days since 1990-01-01'")
    transform, flip_y, flip_x = north_up_grid(ds[ydim].values, ds[xdim].values, file=file)
    ny, nx = ds.sizes[ydim], ds.sizes[xdim]
    win = aoi_window(aoi, transform, ny, nx, file=file)
    rows = slice(int(win.row_off), int(win.row_off + win.height))
    cols = slice(int(win.col_off), int(win.col_off + win.width))
    uniq, groups = time_groups(times.astype("datetime64[ns]"))
    if len(uniq) < len(times):
        log.warning("%s: %d duplicated timestamps merged (first observation with data wins)",
                    file, len(times) - len(uniq))
    keep = in_date_range(uniq, start, end)
    uniq, groups = uniq[keep], [g for g, k in zip(groups, keep, strict=True) if k]
    if not len(uniq):
        raise InputError(f"no date of the cube in [{start}, {end}]", file=file,
                         field="start/end", fix="widen the date range")

    def plane(var: str, i: int) -> np.ndarray:
        da = ds[var].isel({tdim: int(i)}).transpose(ydim, xdim)
        a = np.asarray(da.values)
        a = a[::-1] if flip_y else a
        a = a[:, ::-1] if flip_x else a
        return a[rows, cols]

    attrs = {"reader": reader, "source_files": [str(source)] if source else []}
    kind = None
    if mask is not None:
        kind = mask.stored_kind(ds[mask.variable])
        attrs["quality_kind"] = kind
        if kind in ("bits", "classes"):
            attrs["quality_invalid"] = json.dumps(list(mask.invalid))
        if kind != mask.kind:
            log.info("%s: quality codes do not fit a byte, rule %s evaluated on read",
                     file, mask.kind)

    def observation(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        data = np.stack([decode(b, plane(bands[b], i)) for b in names]).astype(np.float32)
        valid = np.isfinite(data).all(axis=0)
        data[:, ~valid] = np.nan
        quality = None if mask is None else mask.stored(plane(mask.variable, i), kind)
        return data, valid, quality

    direction = sensor.split("_")[1] if sensor.startswith("S1_") else ""
    with cube_writer(out, with_quality=mask is not None, times=uniq, bands=names, crs=wkt,
                     transform=window_transform(win, transform), height=int(win.height),
                     width=int(win.width), sensor=sensor, tile=tile,
                     radiometry=SENSOR_RADIOMETRY[sensor],
                     per_date={"orbit_direction": np.full(len(uniq), direction)},
                     attrs=attrs) as writer:
        for t, idx in enumerate(tqdm(groups, desc=f"{reader} {tile} {sensor}", disable=None)):
            writer.write(t, *merge_first_valid([observation(i) for i in idx]))
    log.info("wrote %s: %d dates, bands %s", out, len(uniq), names)
    return Path(out)


def extract_generic(src: Path, tile: str, out: Path, *, sensor: str, bands: dict[str, str],
                    time_var: str = "time", mask: dict | None = None, crs: str | None = None,
                    scale: float = 1.0, offset: float = 0.0, sar_units: str = "linear",
                    aoi: AOI | None = None, start: str | None = None,
                    end: str | None = None) -> Path:
    """Any netCDF/zarr cube to the canonical cube: physical = raw * scale + offset.

    ``bands``: canonical band -> variable name; ``mask``: see :class:`MaskRule`;
    ``sar_units`` (S1 sensors): units after scale/offset, ``linear`` | ``db`` | ``db_uint16``.
    """
    src = Path(src)
    with open_any_cube(src) as ds:
        decode = linear_decoder(sensor, scale=scale, offset=offset, sar_units=sar_units,
                                file=src)
        return extract_cube_dataset(ds, tile, out, sensor=sensor, bands=bands, decode=decode,
                                    time_var=time_var,
                                    mask=MaskRule.from_config(mask, file=src), crs=crs,
                                    aoi=aoi, start=start, end=end, reader="generic",
                                    source=src)
