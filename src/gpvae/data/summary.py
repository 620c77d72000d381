"""What a model keeps of its training data: regions, acquisition keys and training size."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Acquisition keys: region code * KEY_STRIDE + day (days since gpvae.EPOCH, floored).
KEY_STRIDE = 1 << 22


def date_keys(region: np.ndarray, days: np.ndarray) -> np.ndarray:
    """int64 keys of (region code, acquisition day) pairs; NaN days or unknown regions (-1)
    give -1."""
    days = np.asarray(days, dtype=np.float64)
    region = np.asarray(region, dtype=np.int64)
    ok = np.isfinite(days) & (region >= 0)
    key = region * KEY_STRIDE + np.floor(np.where(ok, days, 0.0)).astype(np.int64)
    return np.where(ok, key, -1)


@dataclass
class DataSummary:
    """Region names (a region's code is its index), per sensor the sorted (region, acquisition
    day) keys of the training observations (see gpvae.models.date_effects.date_keys), and the
    number of training pixels."""

    regions: list[str] = field(default_factory=list)
    date_keys: dict[str, np.ndarray] = field(default_factory=dict)
    num_train: int = 1

    def region_codes(self, names: np.ndarray) -> np.ndarray:
        """int64 codes of region ``names`` (-1 for a region the model never saw)."""
        lookup = {r: i for i, r in enumerate(self.regions)}
        return np.array([lookup.get(str(n), -1) for n in np.asarray(names).reshape(-1)],
                        dtype=np.int64)

    def to_dict(self) -> dict:
        return {"regions": list(self.regions), "num_train": int(self.num_train),
                "date_keys": {s: np.asarray(k, dtype=np.int64).tolist()
                              for s, k in self.date_keys.items()}}

    @classmethod
    def from_dict(cls, d: dict | None) -> DataSummary:
        d = d or {}
        return cls(list(d.get("regions", [])),
                   {s: np.asarray(k, dtype=np.int64) for s, k in d.get("date_keys", {}).items()},
                   int(d.get("num_train", 1)))
