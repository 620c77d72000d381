"""The pixel dataset (docs/contracts.md section 2): writer and lazy validating opener."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import netCDF4
import numpy as np
import xarray as xr

import gpvae
from gpvae.errors import InputError
from gpvae.io.atomic import atomic_path
from gpvae.io.failures import reading
from gpvae.io.ncstream import VarSpec, stream_netcdf
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


class ContentDigest:
    """SHA-256 of a pixel dataset's content (per-sample coordinates, axes, class names, then
    each data variable's values in sample order), whatever its chunking: the attribute
    ``content_sha256`` that names a training run's data (gpvae.data.dataset.
    dataset_fingerprint)."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def begin(self, name: str) -> None:
        """Start the part ``name`` (a variable)."""
        self._hash.update(b"\x00" + name.encode() + b"\x00")

    def update(self, values: np.ndarray) -> None:
        """Add values of the current part (numbers; calls may split it anywhere along its
        first axis)."""
        a = np.asarray(values)
        if a.dtype.kind == "M":
            a = a.astype("datetime64[ns]").view(np.int64)
        self._hash.update(np.ascontiguousarray(a).tobytes())

    def add(self, name: str, values: np.ndarray) -> None:
        """One whole part: its name, dtype and values (strings in a stable form)."""
        a = np.asarray(values)
        self.begin(f"{name}:{a.dtype.kind}")
        if a.dtype.kind in "OUS":
            self._hash.update("\x1f".join(map(str, a.ravel().tolist())).encode())
        else:
            self.update(a)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _digest_header(ds: xr.Dataset) -> ContentDigest:
    """A digest started with a dataset's coordinates and class names (sorted by name)."""
    digest = ContentDigest()
    for name in sorted(map(str, ds.variables)):
        if name.startswith(("values_", "truth_")):
            continue
        digest.add(name, ds[name].values)
    return digest


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
    digest = _digest_header(ds)
    for name in sorted(v for v in map(str, ds.data_vars) if v.startswith(("values_",
                                                                          "truth_"))):
        digest.add(name, ds[name].values)
    ds.attrs = {"sensors": " ".join(sensors), "epoch": str(gpvae.EPOCH),
                "gpvae_version": gpvae.__version__,
                "sensor_definitions": json.dumps(registry.declarations(sensors)),
                **(attrs or {}), "content_sha256": digest.hexdigest()}
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


def _shard_layout(paths: Sequence[Path], opened: list[xr.Dataset]
                  ) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """Sensors, bands and class names the shards share (else an InputError)."""
    fix = "rerun the sample jobs of every tile with one configuration"
    first = opened[0]
    sensors = str(first.attrs.get("sensors", "")).split()
    bands = {s: [str(b) for b in first[f"band_{s}"].values] for s in sensors}
    classes = [str(c) for c in first["class_name"].values]
    for path, ds in zip(paths, opened, strict=True):
        if str(ds.attrs.get("sensors", "")).split() != sensors:
            raise InputError(f"shard sensors {ds.attrs.get('sensors')!r} differ from "
                             f"{' '.join(sensors)!r}", file=path, field="sensors", fix=fix)
        for s in sensors:
            if [str(b) for b in ds[f"band_{s}"].values] != bands[s]:
                raise InputError(f"{s} bands of the tiles differ", file=path,
                                 field=f"band_{s}", fix="extract every tile with the same bands")
        if [str(c) for c in ds["class_name"].values] != classes:
            raise InputError("shard class names differ", file=path, field="class_name", fix=fix)
    return sensors, bands, classes


class _ChunkAppender:
    """Append rows (samples) to a netCDF variable in whole chunks of ``chunk`` rows."""

    def __init__(self, var: netCDF4.Variable, chunk: int) -> None:
        self.var, self.chunk, self.at = var, chunk, 0
        self.buffer: list[np.ndarray] = []

    def append(self, rows: np.ndarray) -> None:
        self.buffer.append(rows)
        if sum(len(b) for b in self.buffer) >= self.chunk:
            self.flush(whole=True)

    def flush(self, whole: bool = False) -> None:
        if not self.buffer:
            return
        rows = np.concatenate(self.buffer)
        n = (len(rows) // self.chunk) * self.chunk if whole else len(rows)
        if n:
            self.var[self.at:self.at + n] = rows[:n]
            self.at += n
        self.buffer = [rows[n:]] if n < len(rows) else []


def merge_pixels(shards: Sequence[Path], out: Path, *, chunk: int = 1024) -> Path:
    """One pixel dataset from shards (one per tile, gpvae.preprocess.sample.sample_tile) with
    the same sensors, bands, classes and settings, in the given order: each sensor's dates
    are the union of the shards' (NaN where a shard has no such date); values are streamed
    in whole chunks of ``chunk`` samples (memory: a few chunks, whatever the total)."""
    shards = [Path(p) for p in shards]
    if not shards:
        raise InputError("no shard to merge", field="shards", fix="run the sample jobs first")
    with contextlib.ExitStack() as stack:
        opened = [stack.enter_context(xr.open_dataset(p, engine="netcdf4")) for p in shards]
        sensors, bands, classes = _shard_layout(shards, opened)
        sizes = [ds.sizes["sample"] for ds in opened]
        n = int(sum(sizes))
        if n == 0:
            raise InputError("no sampled pixel has a valid date in its span", file=shards[0],
                             field="sample.years", fix="check the years and the masks (too "
                             "cloudy?)")
        times = {s: np.unique(np.concatenate([ds[f"time_{s}"].values for ds in opened]))
                 for s in sensors}
        coords: dict[str, object] = {}
        cell_keys = sorted({str(k) for ds in opened for k in ds.variables
                            if str(k).startswith(CELL_PREFIX)})
        for k in (*SAMPLE_COORDS, *SPAN_COORDS, *cell_keys):
            if all(k in ds.variables for ds in opened):
                coords[k] = ("sample", np.concatenate([ds[k].values for ds in opened]),
                             opened[0][k].attrs)
        for s in sensors:
            coords[f"time_{s}"] = times[s]
            coords[f"band_{s}"] = np.asarray(bands[s], str)
        skeleton = xr.Dataset({"class_name": ("class", np.asarray(classes, str))},
                              coords=coords, attrs=dict(opened[0].attrs))
        digest = _digest_header(skeleton)
        truth = "S2" in sensors and any("truth_S2" in ds for ds in opened)
        names = [(f"values_{s}", s) for s in sensors] + ([("truth_S2", "S2")] if truth else [])
        specs = {v: VarSpec(("sample", f"time_{s}", f"band_{s}"), "float32",
                            (max(1, min(n, chunk)), len(times[s]), len(bands[s])),
                            opened[0][v].attrs if v in opened[0] else {}, complevel=4,
                            shuffle=True) for v, s in names}
        raw = [stack.enter_context(netCDF4.Dataset(p)) for p in shards]
        for nc in raw:
            nc.set_auto_maskandscale(False)
        with stream_netcdf(out, skeleton, specs) as variables:
            for v, s in sorted(names):
                variables[v].set_var_chunk_cache(size=1)  # whole chunks are written
                app = _ChunkAppender(variables[v], max(1, min(n, chunk)))
                digest.begin(f"{v}:f")  # as ContentDigest.add of a float array
                for ds, nc, size in zip(opened, raw, sizes, strict=True):
                    pos = np.searchsorted(times[s], ds[f"time_{s}"].values)
                    for a in range(0, size, chunk):
                        b = min(size, a + chunk)
                        rows = np.full((b - a, len(times[s]), len(bands[s])), np.nan,
                                       np.float32)
                        if v in nc.variables:
                            rows[:, pos] = nc.variables[v][a:b]
                        app.append(rows)
                        digest.update(rows)
                app.flush()
            next(iter(variables.values())).group().setncattr("content_sha256",
                                                             digest.hexdigest())
    return Path(out)
