"""The pixel dataset (docs/contracts.md section 2): writer and lazy validating opener."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

import gpvae
from gpvae.errors import InputError
from gpvae.io.atomic import atomic_path
from gpvae.io.failures import reading
from gpvae.io.sensors import SensorRegistry, builtin_sensors, registry_from_json

#: Per-sample coordinates and their dtypes.
SAMPLE_COORDS: dict[str, str] = {
    "x": "float64", "y": "float64", "row": "int32", "col": "int32", "tile": "str",
    "parcel_id": "int64", "label": "int16", "split": "str", "region": "str", "year": "int16",
}
#: Per-sample span coordinates (the sample's time origin and the end of its span); files
#: written before them hold calendar years (Jan 1 of ``year``).
SPAN_COORDS = ("start", "end")
SPLITS = ("train", "val", "test")
#: Per-sample coordinate ``cell_<sensor>``: the coarse cell of a coarse sensor (its values
#: are the cell's, shared by every pixel of the cell).
CELL_PREFIX = "cell_"


def year_spans(years: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Calendar-year spans (start, end) datetime64[ns] of ``years``."""
    y = np.asarray(years, dtype=np.int64) - 1970
    return (y.astype("datetime64[Y]").astype("datetime64[ns]"),
            (y + 1).astype("datetime64[Y]").astype("datetime64[ns]"))


def sample_spans(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample span (start, end) datetime64[ns] of a pixel dataset (``start`` is each
    sample's time origin)."""
    if all(k in ds.variables for k in SPAN_COORDS):
        return (ds["start"].values.astype("datetime64[ns]"),
                ds["end"].values.astype("datetime64[ns]"))
    return year_spans(ds["year"].values)


def sensor_definitions(ds: xr.Dataset, *, file: object = None) -> SensorRegistry:
    """The registry of a pixel dataset: the built-ins plus the definitions it records."""
    return registry_from_json(ds.attrs.get("sensor_definitions"), source=file)


def write_pixels(path: Path, *, values: dict[str, np.ndarray], times: dict[str, np.ndarray],
                 bands: dict[str, list[str]], samples: dict[str, np.ndarray],
                 class_names: list[str], truth: np.ndarray | None = None,
                 attrs: dict | None = None, chunk: int = 1024,
                 definitions: SensorRegistry | None = None) -> Path:
    """Write ``pixels.nc``: values_<s>(sample, time_<s>, band_<s>) per sensor, per-sample
    coords (:data:`SAMPLE_COORDS`, and ``start`` / ``end``, default the calendar year),
    ``class_name``, optional ``truth_S2``, the ``cell_<sensor>`` ids of coarse sensors when
    ``samples`` holds them; zlib, chunked. The definitions of the sensors
    (``definitions``, default the built-ins) are recorded as the ``sensor_definitions``
    attribute."""
    sensors = list(values)
    if truth is not None and "S2" not in sensors:
        raise ValueError("truth_S2 needs S2 values (values['S2'])")
    n = len(next(iter(samples.values())))
    missing = [k for k in SAMPLE_COORDS if k not in samples]
    if missing:
        raise ValueError(f"per-sample coordinates missing: {missing}")
    coords: dict[str, object] = {
        k: ("sample", np.asarray(samples[k]).astype(dt)) for k, dt in SAMPLE_COORDS.items()}
    start, end = year_spans(samples["year"])
    coords["start"] = ("sample", np.asarray(samples.get("start", start)).astype("datetime64[ns]"),
                       {"long_name": "start of the sample's span: its time origin"})
    coords["end"] = ("sample", np.asarray(samples.get("end", end)).astype("datetime64[ns]"),
                     {"long_name": "end of the sample's span (exclusive)"})
    for k in (k for k in samples if k.startswith(CELL_PREFIX)):
        coords[k] = ("sample", np.asarray(samples[k]).astype(np.int64),
                     {"long_name": f"id of the {k.removeprefix(CELL_PREFIX)} cell holding "
                                   "the pixel (-1: none; gpvae.io.coarse)"})
    registry = definitions if definitions is not None else builtin_sensors()
    data_vars: dict[str, object] = {"class_name": ("class", np.asarray(class_names, str))}
    encoding: dict[str, dict] = {}
    for s in sensors:
        coords[f"time_{s}"] = np.asarray(times[s]).astype("datetime64[ns]")
        coords[f"band_{s}"] = np.asarray(bands[s], str)
        arr = np.asarray(values[s], np.float32)
        dims = ("sample", f"time_{s}", f"band_{s}")
        if arr.shape != (n, len(times[s]), len(bands[s])):
            raise ValueError(f"values_{s} shape {arr.shape} != ({n}, {len(times[s])}, "
                             f"{len(bands[s])})")
        data_vars[f"values_{s}"] = (dims, arr)
        enc = {"zlib": True, "complevel": 4,
               "chunksizes": (max(1, min(n, chunk)), *arr.shape[1:]), "_FillValue": np.nan}
        encoding[f"values_{s}"] = enc
        if s == "S2" and truth is not None:
            data_vars["truth_S2"] = (dims, np.asarray(truth, np.float32),
                                     {"long_name": "noise-free cloud-free reflectance (demo)"})
            encoding["truth_S2"] = enc
    ds = xr.Dataset(data_vars, coords=coords)
    ds.attrs = {"sensors": " ".join(sensors), "epoch": str(gpvae.EPOCH),
                "gpvae_version": gpvae.__version__,
                "sensor_definitions": json.dumps(registry.declarations(sensors)),
                **(attrs or {})}
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=encoding)
    return Path(path)


def open_pixels(path: Path) -> xr.Dataset:
    """Open ``pixels.nc`` lazily (values stay on disk) and check it against the contract."""
    path = Path(path)
    fix = "rerun the sample stage (docs/contracts.md section 2)"
    if not path.is_file():
        raise InputError("pixel dataset not found", file=path, fix=fix)
    with reading(path, what="netCDF pixel dataset", fix=fix):
        ds = xr.open_dataset(path, engine="netcdf4")
    sensors = str(ds.attrs.get("sensors", "")).split()
    if not sensors:
        raise InputError("pixel dataset has no 'sensors' attribute", file=path,
                         field="sensors", fix=fix)
    for s in sensors:
        name, dims = f"values_{s}", ("sample", f"time_{s}", f"band_{s}")
        if name not in ds or ds[name].dims != dims:
            raise InputError(f"pixel dataset lacks {name}{dims}", file=path, field=name, fix=fix)
    for k in (*SAMPLE_COORDS, "class_name"):
        if k not in ds.variables:
            raise InputError(f"pixel dataset lacks {k!r}", file=path, field=k, fix=fix)
    labels = ds["label"].values
    if labels.size and (labels.max() >= ds.sizes.get("class", 0) or labels.min() < -1):
        raise InputError("labels out of range of class_name", file=path, field="label", fix=fix)
    if not set(np.unique(ds["split"].values).tolist()) <= set(SPLITS):
        raise InputError(f"split values other than {SPLITS}", file=path, field="split", fix=fix)
    return ds
