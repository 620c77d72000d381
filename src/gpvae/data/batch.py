"""Mini-batch containers passed from the data loaders to the models.

Within a :class:`SensorBatch`, dates are compacted per pixel: only the pixel's observed dates,
sorted increasing, padded at the end with ``obs=False`` and ``t`` = the last valid date.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class SensorBatch:
    """One sensor's irregular series for B pixels: times, values and masks (N padded dates)."""

    t: Tensor  # (B, N) float days since gpvae.EPOCH minus the batch origin
    x: Tensor  # (B, N, C) normalised values, 0 where missing
    m: Tensor  # (B, N, C) bool, band observed
    obs: Tensor  # (B, N) bool, date present for this pixel (any band observed)

    def to(self, device: torch.device | str) -> SensorBatch:
        """Copy onto ``device`` (dtypes kept)."""
        return SensorBatch(self.t.to(device), self.x.to(device), self.m.to(device),
                           self.obs.to(device))

    @property
    def batch_size(self) -> int:
        return int(self.t.shape[0])


@dataclass
class Batch:
    """All sensors of B pixels plus each pixel's time origin, dataset index and region code
    (index into the model's list of regions, -1 = unknown; None = all unknown)."""

    sensors: dict[str, SensorBatch]
    origin: Tensor  # (B,) float64 days since EPOCH subtracted from every t
    index: Tensor  # (B,) int64 sample indices in the pixel dataset
    region: Tensor | None = None  # (B,) int64

    def to(self, device: torch.device | str) -> Batch:
        """Copy onto ``device`` (dtypes kept)."""
        return Batch({k: v.to(device) for k, v in self.sensors.items()},
                     self.origin.to(device), self.index.to(device),
                     None if self.region is None else self.region.to(device))

    def regions(self) -> Tensor:
        """(B,) int64 region codes, -1 where unknown."""
        if self.region is None:
            return torch.full_like(self.index, -1)
        return self.region

    def absolute(self, t: Tensor) -> Tensor:
        """Days since EPOCH (float64) of dates t (B, N) in the batch's frame."""
        return t.double() + self.origin.to(t.device, torch.float64)[:, None]

    @property
    def batch_size(self) -> int:
        return int(self.origin.shape[0])

    @property
    def device(self) -> torch.device:
        return self.origin.device
