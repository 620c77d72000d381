"""Read the pixel dataset (contracts.md section 2) lazily and turn index blocks into `Batch`es.

The netCDF file is opened lazily with xarray (no full load): each batch reads only its samples
with ``.isel(sample=idx)``. A :class:`BlockSampler` yields index blocks whose order depends on
``(seed, epoch)`` only, so a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from torch.utils.data import DataLoader, Dataset, Sampler

from gpvae import to_days
from gpvae.data.batch import Batch, SensorBatch
from gpvae.data.normalise import (
    Normalisation,
    RunningMoments,
    apply_transform,
    check_values,
    sensor_stats,
)
from gpvae.errors import InputError

log = logging.getLogger(__name__)

#: Canonical bands per sensor (contracts.md), used when the model config names none.
CANONICAL_BANDS = {
    "S2": ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"],
    "S1_ASC": ["VV", "VH"],
    "S1_DES": ["VV", "VH"],
}
SPLITS = ("train", "val", "test")


def file_sensors(path: str | os.PathLike) -> list[str]:
    """Sensors listed in a pixel dataset's ``sensors`` attribute (space-separated)."""
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            return str(ds.attrs.get("sensors", "")).split()
    except (OSError, ValueError) as err:
        raise InputError(f"cannot open pixel dataset ({err})", file=path,
                         fix="check the path; re-run the sampling stage") from err


def file_bands(path: str | os.PathLike) -> dict[str, list[str]]:
    """Bands of each sensor in a pixel dataset, in file order."""
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            return {s: [str(b) for b in ds[f"band_{s}"].values]
                    for s in str(ds.attrs.get("sensors", "")).split() if f"band_{s}" in ds}
    except (OSError, ValueError) as err:
        raise InputError(f"cannot open pixel dataset ({err})", file=path,
                         fix="check the path; re-run the sampling stage") from err


def sensor_bands_from_config(model_cfg: dict, available: list[str] | None = None,
                             present: dict[str, list[str]] | None = None
                             ) -> dict[str, list[str]]:
    """Sensors and bands a model uses: ``sensors`` list (default ``available``, the dataset's
    sensors), optional ``bands: {sensor: [..]}`` (default: the bands ``present`` in the
    dataset for that sensor, else the canonical bands)."""
    sensors = model_cfg.get("sensors", available) or []
    if isinstance(sensors, str) or not sensors:
        raise InputError("model config needs a non-empty list `sensors`", field="sensors",
                         fix="e.g. sensors: [S2, S1_ASC, S1_DES]")
    bands = model_cfg.get("bands") or {}
    out = {}
    for s in sensors:
        if s not in CANONICAL_BANDS and s not in bands:
            raise InputError(f"unknown sensor {s!r}", field="sensors",
                             fix=f"use sensors among {sorted(CANONICAL_BANDS)}")
        default = (present or {}).get(s) or CANONICAL_BANDS.get(s, [])
        out[s] = list(bands.get(s, default))
    return out


def dataset_sensor_bands(model_cfg: dict, pixels: str | os.PathLike) -> dict[str, list[str]]:
    """Sensors and bands a model uses on the pixel dataset ``pixels`` (its sensors and bands
    are the defaults of :func:`sensor_bands_from_config`)."""
    available = None if "sensors" in model_cfg else file_sensors(pixels)
    return sensor_bands_from_config(model_cfg, available, file_bands(pixels))


def year_origin(years: np.ndarray) -> np.ndarray:
    """Days since EPOCH of January 1 of each year, float64."""
    jan1 = (np.asarray(years, dtype=np.int64) - 1970).astype("datetime64[Y]")
    return to_days(jan1.astype("datetime64[D]"))


def compact_series(t_days: np.ndarray, values: np.ndarray, origin: np.ndarray) -> SensorBatch:
    """Per pixel keep only observed dates, in time order, padded at the end (obs=False).

    ``t_days`` (T,) increasing days since EPOCH; ``values`` (B, T, C) normalised, NaN where
    missing; ``origin`` (B,). Padded entries have ``t`` = the pixel's last valid date (0 if
    none), ``x`` = 0 and ``m`` = False.
    """
    m = ~np.isnan(values)
    obs = m.any(axis=-1)
    count = obs.sum(axis=1)
    n = max(int(count.max(initial=0)), 1)
    order = np.argsort(~obs, axis=1, kind="stable")[:, :n]
    obs_c = np.take_along_axis(obs, order, axis=1)
    m_c = np.take_along_axis(m, order[..., None], axis=1)
    x_c = np.where(m_c, np.take_along_axis(values, order[..., None], axis=1), 0.0)
    t_c = np.take_along_axis(t_days[None, :] - origin[:, None], order, axis=1)
    last = np.take_along_axis(t_c, np.maximum(count - 1, 0)[:, None], axis=1)
    t_c = np.where(obs_c, t_c, np.where(count[:, None] > 0, last, 0.0))
    return SensorBatch(t=torch.from_numpy(t_c.astype(np.float32)),
                       x=torch.from_numpy(x_c.astype(np.float32)),
                       m=torch.from_numpy(m_c), obs=torch.from_numpy(obs_c))


class PixelDataset(Dataset):
    """Lazy view of ``pixels.nc`` for a set of sensors/bands; item = a `Batch` of an index block.

    ``dataset[[i, j, ...]]`` reads those samples from disk, normalises them with
    ``normalisation`` (required for items) and compacts each sensor's dates.
    ``in_memory_mb``: a sensor variable of at most this size is read whole on first use and
    served from memory (random batches from a compressed file cost a chunk read each).
    """

    def __init__(self, path: str | os.PathLike, sensor_bands: dict[str, list[str]],
                 normalisation: Normalisation | None = None, *,
                 in_memory_mb: float = 0.0) -> None:
        self.path = Path(path)
        self.in_memory_mb = in_memory_mb
        self._cache: dict[str, np.ndarray] = {}
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
            for sensor, bands in self.sensor_bands.items():
                self.times[sensor], self.band_index[sensor] = self._sensor_layout(ds, sensor,
                                                                                  bands)
        except BaseException:
            self.close()
            raise
        self.origin = year_origin(self.years)

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
        """Sample indices of one split (``train`` / ``val`` / ``test``), increasing."""
        return np.flatnonzero(self.splits == split)

    def read(self, sensor: str, idx: np.ndarray) -> np.ndarray:
        """Physical values (B, T, C) of ``sensor``'s selected bands for samples ``idx``."""
        idx = np.asarray(idx, dtype=np.int64)
        var = f"values_{sensor}"
        whole = self._in_memory(sensor)
        if whole is not None:
            values = whole[idx]
        else:
            order = np.argsort(idx, kind="stable")
            raw = self._dataset()[var].isel(sample=idx[order]).values
            values = np.empty_like(raw)
            values[order] = raw
            values = values[..., self.band_index[sensor]]
        check_values(values, sensor, file=self.path, variable=var)
        return values

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
        if self.normalisation is None:
            raise RuntimeError("PixelDataset needs a Normalisation to build batches")
        idx = np.atleast_1d(np.asarray(idx, dtype=np.int64))
        origin = self.origin[idx]
        sensors = {
            s: compact_series(self.times[s], self.normalisation.normalise(s, self.read(s, idx)),
                              origin)
            for s in self.sensor_bands
        }
        return Batch(sensors=sensors, origin=torch.from_numpy(origin.astype(np.float64)),
                     index=torch.from_numpy(idx))

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
                                               sensor))
            stats[sensor] = sensor_stats(moments, sensor, bands, file=self.path)
            log.info("normalisation %s: mean %s std %s", sensor,
                     np.round(stats[sensor].mean, 4), np.round(stats[sensor].std, 4))
        return Normalisation(stats, meta={"split": split, "pixels": str(self.path),
                                          "num_samples": int(idx.size)})


class BlockSampler(Sampler):
    """Yields index blocks (one per batch); order depends only on ``(seed, epoch)``.

    With ``window`` set, windows of that many consecutive indices are shuffled and samples are
    shuffled within each window, so a batch touches few compressed chunks on disk.
    """

    def __init__(self, indices: np.ndarray, batch_size: int, *, shuffle: bool = True,
                 seed: int = 0, window: int | None = None) -> None:
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size, self.shuffle, self.seed = int(batch_size), shuffle, int(seed)
        self.window = window
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self) -> np.ndarray:
        """This epoch's sample order."""
        if not self.shuffle:
            return self.indices
        rng = np.random.default_rng([self.seed, self.epoch])
        if not self.window or self.window >= self.indices.size:
            return rng.permutation(self.indices)
        starts = rng.permutation(np.arange(0, self.indices.size, self.window))
        return np.concatenate([rng.permutation(self.indices[s:s + self.window])
                               for s in starts])

    def __iter__(self) -> Iterator[np.ndarray]:
        order = self.order()
        for start in range(0, order.size, self.batch_size):
            yield order[start:start + self.batch_size]

    def __len__(self) -> int:
        return -(-self.indices.size // self.batch_size)


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
    return Batch(sensors, batch.origin.pin_memory(), batch.index.pin_memory())
