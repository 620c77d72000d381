"""Generic netCDF / zarr cubes (FORCE, eo-learn, openEO, your own) to the canonical cube.

A generic cube has a time axis, one variable per band of a registry sensor (any band name:
B04, SR_B4, NDVI, VV...) on (time, y, x) (any order) and optional quality variables read
with rules (``boolean``, ``classes``, ``bits``, or the Sen2Cor ``scl`` / Theia ``theia_clm``
conventions; several rules combine). The CRS comes from the band variables'
CF grid mapping (``crs_wkt`` / ``spatial_ref`` or CF projection parameters), else from the
``crs`` argument. Times are sorted; duplicated timestamps are merged pixel by pixel: the
first observation in file order that has data wins (its quality goes with it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import affine
import numpy as np
import pyproj
import xarray as xr
from rasterio.windows import Window
from tqdm import tqdm

from gpvae.errors import InputError
from gpvae.io.cube import cube_writer
from gpvae.io.quality import MaskRules
from gpvae.io.sar import sar_to_linear
from gpvae.io.sensors import Sensor, builtin
from gpvae.io.window import aoi_window, in_date_range, window_transform

if TYPE_CHECKING:
    from gpvae.io.extract import AOI

log = logging.getLogger(__name__)

#: Names recognised as the y / x dimensions of a cube.
Y_NAMES = ("y", "lat", "latitude", "northing", "rows")
X_NAMES = ("x", "lon", "longitude", "easting", "cols")

#: Decoder of one band: (band, raw values (y, x)) -> physical float32 with NaN = no data.
Decoder = Callable[[str, np.ndarray], np.ndarray]


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


def linear_decoder(sensor: Sensor, *, scale: float = 1.0, offset: float = 0.0,
                   sar_units: str = "linear", file: object = None) -> Decoder:
    """Decoder value = raw * scale + offset (NaN stays NaN); SAR then converted to linear."""
    def decode(band: str, raw: np.ndarray) -> np.ndarray:
        value = np.asarray(raw, dtype=np.float64) * scale + offset
        if sensor.is_sar:
            return sar_to_linear(value, sar_units, file=file, field=band)
        return value.astype(np.float32)
    return decode


def raw_integer(var: xr.DataArray) -> bool:
    """Whether a variable stores raw integer product values (integer on disk, no CF
    ``scale_factor`` / ``add_offset`` that decoding already applied)."""
    stored = var.encoding.get("dtype", var.dtype)
    cf_scaled = any(k in var.encoding for k in ("scale_factor", "add_offset"))
    return np.issubdtype(np.dtype(stored), np.integer) and not cf_scaled


def resolve_scale(sensor: Sensor, var: xr.DataArray, scale: float | None,
                  offset: float | None, *, file: object = None) -> tuple[float, float]:
    """Scale and offset of a band: the given ones; unset, the sensor's product scale/offset
    for raw integer values (:func:`raw_integer`), else 1 and 0 (values already physical)."""
    integer = raw_integer(var)
    s = scale if scale is not None else (sensor.scale if integer else 1.0)
    o = offset if offset is not None else (sensor.offset if integer else 0.0)
    if scale is None or offset is None:
        log.info("%s: %s values of %s: physical = raw * %g + %g (%s)", file,
                 "raw integer" if integer else "float", sensor.name, s, o,
                 "the sensor's product scale" if integer else "taken as physical")
    return float(s), float(o)


def check_band_map(ds: xr.Dataset, sensor: Sensor, bands: dict[str, str], *,
                   file: object = None) -> list[str]:
    """Bands of a band -> variable map, checked against the sensor and the file, in the
    sensor's order."""
    if not bands:
        raise InputError(f"no band mapped for {sensor.name}", file=file, field="bands",
                         fix=f"map bands of {sensor.name} ({', '.join(sensor.band_names)}) to "
                         "variables")
    sensor.check_bands(bands, file=file, field="bands")
    names = sensor.ordered(bands)
    for b in names:
        if bands[b] not in ds.variables:
            raise InputError(f"band variable {bands[b]!r} (band {b}) not in the cube",
                             file=file, field=f"bands.{b}",
                             fix=f"variables there: {sorted(map(str, ds.data_vars))}")
    return names


def extract_cube_dataset(ds: xr.Dataset, tile: str, out: Path, *, sensor: Sensor,
                         bands: dict[str, str], decode: Decoder, time_var: str = "time",
                         mask: MaskRules | None = None, crs: str | None = None,
                         aoi: AOI | None = None, start: str | None = None,
                         end: str | None = None, reader: str = "generic",
                         source: Path | None = None) -> Path:
    """Write the canonical cube of an opened dataset (band -> variable map), date by date."""
    file = source
    names = check_band_map(ds, sensor, bands, file=file)
    if time_var not in ds.variables:
        raise InputError(f"time variable {time_var!r} not in the cube", file=file,
                         field="time_var", fix=f"coordinates there: {sorted(map(str, ds.coords))}")
    for var in [] if mask is None else mask.variables:
        if var not in ds.variables:
            raise InputError(f"mask variable {var!r} not in the cube", file=file,
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
    uniq, groups = time_groups(times.astype("datetime64[ns]"))
    if len(uniq) < len(times):
        log.warning("%s: %d duplicated timestamps merged (first observation with data wins)",
                    file, len(times) - len(uniq))
    keep = in_date_range(uniq, start, end)
    uniq, groups = uniq[keep], [g for g, k in zip(groups, keep, strict=True) if k]
    if not len(uniq):
        raise InputError(f"no date of the cube in [{start}, {end}]", file=file,
                         field="start/end", fix="widen the date range")

    def plane(var: str, i: int, block: Window) -> np.ndarray:
        """Raw values (y, x) of date ``i`` in ``block`` of the north-up AOI grid: only that
        window of the file is read (flipped file axes map to mirrored file windows)."""
        r0, c0 = int(win.row_off + block.row_off), int(win.col_off + block.col_off)
        r1, c1 = r0 + int(block.height), c0 + int(block.width)
        rs = slice(ny - r1, ny - r0) if flip_y else slice(r0, r1)
        cs = slice(nx - c1, nx - c0) if flip_x else slice(c0, c1)
        da = ds[var].isel({tdim: int(i), ydim: rs, xdim: cs}).transpose(ydim, xdim)
        a = np.asarray(da.values)
        a = a[::-1] if flip_y else a
        return a[:, ::-1] if flip_x else a

    attrs = {"reader": reader, "source_files": [str(source)] if source else []}
    kind = None
    if mask is not None:
        kind = mask.stored_kind(ds)
        attrs.update(mask.attrs(kind))
        if len(mask.rules) > 1:
            log.info("%s: %d quality rules combined at extraction", file, len(mask.rules))
        elif kind != mask.rules[0].kind:
            log.info("%s: quality codes do not fit a byte, rule %s evaluated on read",
                     file, mask.rules[0].kind)

    def observation(i: int, block: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        data = np.stack([decode(b, plane(bands[b], i, block)) for b in names]
                        ).astype(np.float32)
        valid = np.isfinite(data).all(axis=0)
        data[:, ~valid] = np.nan
        quality = None if mask is None else mask.stored(
            {v: plane(v, i, block) for v in mask.variables}, kind)
        return data, valid, quality

    direction = orbit_direction(sensor)
    with cube_writer(out, with_quality=mask is not None, times=uniq, bands=names, crs=wkt,
                     transform=window_transform(win, transform), height=int(win.height),
                     width=int(win.width), sensor=sensor.name, tile=tile,
                     radiometry=sensor.radiometry, definition=sensor,
                     per_date={"orbit_direction": np.full(len(uniq), direction)},
                     attrs=attrs) as writer:
        for t, idx in enumerate(tqdm(groups, desc=f"{reader} {tile} {sensor.name}",
                                     disable=None)):
            writer.write_blocks(t, lambda block, idx=idx: merge_first_valid(
                [observation(i, block) for i in idx]))
    log.info("wrote %s: %d dates, bands %s", out, len(uniq), names)
    return Path(out)


def orbit_direction(sensor: Sensor) -> str:
    """``ASC`` / ``DES`` for SAR sensors named ``..._ASC`` / ``..._DES``, else ``""``."""
    tail = sensor.name.rsplit("_", 1)[-1]
    return tail if sensor.is_sar and tail in ("ASC", "DES") else ""


def extract_generic(src: Path, tile: str, out: Path, *, sensor: Sensor | str,
                    bands: dict[str, str], time_var: str = "time",
                    mask: dict | list | None = None, crs: str | None = None,
                    scale: float | None = None, offset: float | None = None,
                    sar_units: str = "linear", aoi: AOI | None = None,
                    start: str | None = None, end: str | None = None) -> Path:
    """Any netCDF/zarr cube to the canonical cube: physical = raw * scale + offset.

    ``sensor``: a registry sensor (or a built-in's name); ``bands``: band of the sensor ->
    variable name; ``scale`` / ``offset`` None: see :func:`resolve_scale`; ``mask``: one rule
    or a list (:class:`~gpvae.io.quality.MaskRules`); ``sar_units`` (SAR sensors): units
    after scale/offset, ``linear`` | ``db`` | ``db_uint16``.
    """
    src = Path(src)
    sensor = builtin(sensor) if isinstance(sensor, str) else sensor
    with open_any_cube(src) as ds:
        names = check_band_map(ds, sensor, bands, file=src)
        s, o = resolve_scale(sensor, ds[bands[names[0]]], scale, offset, file=src)
        decode = linear_decoder(sensor, scale=s, offset=o, sar_units=sar_units, file=src)
        return extract_cube_dataset(ds, tile, out, sensor=sensor, bands=bands, decode=decode,
                                    time_var=time_var,
                                    mask=MaskRules.from_config(mask, file=src), crs=crs,
                                    aoi=aoi, start=start, end=end, reader="generic",
                                    source=src)
