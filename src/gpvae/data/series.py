"""Series compaction: per pixel only its observed dates, in time order, padded at the end.

Shared by training (gpvae.data.dataset), the evaluation stages and tile inference.
"""

from __future__ import annotations

import numpy as np
import torch

from gpvae.data.batch import SensorBatch


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
