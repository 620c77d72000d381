"""Per-sensor value transforms (SAR linear -> dB) and per-band standardisation statistics.

The transform and the plausible physical range of each band come from the sensor registry
(gpvae.io.sensors); the statistics record the transform they were computed with.

Statistics are computed from the TRAIN split only and travel with the checkpoint
(``normalisation.json`` and inside ``checkpoint.pt``), so every later stage normalises the
same way.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gpvae.errors import InputError
from gpvae.io.atomic import atomic_path
from gpvae.io.sensors import Sensor

#: Linear backscatter is clipped to this floor before dB (1e-5 = -50 dB, below S1 noise).
DB_FLOOR_LINEAR = 1e-5
#: Value transforms before standardisation.
TRANSFORMS = ("identity", "db")


def to_db(linear: np.ndarray, floor: float = DB_FLOOR_LINEAR) -> np.ndarray:
    """Decibels: 10 log10(max(linear, floor)); NaN stays NaN."""
    return 10.0 * np.log10(np.maximum(linear, floor))


def from_db(db: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_db` above the floor: 10^(dB / 10)."""
    return 10.0 ** (np.asarray(db) / 10.0)


def check_values(values: np.ndarray, sensor: Sensor, bands: list[str], *, file: object,
                 variable: str) -> None:
    """Raise InputError for observed (non-NaN) values (..., C) of ``sensor``'s ``bands`` that
    are infinite or outside the band's plausible physical range (registry), or for
    non-positive values of a dB-transformed sensor."""
    finite = ~np.isnan(values)
    if not finite.any():
        return
    if not np.all(np.isfinite(values[finite])):
        raise InputError(f"infinite values in {variable} (only NaN may mark missing data)",
                         file=file, field=variable,
                         fix="re-run the sampling stage; replace +-inf by NaN upstream")
    if sensor.transform == "db" and values[finite].min() <= 0.0:
        raise InputError(f"{variable} has observed linear backscatter <= 0 "
                         f"(min {values[finite].min():.3g}); values must be linear sigma0 > 0, "
                         "NaN where missing", file=file, field=variable,
                         fix="check the SAR reader: 0 is no-data and dB must not be stored")
    for c, name in enumerate(bands):
        lo, hi = sensor.band(name).range
        band = values[..., c][finite[..., c]]
        if band.size and ((lo is not None and band.min() < lo)
                          or (hi is not None and band.max() > hi)):
            unit = sensor.band(name).unit
            raise InputError(f"{variable} band {name}: {unit if unit != '1' else 'value'} "
                             f"outside its plausible range [{lo}, {hi}] (min {band.min():.3g}, "
                             f"max {band.max():.3g})", file=file, field=variable,
                             fix="store physical values (apply the product's scale/offset), or "
                             f"declare the band's range under sensors.{sensor.name}.bands")


def apply_transform(values: np.ndarray, transform: str) -> np.ndarray:
    """Physical values -> model space (``identity``, or ``db``: linear -> dB), float64."""
    if transform not in TRANSFORMS:
        raise InputError(f"unknown value transform {transform!r}", field="transform",
                         fix=f"use one of {', '.join(TRANSFORMS)}")
    values = np.asarray(values, dtype=np.float64)
    return to_db(values) if transform == "db" else values


@dataclass
class RunningMoments:
    """Per-band count, mean and M2 merged chunk by chunk (Chan et al. 1979 parallel variance)."""

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def zeros(cls, num_bands: int) -> RunningMoments:
        return cls(np.zeros(num_bands), np.zeros(num_bands), np.zeros(num_bands))

    def update(self, values: np.ndarray) -> None:
        """Merge the non-NaN values of ``values`` (..., C) into the running moments."""
        flat = values.reshape(-1, values.shape[-1])
        ok = ~np.isnan(flat)
        n_b = ok.sum(axis=0).astype(np.float64)
        safe = np.where(ok, flat, 0.0)
        mean_b = safe.sum(axis=0) / np.maximum(n_b, 1.0)
        m2_b = (np.where(ok, flat - mean_b, 0.0) ** 2).sum(axis=0)
        n = self.count + n_b
        delta = mean_b - self.mean
        frac = np.divide(n_b, n, out=np.zeros_like(n), where=n > 0)
        self.mean = self.mean + delta * frac
        self.m2 = self.m2 + m2_b + delta**2 * self.count * frac
        self.count = n

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / np.maximum(self.count, 1.0))


@dataclass
class SensorStats:
    """Standardisation of one sensor: x = (transform(v) - mean) / std per band."""

    bands: list[str]
    mean: np.ndarray
    std: np.ndarray
    count: np.ndarray
    transform: str

    def to_dict(self) -> dict:
        return {"bands": list(self.bands), "mean": self.mean.tolist(),
                "std": self.std.tolist(), "count": self.count.astype(int).tolist(),
                "transform": self.transform}

    @classmethod
    def from_dict(cls, d: dict) -> SensorStats:
        return cls(list(d["bands"]), np.asarray(d["mean"], dtype=np.float64),
                   np.asarray(d["std"], dtype=np.float64),
                   np.asarray(d["count"], dtype=np.float64), str(d["transform"]))


@dataclass
class Normalisation:
    """Per-sensor statistics from the train split, applied to every split and stage."""

    sensors: dict[str, SensorStats]
    db_floor_linear: float = DB_FLOOR_LINEAR
    meta: dict = field(default_factory=dict)

    def normalise(self, sensor: str, values: np.ndarray) -> np.ndarray:
        """Physical values (..., C) -> standardised model inputs (NaN kept), float32."""
        s = self.sensors[sensor]
        return ((apply_transform(values, s.transform) - s.mean) / s.std).astype(np.float32)

    def denormalise(self, sensor: str, x: np.ndarray, std: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Standardised mean (and std) -> transformed units (physical, or dB for SAR)."""
        s = self.sensors[sensor]
        mean = np.asarray(x, dtype=np.float64) * s.std + s.mean
        return mean, (None if std is None else np.asarray(std, dtype=np.float64) * s.std)

    def to_dict(self) -> dict:
        return {"sensors": {k: v.to_dict() for k, v in self.sensors.items()},
                "db_floor_linear": self.db_floor_linear, "meta": dict(self.meta)}

    @classmethod
    def from_dict(cls, d: dict) -> Normalisation:
        return cls({k: SensorStats.from_dict(v) for k, v in d["sensors"].items()},
                   float(d.get("db_floor_linear", DB_FLOOR_LINEAR)), dict(d.get("meta", {})))

    def save(self, path: str | os.PathLike) -> Path:
        """Write as JSON, atomically."""
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2))
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Normalisation:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise InputError(f"cannot read normalisation statistics ({err})", file=path,
                             fix="re-run training to regenerate normalisation.json") from err


def sensor_stats(moments: RunningMoments, sensor: Sensor, bands: list[str], *,
                 file: object) -> SensorStats:
    """Final statistics of one sensor; a band never observed in the train split is an error."""
    missing = [b for b, n in zip(bands, moments.count, strict=True) if n == 0]
    if missing:
        raise InputError(f"sensor {sensor.name} bands {missing} have no observed value in the "
                         "train split", file=file, field=f"values_{sensor.name}",
                         fix=f"drop {sensor.name} from the model's `sensors` or add train "
                         "samples")
    std = np.where(moments.std > 1e-8, moments.std, 1.0)
    return SensorStats(list(bands), moments.mean.copy(), std, moments.count.copy(),
                       sensor.transform)
