"""Per-pixel and per-scene gap-filling baselines (numpy): Whittaker smoothing, the per-date
scene mean, and the per-date scene mean plus the pixel's offset.

All take the remaining observations of the series to fill, ``values`` (N, T, C) with NaN where
missing or hidden, their dates ``t`` (N, T) (days, increasing per row), and return the
prediction at every date (N, T, C). What they learn from other pixels (the Whittaker lambda,
the scene statistics) comes from TRAINING series only.
"""

from __future__ import annotations

import numpy as np

#: Whittaker lambdas tried by the leave-out selection (divided differences, dates in days).
WHITTAKER_LAMBDAS = (1e-1, 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6)


def whittaker_series(t: np.ndarray, y: np.ndarray, query: np.ndarray, lam: float,
                     order: int = 2) -> np.ndarray:
    """Whittaker-Eilers smoother (Eilers 2003, divided differences for uneven dates) of one
    band of one series: fitted at the observed dates of ``y`` (NaN = missing) and evaluated at
    the ``query`` dates (bool (T,)) inside the observed range; linear interpolation (constant
    beyond the ends) where the smoother cannot run (fewer than order + 2 observations) and
    outside the observed range. Returns (T,), NaN where nothing is predicted."""
    from whittaker_eilers import WhittakerSmoother

    ok = ~np.isnan(y)
    out = np.full(t.shape, np.nan)
    if not ok.any():
        return out
    linear = np.interp(t, t[ok], y[ok])
    if ok.sum() < order + 2:
        return np.where(query | ok, linear, np.nan)
    lo, hi = t[ok][0], t[ok][-1]
    use = ok | (query & (t >= lo) & (t <= hi))
    x = t[use].astype(np.float64)
    # dates closer than 1e-6 d would make the divided differences singular
    if np.any(np.diff(x) <= 1e-6):
        return np.where(query | ok, linear, np.nan)
    smoother = WhittakerSmoother(lmbda=float(lam), order=order, data_length=int(use.sum()),
                                 x_input=x.tolist(), weights=ok[use].astype(float).tolist())
    out[use] = np.asarray(smoother.smooth(np.where(ok[use], y[use], 0.0).tolist()))
    outside = query & ~use
    out[outside] = linear[outside]
    return out


def whittaker_fill(t: np.ndarray, values: np.ndarray, query: np.ndarray, lam: float
                   ) -> np.ndarray:
    """:func:`whittaker_series` of every series and band: (N, T, C) at the ``query`` (N, T)
    dates (and the observed ones)."""
    out = np.full(values.shape, np.nan)
    for i in range(values.shape[0]):
        for b in range(values.shape[-1]):
            out[i, :, b] = whittaker_series(t[i], values[i, :, b], query[i], lam)
    return out


def choose_lambda(t: np.ndarray, values: np.ndarray, hidden: np.ndarray,
                  lambdas: tuple[float, ...] = WHITTAKER_LAMBDAS) -> tuple[float, np.ndarray]:
    """The lambda with the lowest MAE at the ``hidden`` (N, T) entries of TRAINING series
    (values (N, T, C) complete, hidden entries removed before smoothing) and its predictions."""
    remaining = np.where(hidden[..., None], np.nan, values)
    scored = hidden[..., None] & ~np.isnan(values)
    best: tuple[float, float, np.ndarray] | None = None
    for lam in lambdas:
        pred = whittaker_fill(t, remaining, hidden, lam)
        err = np.abs(pred - values)[scored]
        mae = float(np.nanmean(err)) if err.size else np.inf
        if best is None or mae < best[0]:
            best = (mae, lam, pred)
    assert best is not None
    return best[1], best[2]


def _fill_over_time(x: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Per band, linear interpolation over the date index of the entries ``ok`` of x (T, C)
    (constant beyond the ends); NaN for a band without any."""
    out = np.full(x.shape, np.nan)
    pos = np.arange(x.shape[0])
    for b in range(x.shape[1]):
        if ok[:, b].any():
            out[:, b] = np.interp(pos, pos[ok[:, b]], x[ok[:, b], b])
    return out


def scene_statistics(values: np.ndarray, groups: np.ndarray
                     ) -> dict[object, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per group (region) of TRAINING series: per-date mean, std and count (T, C) over the
    series observed on that date. A date without training observations gets the mean
    interpolated from its neighbouring dates; the std of dates with fewer than 2 observations
    is interpolated from the dates that have them."""
    out = {}
    for g in np.unique(groups):
        v = values[groups == g]
        n = (~np.isnan(v)).sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.nansum(v, 0) / n
            var = np.nansum((v - mean) ** 2, 0) / n
        out[g] = (_fill_over_time(mean, n > 0), np.sqrt(_fill_over_time(var, n > 1)), n)
    return out


def scene_mean_fill(stats: dict, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-date scene mean (and the scene's per-date std) of each series' group (N, T, C);
    NaN for a group or date without training series."""
    shape = next(iter(stats.values()))[0].shape
    mean = np.stack([stats[g][0] if g in stats else np.full(shape, np.nan) for g in groups])
    std = np.stack([stats[g][1] if g in stats else np.full(shape, np.nan) for g in groups])
    return mean, std


def pixel_offset(values: np.ndarray, scene_mean: np.ndarray) -> np.ndarray:
    """The mean difference (N, 1, C) between each series' remaining observations and the scene
    mean on the same dates (0 where the series has none on a date with a scene mean)."""
    with np.errstate(invalid="ignore"):
        diff = values - scene_mean
        n = (~np.isnan(diff)).sum(1, keepdims=True)
        off = np.nansum(diff, 1, keepdims=True) / np.maximum(n, 1)
    return np.where(n > 0, off, 0.0)
