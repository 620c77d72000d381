"""Gap-filling scores against hand-computed values, and the tidy metrics table helpers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate
from scipy.stats import norm

from gpvae.evaluate import gapfill_metrics as gm
from gpvae.evaluate.tidy import (
    COLUMNS,
    merge_tidy,
    metric_rows,
    read_tidy_csv,
    summarise,
    tidy_row,
    write_tidy_csv,
)

Z95 = 1.6448536269514722  # Φ⁻¹(0.95), from tables


def crps_by_integration(y: float, mu: float, sigma: float) -> float:
    """CRPS = ∫ (F(x) - 1[x >= y])² dx, by quadrature on both sides of y."""
    f = norm(mu, sigma).cdf
    lo = integrate.quad(lambda x: f(x) ** 2, -np.inf, y)[0]
    hi = integrate.quad(lambda x: (1 - f(x)) ** 2, y, np.inf)[0]
    return lo + hi


@pytest.mark.parametrize("y,mu,sigma", [(0.0, 0.0, 1.0), (1.3, 0.2, 0.5), (-2.0, 1.0, 3.0),
                                        (0.31, 0.3, 0.01)])
def test_crps_matches_numerical_integration(y, mu, sigma):
    got = gm.gaussian_crps(np.array([y]), np.array([mu]), np.array([sigma]))
    assert got == pytest.approx(crps_by_integration(y, mu, sigma), rel=1e-6, abs=1e-9)


def test_crps_at_the_mean_is_known_constant():
    # CRPS(N(mu, s²), mu) = s (2 φ(0) - 1/√π) = s (√2 - 1) / √π
    s = 2.5
    assert gm.gaussian_crps(np.array([4.0]), np.array([4.0]), np.array([s])) == pytest.approx(
        s * (math.sqrt(2) - 1) / math.sqrt(math.pi))


def test_nll_hand_values():
    sigma = np.array([2.0, 2.0])
    # z = 0 and z = 1: 0.5 log(2π·4) + {0, 0.5}
    got = gm.gaussian_nll(np.array([1.0, 3.0]), np.array([1.0, 1.0]), sigma)
    assert got == pytest.approx(0.5 * math.log(8 * math.pi) + 0.25)


def test_mae_rmse_hand_values():
    y, mu = np.array([1.0, 2.0, 4.0]), np.array([1.0, 0.0, 5.0])
    assert gm.mae(y, mu) == pytest.approx(1.0)
    assert gm.rmse(y, mu) == pytest.approx(math.sqrt(5 / 3))


def test_coverage_and_width():
    mu, sigma = np.zeros(4), np.ones(4)
    y = np.array([0.0, 1.6, 1.7, -3.0])  # inside, inside, outside, outside of ±1.645
    assert gm.coverage(y, mu, sigma) == pytest.approx(0.5)
    assert gm.interval_width(np.array([1.0, 3.0])) == pytest.approx(2 * Z95 * 2.0)
    # calibrated Gaussian draws: coverage close to 0.9
    rng = np.random.default_rng(0)
    y = rng.normal(0.0, 2.0, 200_000)
    assert gm.coverage(y, np.zeros_like(y), np.full_like(y, 2.0)) == pytest.approx(0.9, abs=0.005)


def test_scores_skip_nan_and_handle_empty():
    y = np.array([1.0, np.nan, 3.0])
    mu = np.array([1.0, 5.0, np.nan])
    s = gm.gapfill_scores(y, mu, np.ones(3))
    assert s["n"] == 1 and s["MAE"] == 0.0 and s["coverage90"] == 1.0
    empty = gm.gapfill_scores(np.full(3, np.nan), mu, np.ones(3))
    assert empty["n"] == 0 and math.isnan(empty["RMSE"])
    assert set(s) == {"MAE", "RMSE", "NLL", "CRPS", "coverage90", "width90", "n"}


def test_tidy_roundtrip_merge_and_summary(tmp_path):
    rows = []
    for seed, value in [(0, 1.0), (1, 2.0), (2, 4.0)]:
        rows += metric_rows({"MAE": value, "RMSE": 2 * value}, model="m", task="gapfill",
                            protocol="hidden", split="test", seed=seed, band="all")
    a = write_tidy_csv(rows, tmp_path / "a.csv")
    b = write_tidy_csv([tidy_row("m", "classification", "parcel", "test", 0, "OA", 0.5,
                                 classifier="rf", **{"class": "wheat"})], tmp_path / "b.csv")
    df = read_tidy_csv(merge_tidy([a, b], tmp_path / "all.csv"))
    assert list(df.columns) == list(COLUMNS) and len(df) == 7
    assert (df[df.task == "gapfill"]["classifier"] == "").all()
    assert df[df.task == "classification"]["class"].tolist() == ["wheat"]
    summ = summarise(df)
    mae = summ[(summ.metric == "MAE")].iloc[0]
    assert mae["mean"] == pytest.approx(7 / 3)
    assert mae["std"] == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1))
    assert mae["n_seeds"] == 3
    assert math.isnan(summ[summ.metric == "OA"]["std"].iloc[0])
    with pytest.raises(ValueError):
        tidy_row("m", "t", "p", "s", 0, "x", 1.0, colour="red")
    assert isinstance(pd.read_csv(tmp_path / "all.csv"), pd.DataFrame)
