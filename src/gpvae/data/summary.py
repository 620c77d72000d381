"""What a model keeps of its training data: regions, acquisition keys and training size."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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
