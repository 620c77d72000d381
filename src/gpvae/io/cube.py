"""The canonical cube file (docs/contracts.md section 1): writer, validating opener, grid."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import affine
import netCDF4
import numpy as np
import rasterio
import rasterio.crs
import xarray as xr
from rasterio.windows import Window

import gpvae
from gpvae.errors import InputError
from gpvae.io.cube_checks import CubeChecks
from gpvae.io.ncstream import VarSpec, stream_netcdf
from gpvae.io.sensors import Sensor, builtin_sensors, make_sensor
from gpvae.io.window import spatial_blocks

#: Per-date coordinates and their dtype / default value.
PER_DATE: dict[str, tuple[type, object]] = {
    "platform": (str, ""), "orbit_direction": (str, ""), "relative_orbit": (np.int16, 0),
}


def pixel_centres(transform: affine.Affine, height: int, width: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Map coordinates (y, x) of pixel centres of a north-up grid: x = c + (j + 0.5) a."""
    if transform.b != 0 or transform.d != 0:
        raise InputError("rotated grids are not supported", field="transform",
                         fix="warp the inputs to a north-up grid first")
    x = transform.c + (np.arange(width) + 0.5) * transform.a
    y = transform.f + (np.arange(height) + 0.5) * transform.e
    return y.astype(np.float64), x.astype(np.float64)


def spatial_ref(crs: str | rasterio.crs.CRS, transform: affine.Affine) -> xr.DataArray:
    """CF grid-mapping variable ``spatial_ref`` (crs_wkt, spatial_ref, GeoTransform)."""
    wkt = rasterio.crs.CRS.from_user_input(crs).to_wkt()
    gt = " ".join(repr(float(v)) for v in transform.to_gdal())
    return xr.DataArray(np.int32(0), attrs={"crs_wkt": wkt, "spatial_ref": wkt,
                                            "GeoTransform": gt})


def cube_skeleton(*, times: np.ndarray, bands: list[str], crs: str, transform: affine.Affine,
                  height: int, width: int, sensor: str, tile: str, radiometry: str,
                  per_date: dict[str, np.ndarray] | None = None,
                  attrs: dict | None = None, definition: Sensor | None = None) -> xr.Dataset:
    """Coordinates, grid mapping and attributes of a cube (no data variables).

    ``definition``: the sensor's registry entry, recorded as the ``sensor_definition``
    attribute (default: the built-in of that name, if any)."""
    times = np.asarray(times).astype("datetime64[ns]")
    nt = times.shape[0]
    if nt > 1 and not (np.diff(times) > np.timedelta64(0, "ns")).all():
        raise ValueError("cube times must be unique and increasing")
    y, x = pixel_centres(transform, height, width)
    per_date = dict(per_date or {})
    coords: dict[str, object] = {"time": times, "band": np.asarray(bands, dtype=str),
                                 "y": ("y", y, {"units": "m", "axis": "Y"}),
                                 "x": ("x", x, {"units": "m", "axis": "X"})}
    for name, (dtype, default) in PER_DATE.items():
        vals = per_date.pop(name, np.full(nt, default))
        coords[name] = ("time", np.asarray(vals).astype(dtype))
    for name, vals in per_date.items():
        coords[name] = ("time", np.asarray(vals))
    extra = dict(attrs or {})
    extra["source_files"] = json.dumps([str(f) for f in extra.get("source_files", [])])
    if definition is None:
        definition = builtin_sensors().get(sensor)
    if definition is not None:
        extra["sensor_definition"] = json.dumps(definition.to_dict())
    ds = xr.Dataset({"spatial_ref": spatial_ref(crs, transform)}, coords=coords)
    ds.attrs = {"sensor": sensor, "tile": tile, "radiometry": radiometry,
                "crs": rasterio.crs.CRS.from_user_input(crs).to_wkt(),
                "transform": list(transform.to_gdal()), "reader": "",
                "gpvae_version": gpvae.__version__, "Conventions": "CF-1.8", **extra}
    return ds


class CubeWriter:
    """Fill a cube file date by date (``writer.write(t, data, valid, quality)``) or block by
    block (``writer.write_block(t, window, ...)``; see :meth:`write_blocks`).

    With ``check`` (a :class:`~gpvae.io.cube_checks.CubeChecks`) the written dates (or
    blocks of them) are checked: optical values must look like reflectance, and some pixel
    must be valid.
    """

    def __init__(self, variables: dict, check: CubeChecks | None = None) -> None:
        self.variables = variables
        self.check = check

    def write(self, t: int, data: np.ndarray, valid: np.ndarray,
              quality: np.ndarray | None = None) -> None:
        """Write date index ``t``: data (band, y, x), valid (y, x), quality (y, x)."""
        h, w = self.variables["valid"].shape[1:]
        self.write_block(t, Window(0, 0, w, h), data, valid, quality)

    def write_block(self, t: int, window: Window, data: np.ndarray, valid: np.ndarray,
                    quality: np.ndarray | None = None) -> None:
        """Write one spatial ``window`` of date ``t``: data (band, h, w), valid / quality
        (h, w)."""
        if self.check is not None:
            self.check.date(t, data, valid)
        rows = slice(int(window.row_off), int(window.row_off + window.height))
        cols = slice(int(window.col_off), int(window.col_off + window.width))
        self.variables["data"][t, :, rows, cols] = np.asarray(data, dtype=np.float32)
        self.variables["valid"][t, rows, cols] = np.asarray(valid).astype(np.uint8)
        if "quality" in self.variables:
            if quality is None:
                raise ValueError("this cube has a quality variable: pass quality")
            self.variables["quality"][t, rows, cols] = np.asarray(quality).astype(np.uint8)

    def write_blocks(self, t: int, read: Callable[[Window], tuple], *,
                     block_px: int | None = None) -> int:
        """Fill date ``t`` block by block (:func:`gpvae.io.window.spatial_blocks`):
        ``read(window)`` -> (data, valid[, quality]) of that window. Memory is one block,
        whatever the tile's size. Returns the number of valid pixels written."""
        h, w = self.variables["valid"].shape[1:]
        n_valid = 0
        for window in spatial_blocks(h, w, block_px):
            data, valid, *quality = read(window)
            self.write_block(t, window, data, valid, quality[0] if quality else None)
            n_valid += int(np.count_nonzero(valid))
        return n_valid


@contextlib.contextmanager
def cube_writer(path: Path, *, with_quality: bool = False, **skeleton_kw
                ) -> Iterator[CubeWriter]:
    """Open a cube for date-by-date writing (atomic); keywords as :func:`cube_skeleton`."""
    skeleton = cube_skeleton(**skeleton_kw)
    nb, h, w = skeleton.sizes["band"], skeleton.sizes["y"], skeleton.sizes["x"]
    yx = (min(h, 256), min(w, 256))
    grid = {"grid_mapping": "spatial_ref"}
    specs = {"data": VarSpec(("time", "band", "y", "x"), "float32", (1, nb, *yx),
                             {**grid, "long_name": skeleton.attrs["radiometry"]}),
             "valid": VarSpec(("time", "y", "x"), "uint8", (1, *yx),
                              {**grid, "long_name": "1 = the sensor observed the pixel"})}
    if with_quality:
        specs["quality"] = VarSpec(("time", "y", "x"), "uint8", (1, *yx),
                                   {**grid, "long_name": "Theia CLM_R1 cloud bit byte"})
    with stream_netcdf(path, skeleton, specs) as variables:
        for var in variables.values():
            # Each write fills whole chunks (one date each): compress and write them at once
            # instead of holding up to the 64 MiB default chunk cache per variable. A cache
            # smaller than one chunk is bypassed (size 0 is not honoured per variable).
            var.set_var_chunk_cache(size=1)
        # Cubes extracted by a reader (attribute `reader`) are checked; before the rename, so
        # a failed check leaves no cube.
        checks = CubeChecks(skeleton, path) if skeleton.attrs.get("reader") else None
        yield CubeWriter(variables, checks)
        if checks is not None:
            checks.finish()


def write_cube(path: Path, *, data: np.ndarray, valid: np.ndarray, times: np.ndarray,
               bands: list[str], crs: str, transform: affine.Affine, sensor: str, tile: str,
               radiometry: str, per_date: dict[str, np.ndarray] | None = None,
               quality: np.ndarray | None = None, attrs: dict | None = None,
               definition: Sensor | None = None) -> Path:
    """Write the canonical cube of docs/contracts.md section 1, atomically.

    ``data`` (time, band, y, x) float32 physical units, ``valid`` (time, y, x), optional
    ``quality`` (time, y, x) uint8; ``per_date`` may hold platform, orbit_direction,
    relative_orbit; ``attrs`` adds e.g. ``reader`` and ``source_files`` (a list, stored JSON).
    """
    data = np.asarray(data, dtype=np.float32)
    nt, nb, h, w = data.shape
    valid = np.asarray(valid)
    if np.shape(times) != (nt,) or len(bands) != nb or valid.shape != (nt, h, w) or (
            quality is not None and np.shape(quality) != (nt, h, w)):
        raise ValueError(f"inconsistent cube shapes: data {data.shape}, times "
                         f"{np.shape(times)}, bands {len(bands)}, valid {valid.shape}")
    with cube_writer(path, with_quality=quality is not None, times=times, bands=bands,
                     crs=crs, transform=transform, height=h, width=w, sensor=sensor,
                     tile=tile, radiometry=radiometry, per_date=per_date,
                     attrs=attrs, definition=definition) as writer:
        for t in range(nt):
            writer.write(t, data[t], valid[t], None if quality is None else quality[t])
    return Path(path)


@contextlib.contextmanager
def no_chunk_cache() -> Iterator[None]:
    """netCDF files opened inside get no HDF5 chunk cache (the default is restored after).

    For stages that read (or write) each chunk once: the default cache, 64 MiB per open
    variable, then only holds memory (the sample stage keeps every cube of every tile open).
    Usable as a decorator.
    """
    size, nelems, preemption = netCDF4.get_chunk_cache()
    netCDF4.set_chunk_cache(0, nelems, preemption)
    try:
        yield
    finally:
        netCDF4.set_chunk_cache(size, nelems, preemption)


def open_cube(path: Path) -> xr.Dataset:
    """Open a cube lazily and check it against docs/contracts.md section 1."""
    path = Path(path)
    if not path.is_file():
        raise InputError("cube file not found", file=path,
                         fix="run the extract stage for this tile and sensor first")
    try:
        ds = xr.open_dataset(path, engine="netcdf4")
    except (OSError, ValueError) as err:
        raise InputError(f"cannot open cube as netCDF ({err})", file=path,
                         fix="delete it and rerun the extract stage") from err
    fix = "regenerate the cube with `gpvae extract` (docs/contracts.md section 1)"
    for name, dims in (("data", ("time", "band", "y", "x")), ("valid", ("time", "y", "x"))):
        if name not in ds:
            raise InputError(f"cube has no variable {name!r}", file=path, field=name, fix=fix)
        if ds[name].dims != dims:
            raise InputError(f"cube variable {name} has dims {ds[name].dims}, expected {dims}",
                             file=path, field=name, fix=fix)
    for key in ("sensor", "tile", "radiometry", "crs", "transform"):
        if key not in ds.attrs:
            raise InputError(f"cube lacks attribute {key!r}", file=path, field=key, fix=fix)
    times = ds["time"].values
    if not np.issubdtype(times.dtype, np.datetime64) or (np.diff(times).astype(np.int64)
                                                          <= 0).any():
        raise InputError("cube time axis is not datetime, unique and increasing",
                         file=path, field="time", fix=fix)
    definition = cube_sensor(ds, file=path)
    if definition is not None:
        bands = [str(b) for b in ds["band"].values]
        definition.check_bands(bands, file=path, field="band")
        if ds.attrs["radiometry"] != definition.radiometry:
            raise InputError(f"cube radiometry {ds.attrs['radiometry']!r} is not "
                             f"{definition.radiometry!r} for sensor {definition.name}",
                             file=path, field="radiometry", fix=fix)
    return ds


def cube_sensor(ds: xr.Dataset, *, file: object = None) -> Sensor | None:
    """The sensor definition of a cube: its ``sensor_definition`` attribute, else the built-in
    of its ``sensor`` name (None when neither exists)."""
    name = str(ds.attrs.get("sensor", ""))
    recorded = ds.attrs.get("sensor_definition")
    if recorded:
        return make_sensor(name, json.loads(recorded), source=file)
    return builtin_sensors().get(name)


def cube_grid(ds: xr.Dataset) -> tuple[rasterio.crs.CRS, affine.Affine, int, int]:
    """Grid of a cube: (crs, transform, height, width)."""
    crs = rasterio.crs.CRS.from_wkt(ds.attrs["crs"])
    transform = affine.Affine.from_gdal(*[float(v) for v in np.ravel(ds.attrs["transform"])])
    return crs, transform, ds.sizes["y"], ds.sizes["x"]
