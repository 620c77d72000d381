"""Scores of Gaussian predictions (mean mu, std sigma) of held-out values y (numpy, scipy.special).

Each function averages over the given entries (1-D or any shape, all finite);
:func:`gapfill_scores` selects the finite entries and returns every score by name, the names
used in the tidy metrics table (contracts.md section 6).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr, ndtri

#: Central interval probability of the coverage and width scores.
LEVEL = 0.9


def mae(y: np.ndarray, mu: np.ndarray) -> float:
    """Mean absolute error: mean |y - mu|."""
    return float(np.mean(np.abs(y - mu)))


def rmse(y: np.ndarray, mu: np.ndarray) -> float:
    """Root mean squared error: sqrt(mean (y - mu)²)."""
    return float(np.sqrt(np.mean((y - mu) ** 2)))


def gaussian_nll(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> float:
    """Gaussian negative log-likelihood: mean [log(2π sigma²)/2 + (y - mu)² / (2 sigma²)]."""
    return float(np.mean(0.5 * np.log(2 * math.pi * sigma ** 2)
                         + (y - mu) ** 2 / (2 * sigma ** 2)))


def gaussian_crps(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> float:
    """CRPS of N(mu, sigma²) (Gneiting & Raftery 2007, eq. 21): with z = (y - mu)/sigma,
    mean sigma [z (2Φ(z) - 1) + 2φ(z) - 1/√π]."""
    z = (y - mu) / sigma
    pdf = np.exp(-0.5 * z ** 2) / math.sqrt(2 * math.pi)
    return float(np.mean(sigma * (z * (2 * ndtr(z) - 1) + 2 * pdf - 1 / math.sqrt(math.pi))))


def interval_halfwidth(sigma: np.ndarray, level: float = LEVEL) -> np.ndarray:
    """Half-width of the central ``level`` interval of N(mu, sigma²): Φ⁻¹((1 + level)/2) sigma."""
    return ndtri(0.5 * (1.0 + level)) * sigma


def coverage(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray, level: float = LEVEL) -> float:
    """Empirical coverage of the central interval: mean 1[|y - mu| <= Φ⁻¹((1+level)/2) sigma]."""
    return float(np.mean(np.abs(y - mu) <= interval_halfwidth(sigma, level)))


def interval_width(sigma: np.ndarray, level: float = LEVEL) -> float:
    """Mean width of the central interval: mean 2 Φ⁻¹((1+level)/2) sigma."""
    return float(np.mean(2 * interval_halfwidth(sigma, level)))


def gapfill_scores(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> dict[str, float]:
    """All scores over the entries where y, mu and sigma are finite (NaN when there is none):
    MAE, RMSE, NLL, CRPS, coverage90, width90, and the entry count n."""
    y, mu, sigma = (np.asarray(a, dtype=np.float64) for a in (y, mu, sigma))
    keep = np.isfinite(y) & np.isfinite(mu) & np.isfinite(sigma)
    names = ("MAE", "RMSE", "NLL", "CRPS", "coverage90", "width90")
    if not keep.any():
        return {**dict.fromkeys(names, math.nan), "n": 0.0}
    y, mu, sigma = y[keep], mu[keep], sigma[keep]
    return {"MAE": mae(y, mu), "RMSE": rmse(y, mu), "NLL": gaussian_nll(y, mu, sigma),
            "CRPS": gaussian_crps(y, mu, sigma), "coverage90": coverage(y, mu, sigma),
            "width90": interval_width(sigma), "n": float(keep.sum())}
