"""The gap-filling hiding protocol for one series (docs/contracts.md section 5).

Shared by the gap-filling stage (``gpvae.evaluate.hiding``: test series) and the training
loop's validation score (``gpvae.train.validation``: validation series).
"""

from __future__ import annotations

import numpy as np


def hide_series(t: np.ndarray, observed: np.ndarray, rng: np.random.Generator, *,
                random_fraction: float, gap_days: tuple[float, float]
                ) -> tuple[np.ndarray, float, float]:
    """Hiding mask (T,) of one series with dates ``t`` (increasing) and ``observed`` (T,) bool,
    plus the gap's start day and length (NaN, 0 when nothing is hidden)."""
    hide = np.zeros(t.shape, dtype=bool)
    obs = np.flatnonzero(observed)
    if obs.size < 2:
        return hide, float("nan"), 0.0
    length = float(rng.uniform(*gap_days))
    t_obs = t[obs]
    starts = obs[t_obs <= t_obs[-1] - length]
    start = t[rng.choice(starts)] if starts.size else t_obs[0]
    gap = obs[(t_obs >= start) & (t_obs < start + length)]
    if gap.size >= obs.size:  # keep at least one observation: drop the gap's last date
        gap = gap[:-1]
    hide[gap] = True
    rest = np.setdiff1d(obs, gap)
    k = min(int(round(random_fraction * obs.size)), rest.size - 1)
    if k > 0:
        hide[rng.choice(rest, size=k, replace=False)] = True
    return hide, float(start), length
