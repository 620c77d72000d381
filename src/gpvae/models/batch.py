"""Multi-sensor timelines of a batch (the fusion axis) and synthetic batches.

The containers :class:`Batch` and :class:`SensorBatch` live in :mod:`gpvae.data.batch` (the
data layer builds them); they are re-exported here for the models.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gpvae.data.batch import Batch, SensorBatch

__all__ = ["Batch", "SensorBatch", "Timeline", "merge_timeline", "synthetic_batch"]


@dataclass
class Timeline:
    """The dates of several sensors of each pixel merged onto one sorted axis (the fusion).

    Valid dates come first, sorted increasing; padding follows with ``mask=False`` and ``t``
    equal to the last valid date (0 for a pixel with no date at all). The axis is trimmed to
    the largest number of valid dates in the batch (at least 1).
    """

    t: Tensor  # (B, M) merged times, non-decreasing per row
    mask: Tensor  # (B, M) bool
    order: Tensor  # (B, M) int64: position in the sensor-concatenated axis of each merged date
    sensors: list[str]
    sizes: list[int]  # N_s of each sensor, in ``sensors`` order

    def merge(self, values: list[Tensor]) -> Tensor:
        """Per-sensor (B, N_s, ...) tensors (``sensors`` order) -> merged (B, M, ...)."""
        cat = torch.cat(values, dim=1)
        idx = self.order.reshape(self.order.shape + (1,) * (cat.dim() - 2)).expand(
            self.order.shape + cat.shape[2:])
        return torch.gather(cat, 1, idx)

    def split(self, values: Tensor, fill: float = 0.0) -> dict[str, Tensor]:
        """Merged (B, M, ...) -> per-sensor (B, N_s, ...) at each sensor's own dates;
        dates trimmed off the merged axis (padding) get ``fill``."""
        idx = self.order.reshape(self.order.shape + (1,) * (values.dim() - 2)).expand_as(values)
        cat = values.new_full((values.shape[0], sum(self.sizes)) + values.shape[2:], fill)
        cat = cat.scatter(1, idx, values)
        return dict(zip(self.sensors, cat.split(self.sizes, dim=1), strict=True))


def merge_timeline(batch: Batch, sensors: list[str]) -> Timeline:
    """Merge the dates of ``sensors`` (present where ``obs`` and some band observed)."""
    t = torch.cat([batch.sensors[s].t for s in sensors], dim=1)
    mask = torch.cat([batch.sensors[s].obs & batch.sensors[s].m.any(-1) for s in sensors], 1)
    key = torch.where(mask, t, torch.full_like(t, float("inf")))
    width = max(int(mask.sum(1).max()), 1) if mask.numel() else 1
    order = torch.sort(key, dim=1, stable=True).indices[:, :width]
    t_sorted, mask_sorted = torch.gather(t, 1, order), torch.gather(mask, 1, order)
    filled = torch.where(mask_sorted, t_sorted, torch.full_like(t_sorted, -float("inf")))
    filled = torch.cummax(filled, dim=1).values
    filled = torch.where(torch.isinf(filled), torch.zeros_like(filled), filled)
    return Timeline(filled, mask_sorted, order, list(sensors),
                    [batch.sensors[s].t.shape[1] for s in sensors])


def synthetic_batch(sensor_bands: dict[str, int], batch_size: int, num_dates: int, *,
                    seed: int = 0, dtype: torch.dtype = torch.float32,
                    band_missing: float = 0.2, noise: float = 0.1,
                    time_range: tuple[float, float] = (0.0, 365.0)) -> Batch:
    """A random compacted batch for tests and benchmarks (not data): per pixel a phase φ,
    values x_c(t) = a_c sin(2π t / 365 + φ) + b_c + noise, between 1 and ``num_dates`` dates
    per sensor and each band missing with probability ``band_missing`` (>= 1 band per date)."""
    g = torch.Generator().manual_seed(seed)
    phase = torch.rand(batch_size, 1, 1, generator=g, dtype=dtype) * 6.2832
    sensors = {}
    for name, c in sensor_bands.items():
        t = torch.rand(batch_size, num_dates, generator=g, dtype=dtype)
        t = time_range[0] + (time_range[1] - time_range[0]) * t.sort(dim=1).values
        count = torch.randint(1, num_dates + 1, (batch_size, 1), generator=g)
        obs = torch.arange(num_dates).unsqueeze(0) < count
        last = torch.gather(t, 1, count - 1)
        t = torch.where(obs, t, last)
        a = torch.randn(1, 1, c, generator=g, dtype=dtype)
        b = torch.randn(1, 1, c, generator=g, dtype=dtype) * 0.5
        x = a * torch.sin(6.2832 * t.unsqueeze(-1) / 365.0 + phase) + b
        x = x + noise * torch.randn(x.shape, generator=g, dtype=dtype)
        m = torch.rand(x.shape, generator=g) >= band_missing
        m[..., 0] |= ~m.any(-1)
        m &= obs.unsqueeze(-1)
        sensors[name] = SensorBatch(t, torch.where(m, x, torch.zeros_like(x)), m, obs)
    return Batch(sensors, torch.zeros(batch_size, dtype=torch.float64),
                 torch.arange(batch_size, dtype=torch.int64))
