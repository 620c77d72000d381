"""Read the pixel dataset (contracts.md section 2) lazily and turn index blocks into `Batch`es.

The netCDF file is opened lazily with xarray: a sensor of up to ``in_memory_mb`` is read once
and served from memory; a larger one is read by whole file chunks (a few kept decoded), which
:class:`gpvae.data.stream.ChunkSampler` visits in shuffled order. A :class:`BlockSampler`
yields index blocks whose order depends on ``(seed, epoch)`` only, so a resumed run sees the
same batches as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from torch.utils.data import DataLoader, Dataset, Sampler

from gpvae import to_days
from gpvae.data.batch import Batch
from gpvae.data.normalise import (
    Normalisation,
    RunningMoments,
    apply_transform,
    check_values,
    sensor_stats,
)
from gpvae.data.series import compact_series
from gpvae.data.span import Span, days_between
from gpvae.data.summary import DataSummary, date_keys
from gpvae.errors import InputError
from gpvae.io.failures import reading
from gpvae.io.pixels import CELL_PREFIX, sample_spans, sensor_definitions, year_spans
from gpvae.io.sensors import SensorRegistry, builtin_sensors

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a pixel dataset holds, read from its header: sensors (file order) and their
    bands, the sensor registry it records, and its span rule and length."""

    sensors: list[str]
    bands: dict[str, list[str]]
    registry: SensorRegistry
    span: Span
    span_days: float  # the longest sample span, days

    @property
    def time_range(self) -> tuple[float, float]:
        """The data's span in days from each sample's origin: (0, longest span)."""
        return 0.0, self.span_days

    def first_of_kind(self, kinds: tuple[str, ...] = ("optical", "index")) -> str | None:
        """The first sensor (file order) of one of ``kinds``."""
        return next((s for s in self.sensors if self.registry[s].kind in kinds), None)


def dataset_info(path: str | os.PathLike) -> DatasetInfo:
    """The header of a pixel dataset (:class:`DatasetInfo`); InputError if unreadable."""
    fix = "rerun the sample stage (docs/contracts.md section 2)"
    if not Path(path).is_file():
        raise InputError("pixel dataset not found", file=path, fix=fix)
    with reading(path, what="netCDF pixel dataset", fix=fix):
        ds = xr.open_dataset(path, engine="netcdf4")
    with ds:
        sensors = str(ds.attrs.get("sensors", "")).split()
        bands = {s: [str(b) for b in ds[f"band_{s}"].values]
                 for s in sensors if f"band_{s}" in ds}
        start, end = sample_spans(ds)
        length = float(days_between(start, end).max(initial=0.0))
        return DatasetInfo(sensors, bands, sensor_definitions(ds, file=path),
                           Span.from_attr(ds.attrs.get("span")), length)


def file_sensors(path: str | os.PathLike) -> list[str]:
    """Sensors listed in a pixel dataset's ``sensors`` attribute (space-separated)."""
    return dataset_info(path).sensors


def sensor_bands_from_config(model_cfg: dict, available: list[str] | None = None,
                             present: dict[str, list[str]] | None = None,
                             registry: SensorRegistry | None = None) -> dict[str, list[str]]:
    """Sensors and bands a model uses: ``sensors`` (null or absent = ``available``, the
    dataset's sensors) and ``bands: {sensor: [..]}`` (default: the sensor's bands
    ``present`` in the dataset, else all its bands in the registry, default the built-ins)."""
    sensors = model_cfg.get("sensors") or available or []
    if isinstance(sensors, str) or not sensors:
        raise InputError("model config needs a non-empty list `sensors`", field="sensors",
                         fix="e.g. sensors: [S2, S1_ASC, S1_DES]")
    bands = model_cfg.get("bands") or {}
    registry = registry if registry is not None else builtin_sensors()
    out = {}
    for s in sensors:
        chosen = bands.get(s) or (present or {}).get(s)
        out[s] = list(chosen) if chosen else registry[s].band_names
    return out


def dataset_sensor_bands(model_cfg: dict, pixels: str | os.PathLike) -> dict[str, list[str]]:
    """Sensors and bands a model uses on the pixel dataset ``pixels`` (its sensors and bands
    are the defaults of :func:`sensor_bands_from_config`)."""
    info = dataset_info(pixels)
    return sensor_bands_from_config(model_cfg, info.sensors, info.bands, info.registry)


def year_origin(years: np.ndarray) -> np.ndarray:
    """Days since EPOCH of January 1 of each year, float64 (the origin of calendar-year
    spans)."""
    return to_days(year_spans(years)[0])


def sample_origin(ds: xr.Dataset, idx: np.ndarray | None = None) -> np.ndarray:
    """Time origin (days since EPOCH, float64) of samples ``idx`` (default all): the start
    of each sample's span."""
    start, _ = sample_spans(ds)
    return to_days(start if idx is None else start[np.asarray(idx)])


class PixelDataset(Dataset):
    """Lazy view of ``pixels.nc`` for a set of sensors/bands; item = a `Batch` of an index block.

    ``dataset[[i, j, ...]]`` reads those samples from disk, normalises them with
    ``normalisation`` (required for items) and compacts each sensor's dates.
    ``in_memory_mb``: a sensor variable of at most this size is read whole on first use and
    served from memory; larger ones are read by whole file chunks along ``sample``, the last
    ``cache_chunks`` of each sensor kept decoded (gpvae.data.stream streams them in shuffled
    order).
    """

    def __init__(self, path: str | os.PathLike, sensor_bands: dict[str, list[str]],
                 normalisation: Normalisation | None = None, *,
                 in_memory_mb: float = 0.0, cache_chunks: int = 9) -> None:
        self.path = Path(path)
        self.in_memory_mb = in_memory_mb
        self.cache_chunks = int(cache_chunks)
        self._cache: dict[str, np.ndarray] = {}
        self._chunks: dict[str, OrderedDict[int, np.ndarray]] = {}
        self.chunk_reads = 0  # file chunks decoded so far (cache misses)
        self._on_disk: set[str] = set()  # sensors too large for in_memory_mb
        self.sensor_bands = {s: list(b) for s, b in sensor_bands.items()}
        self.normalisation = normalisation
        self._ds: xr.Dataset | None = None
        self._pid: int | None = None
        self.times: dict[str, np.ndarray] = {}
        self.band_index: dict[str, np.ndarray] = {}
        try:  # close explicitly on error: netCDF-C is not safe against closes from the GC
            ds = self._dataset()
            for name in ("year", "split"):
                if name not in ds.variables or ds[name].dims != ("sample",):
                    raise InputError(f"pixel dataset lacks the per-sample coordinate {name!r}",
                                     file=self.path, field=name,
                                     fix="re-run the sampling stage (contracts.md section 2)")
            self.years = ds["year"].values.astype(np.int64)
            self.splits = ds["split"].values.astype(str)
            self.regions = (ds["region"].values.astype(str) if "region" in ds.variables
                            else np.full(self.years.shape, "", dtype=str))
            self.region_codes: np.ndarray | None = None
            self.excluded: tuple[str, str] | None = None
            self.registry = sensor_definitions(ds, file=self.path)
            for sensor, bands in self.sensor_bands.items():
                self.times[sensor], self.band_index[sensor] = self._sensor_layout(ds, sensor,
                                                                                  bands)
            self.origin = sample_origin(ds)
            self.cells = cell_groups(ds, list(self.sensor_bands), self.splits)
        except BaseException:
            self.close()
            raise

    def _sensor_layout(self, ds: xr.Dataset, sensor: str, bands: list[str]
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Validate one sensor's variable; return its days since EPOCH and band positions."""
        var = f"values_{sensor}"
        if var not in ds.data_vars:
            raise InputError(f"pixel dataset has no sensor {sensor} (variable {var}); it has "
                             f"sensors {ds.attrs.get('sensors', '?')!r}", file=self.path,
                             field=var, fix=f"remove {sensor} from the model's `sensors` or "
                             "add it to the sampling stage")
        dims = ("sample", f"time_{sensor}", f"band_{sensor}")
        if ds[var].dims != dims:
            raise InputError(f"{var} has dims {ds[var].dims}, expected {dims}", file=self.path,
                             field=var, fix="re-run the sampling stage")
        have = [str(b) for b in ds[f"band_{sensor}"].values]
        missing = [b for b in bands if b not in have]
        if missing:
            raise InputError(f"sensor {sensor} lacks bands {missing} (file has {have})",
                             file=self.path, field=f"band_{sensor}",
                             fix=f"set the model's `bands: {{{sensor}: [...]}}` to bands "
                             "present, or re-run sampling with those bands")
        days = to_days(ds[f"time_{sensor}"].values)
        if days.size > 1 and not np.all(np.diff(days) > 0):
            raise InputError(f"time_{sensor} is not strictly increasing", file=self.path,
                             field=f"time_{sensor}", fix="re-run the sampling stage")
        return days, np.array([have.index(b) for b in bands], dtype=np.int64)

    def _dataset(self) -> xr.Dataset:
        """The lazily opened file, reopened in a new process (DataLoader workers)."""
        if self._ds is None or self._pid != os.getpid():
            try:
                self._ds = xr.open_dataset(self.path, engine="netcdf4", cache=False)
            except (OSError, ValueError) as err:
                raise InputError(f"cannot open pixel dataset ({err})", file=self.path,
                                 fix="check the path; re-run the sampling stage") from err
            self._pid = os.getpid()
        return self._ds

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_ds"], state["_pid"], state["_cache"] = None, None, {}  # workers reload
        state["_chunks"] = {}
        return state

    def close(self) -> None:
        """Close the file (it is reopened on the next read)."""
        if self._ds is not None:
            self._ds.close()
            self._ds = None

    def __enter__(self) -> PixelDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return int(self.years.shape[0])

    def indices(self, split: str) -> np.ndarray:
        """Sample indices of one split (``train`` / ``val`` / ``test``), increasing; samples of
        an excluded domain (:meth:`exclude`) are left out."""
        keep = self.splits == split
        if self.excluded is not None:
            kind, value = self.excluded
            group = self.regions if kind == "region" else self.years.astype(str)
            keep &= group != str(value)
        return np.flatnonzero(keep)

    def exclude(self, kind: str, value: object) -> None:
        """Leave every sample of one region or year out of :meth:`indices` (held-out-domain
        training, the transfer protocols)."""
        if kind not in ("region", "year"):
            raise InputError(f"cannot exclude samples by {kind!r}", field="exclude",
                             fix="exclude a region or a year")
        self.excluded = (kind, str(value))

    def read(self, sensor: str, idx: np.ndarray) -> np.ndarray:
        """Physical values (B, T, C) of ``sensor``'s selected bands for samples ``idx``."""
        idx = np.asarray(idx, dtype=np.int64)
        var = f"values_{sensor}"
        whole = self._in_memory(sensor)
        if whole is not None:
            values = whole[idx]
        else:
            values = self._read_chunks(sensor, idx)
        check_values(values, self.registry[sensor], self.sensor_bands[sensor], file=self.path,
                     variable=var)
        return values

    def sample_chunk(self, sensor: str) -> int:
        """Samples per chunk of ``values_<sensor>`` in the file (1 if not chunked)."""
        chunks = self._dataset()[f"values_{sensor}"].encoding.get("chunksizes")
        return int(chunks[0]) if chunks else 1

    def on_disk_chunk(self) -> int | None:
        """The file chunk (samples) a streaming reader should follow when a sensor is too
        large for ``in_memory_mb`` (the largest chunk of those sensors); None when every
        sensor is served from memory."""
        ds = self._dataset()
        big = [s for s in self.sensor_bands
               if ds[f"values_{s}"].size * ds[f"values_{s}"].dtype.itemsize / 2**20
               > self.in_memory_mb]
        return max((self.sample_chunk(s) for s in big), default=None)

    def _read_chunks(self, sensor: str, idx: np.ndarray) -> np.ndarray:
        """Samples ``idx`` of a sensor read by whole file chunks (each decoded once while it
        stays among the sensor's last ``cache_chunks`` chunks read), selected bands only."""
        var = self._dataset()[f"values_{sensor}"]
        size = self.sample_chunk(sensor)
        n = var.shape[0]
        out = np.empty((idx.size, var.shape[1], self.band_index[sensor].size), np.float32)
        cache = self._chunks.setdefault(sensor, OrderedDict())
        ids = idx // size
        for c in np.unique(ids):
            key = int(c)
            block = cache.get(key)
            if block is None:
                rows = slice(key * size, min(n, (key + 1) * size))
                block = np.ascontiguousarray(
                    var[rows].values[..., self.band_index[sensor]], dtype=np.float32)
                cache[key] = block
                self.chunk_reads += 1
                while len(cache) > max(1, self.cache_chunks):
                    cache.popitem(last=False)
            else:
                cache.move_to_end(key)
            sel = ids == c
            out[sel] = block[idx[sel] - int(c) * size]
        return out

    def _in_memory(self, sensor: str) -> np.ndarray | None:
        """The sensor's selected bands for all samples, when within ``in_memory_mb``."""
        if sensor in self._on_disk:
            return None
        if sensor not in self._cache:
            data = self._dataset()[f"values_{sensor}"]
            if data.size * data.dtype.itemsize / 2**20 > self.in_memory_mb:
                self._on_disk.add(sensor)
                return None
            self._cache[sensor] = np.ascontiguousarray(data.values[..., self.band_index[sensor]])
        return self._cache[sensor]

    def __getitem__(self, idx: Sequence[int] | np.ndarray) -> Batch:
        return self.batch(idx)

    def batch(self, idx: Sequence[int] | np.ndarray,
              hidden: dict[str, np.ndarray] | None = None) -> Batch:
        """The normalised, compacted Batch of samples ``idx``; entries of ``hidden`` (sensor
        -> (B, T_s) bool, True = hide) are set missing first, so they never reach a model.
        Region codes come from :meth:`use_summary` (none before)."""
        if self.normalisation is None:
            raise RuntimeError("PixelDataset needs a Normalisation to build batches")
        idx = np.array(np.atleast_1d(idx), dtype=np.int64)  # a writable copy
        origin = self.origin[idx]
        sensors = {}
        for s in self.sensor_bands:
            values = self.read(s, idx)
            if hidden is not None and s in hidden:
                values[np.asarray(hidden[s], dtype=bool)] = np.nan
            sensors[s] = compact_series(self.times[s], self.normalisation.normalise(s, values),
                                        origin)
        region = (None if self.region_codes is None
                  else torch.from_numpy(self.region_codes[idx].copy()))
        cells = {s: (torch.from_numpy(g[idx]), torch.from_numpy(w[idx]))
                 for s, (g, w) in self.cells.items()} or None
        return Batch(sensors=sensors, origin=torch.from_numpy(origin.astype(np.float64)),
                     index=torch.from_numpy(idx), region=region, cells=cells)

    def sampling_groups(self, idx: np.ndarray) -> np.ndarray | None:
        """Group ids of samples ``idx`` by the cells of the coarsest coarse sensor (a
        :class:`BlockSampler` keeps a group's samples together); None without one."""
        if not self.cells:
            return None
        coarsest = max(self.cells, key=lambda s: self.registry[s].resolution_m)
        return self.cells[coarsest][0][np.asarray(idx, dtype=np.int64)]

    def use_summary(self, summary: DataSummary) -> None:
        """Code each sample's region as in ``summary`` (a model's regions; -1 = unseen)."""
        self.region_codes = summary.region_codes(self.regions)

    def summary(self, split: str = "train", block: int = 4096,
                regions: list[str] | None = None) -> DataSummary:
        """:class:`DataSummary` of ``split``: the dataset's regions (or ``regions``: codes
        are positions in it), per sensor the (region, acquisition day) keys of the dates
        observed there, and its number of samples."""
        idx = self.indices(split)
        regions = sorted(set(self.regions.tolist())) if regions is None else list(regions)
        codes = DataSummary(regions).region_codes(self.regions)
        keys = {}
        for s in self.sensor_bands:
            found: set[int] = set()
            for start in range(0, idx.size, block):
                sel = idx[start:start + block]
                observed = ~np.isnan(self.read(s, sel)).all(-1)
                rows, cols = np.nonzero(observed)
                found.update(np.unique(date_keys(codes[sel][rows], self.times[s][cols])).tolist())
            keys[s] = np.array(sorted(found), dtype=np.int64)
        return DataSummary(regions, keys, int(idx.size))

    def compute_normalisation(self, split: str = "train", block: int = 1024) -> Normalisation:
        """Per-band mean/std of transformed observed values over ``split`` (streamed)."""
        idx = self.indices(split)
        if idx.size == 0:
            raise InputError(f"no sample in split {split!r}", file=self.path, field="split",
                             fix="check the sampling stage's split fractions")
        stats = {}
        for sensor, bands in self.sensor_bands.items():
            moments = RunningMoments.zeros(len(bands))
            for start in range(0, idx.size, block):
                moments.update(apply_transform(self.read(sensor, idx[start:start + block]),
                                               self.registry[sensor].transform))
            stats[sensor] = sensor_stats(moments, self.registry[sensor], bands, file=self.path)
            log.info("normalisation %s: mean %s std %s", sensor,
                     np.round(stats[sensor].mean, 4), np.round(stats[sensor].std, 4))
        return Normalisation(stats, meta={"split": split, "pixels": str(self.path),
                                          "num_samples": int(idx.size)})


def dataset_fingerprint(path: str | os.PathLike) -> str:
    """What identifies a pixel dataset's content: its ``content_sha256`` attribute (written
    with the data, gpvae.io.pixels), else the SHA-256 of the file's bytes. A copy (to
    scratch, another node) keeps it; a new sampling changes it."""
    with reading(path, what="netCDF pixel dataset", fix="check the path; re-run the sampling "
                 "stage"), xr.open_dataset(path, engine="netcdf4") as ds:
        recorded = ds.attrs.get("content_sha256")
    if recorded:
        return str(recorded)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**22), b""):
            digest.update(block)
    return digest.hexdigest()


class BlockSampler(Sampler):
    """Yields index blocks (one per batch); order depends only on ``(seed, epoch)``.

    :meth:`set_epoch` with ``start`` skips the epoch's first blocks (a resumed run). With
    ``window`` set, windows of that many consecutive indices are shuffled and samples are
    shuffled within each window, so a batch touches few compressed chunks on disk. With
    ``groups`` (one id per index, e.g. :meth:`PixelDataset.sampling_groups`), the groups are
    shuffled and each one's samples come together (the pixels of a coarse cell share
    batches; ``window`` is then ignored).
    """

    def __init__(self, indices: np.ndarray, batch_size: int, *, shuffle: bool = True,
                 seed: int = 0, window: int | None = None,
                 groups: np.ndarray | None = None) -> None:
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size, self.shuffle, self.seed = int(batch_size), shuffle, int(seed)
        self.window = window
        self.groups = None if groups is None else np.asarray(groups)
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = int(epoch), int(start)

    def order(self) -> np.ndarray:
        """This epoch's sample order."""
        if not self.shuffle:
            return self.indices
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.groups is not None:  # groups in random order, samples shuffled within each
            _, inverse = np.unique(self.groups, return_inverse=True)
            rank = rng.permutation(int(inverse.max()) + 1 if inverse.size else 0)
            return self.indices[np.lexsort((rng.random(self.indices.size), rank[inverse]))]
        if not self.window or self.window >= self.indices.size:
            return rng.permutation(self.indices)
        starts = rng.permutation(np.arange(0, self.indices.size, self.window))
        return np.concatenate([rng.permutation(self.indices[s:s + self.window])
                               for s in starts])

    def __iter__(self) -> Iterator[np.ndarray]:
        order = self.order()
        for start in range(self.start * self.batch_size, order.size, self.batch_size):
            yield order[start:start + self.batch_size]

    def __len__(self) -> int:
        return max(0, -(-self.indices.size // self.batch_size) - self.start)


def cell_groups(ds: xr.Dataset, sensors: list[str], splits: np.ndarray
                ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per coarse sensor of ``sensors`` (those with a ``cell_<sensor>`` coordinate): the group
    of each sample (samples of one cell, span and split) and its share, 1 / the group's size
    (the model counts a cell's observation once per split: docs/models.md)."""
    out = {}
    start = sample_spans(ds)[0].astype(np.int64)
    _, split = np.unique(splits, return_inverse=True)
    for s in sensors:
        if f"{CELL_PREFIX}{s}" not in ds.variables:
            continue
        cell = ds[f"{CELL_PREFIX}{s}"].values.astype(np.int64)
        cell = np.where(cell >= 0, cell, -1 - np.arange(cell.size))  # no cell: on its own
        _, group, count = np.unique(np.stack([cell, start, split]), axis=1,
                                    return_inverse=True, return_counts=True)
        group = group.reshape(-1)
        out[s] = (group.astype(np.int64), (1.0 / count[group]).astype(np.float32))
    return out


def _identity(batch: Batch) -> Batch:
    return batch


def make_loader(dataset: PixelDataset, sampler: BlockSampler, *, num_workers: int = 0
                ) -> DataLoader:
    """DataLoader over index blocks; workers (spawned, each reopening the file) if asked."""
    kwargs: dict = {}
    if num_workers > 0:
        kwargs = {"multiprocessing_context": "spawn", "persistent_workers": True}
    # A private generator: drawing the loader's base seed must not advance the global torch RNG
    # (otherwise worker settings or persistent iterators would change the training stream).
    return DataLoader(dataset, sampler=sampler, batch_size=None, collate_fn=_identity,
                      num_workers=num_workers, generator=torch.Generator().manual_seed(0),
                      **kwargs)


def pin_batch(batch: Batch) -> Batch:
    """Copy of ``batch`` in page-locked memory (for asynchronous host-to-GPU copies)."""
    sensors = {k: dataclasses.replace(v, **{f.name: getattr(v, f.name).pin_memory()
                                           for f in dataclasses.fields(v)})
               for k, v in batch.sensors.items()}
    return Batch(sensors, batch.origin.pin_memory(), batch.index.pin_memory(),
                 None if batch.region is None else batch.region.pin_memory(),
                 None if batch.cells is None else {
                     k: (g.pin_memory(), w.pin_memory()) for k, (g, w) in batch.cells.items()})
