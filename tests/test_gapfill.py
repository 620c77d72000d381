"""Gap filling: outputs and rows, hidden values never reach a predictor, baselines' pieces."""

from __future__ import annotations

import gpytorch
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from fixtures_pixels import S2_BANDS, write_pixels

from gpvae.evaluate import gapfill
from gpvae.evaluate.gapfill import (
    bracket_span,
    gapfill_baseline,
    gapfill_model,
    loo_linear,
    span_variance_fit,
)
from gpvae.evaluate.gp_baseline import JITTER, TIME_UNIT, BandGP
from gpvae.evaluate.hiding import make_hidden, open_hidden
from gpvae.evaluate.tidy import COLUMNS
from gpvae.train.loop import train_model

METRICS = {"MAE", "RMSE", "NLL", "CRPS", "coverage90", "width90", "n"}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("gapfill")


@pytest.fixture(scope="module")
def pixels(root):
    return write_pixels(root / "pixels.nc", n_samples=40, years=(2021, 2022), s2_step_days=7,
                        seed=5)


@pytest.fixture(scope="module")
def hidden(pixels, root):
    return make_hidden(pixels, root / "hidden.nc", seed=11)


@pytest.fixture(scope="module")
def checkpoint(pixels, root):
    cfg = {"type": "gpvae", "prior": "exact", "sensors": ["S2", "S1_ASC", "S1_DES"],
           "latent_dim": 2, "hidden": 8, "train": {"epochs": 1, "batch_size": 16,
                                                   "patience": 0}}
    return train_model(pixels, "tiny_gp", cfg, root / "model", device="cpu")


def _modified(pixels, hidden, out, *, where: str) -> object:
    """Copy of ``pixels`` with S2 values changed at the hidden entries (``where='hidden'``)
    or at one observed, not hidden entry per hidden sample (``where='visible'``)."""
    h = open_hidden(hidden)
    with xr.open_dataset(pixels) as ds:
        ds = ds.load()
    v = ds["values_S2"].values
    rng = np.random.default_rng(0)
    for row, i in enumerate(h["sample"].values):
        hide = h.values[row].astype(bool)
        if where == "hidden":
            sel = hide
        else:
            sel = np.zeros_like(hide)
            sel[np.flatnonzero(~hide & ~np.isnan(v[i]).all(-1))[0]] = True
        v[i, sel] = rng.uniform(0.0, 0.6, (sel.sum(), v.shape[-1]))
    ds.to_netcdf(out)
    return out


@pytest.fixture(autouse=True)
def _small_gp_fit(monkeypatch):
    """A cheaper hyperparameter fit for the gp baseline (the protocol is the same)."""
    monkeypatch.setattr(gapfill, "GP_FIT_SAMPLES", 8)
    monkeypatch.setattr(gapfill, "GP_FIT_STEPS", 5)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many tiny batched solves: threads only add overhead here
    yield
    torch.set_num_threads(threads)


def _run(kind, pixels, hidden, checkpoint, out):
    if kind == "model":
        return gapfill_model(pixels, hidden, checkpoint, out.with_suffix(".nc"),
                             out.with_suffix(".csv"), device="cpu", batch_size=16)
    return gapfill_baseline(pixels, hidden, kind, out.with_suffix(".nc"),
                            out.with_suffix(".csv"), device="cpu")


@pytest.mark.parametrize("kind", ["model", "linear", "gp"])
def test_outputs_and_rows(kind, pixels, hidden, checkpoint, tmp_path):
    nc = _run(kind, pixels, hidden, checkpoint, tmp_path / kind)
    h = open_hidden(hidden)
    hide = h.values.astype(bool)
    with xr.open_dataset(nc) as g, xr.open_dataset(pixels) as px:
        obs = ~np.isnan(px["values_S2"].isel(sample=h["sample"].values).values)
        mean, std = g["pred_mean"].values, g["pred_std"].values
        assert mean.shape == (h.sizes["sample"], px.sizes["time_S2"], len(S2_BANDS))
        np.testing.assert_array_equal(g["sample"].values, h["sample"].values)
        assert list(g["band_S2"].values) == S2_BANDS
    target = hide[..., None] & obs
    assert np.isnan(mean[~hide]).all() and np.isnan(std[~hide]).all()
    assert np.isfinite(mean[target]).all() and (std[target] > 0).all()
    df = pd.read_csv(tmp_path / f"{kind}.csv", keep_default_na=False)
    assert list(df.columns) == list(COLUMNS)
    name = "tiny_gp" if kind == "model" else kind
    assert set(df.model) == {name} and set(df.task) == {"gapfill"}
    assert set(df.protocol) == {"hidden", "truth"} and set(df.split) == {"test"}
    assert set(df.seed) == {11} and set(df.metric) == METRICS
    assert set(df.band) == {*S2_BANDS, "all"}
    assert len(df) == 2 * (len(S2_BANDS) + 1) * len(METRICS)
    assert np.isfinite(df.value.astype(float)).all()
    n_all = df[(df.band == "all") & (df.metric == "n") & (df.protocol == "hidden")].value
    assert float(n_all.iloc[0]) == target.sum()


@pytest.mark.parametrize("kind", ["model", "linear", "gp"])
def test_hidden_values_never_reach_the_predictor(kind, pixels, hidden, checkpoint, tmp_path):
    base = _run(kind, pixels, hidden, checkpoint, tmp_path / "base")
    changed = _modified(pixels, hidden, tmp_path / "hid.nc", where="hidden")
    same = _run(kind, changed, hidden, checkpoint, tmp_path / "same")
    visible = _modified(pixels, hidden, tmp_path / "vis.nc", where="visible")
    moved = _run(kind, visible, hidden, checkpoint, tmp_path / "moved")
    with xr.open_dataset(base) as a, xr.open_dataset(same) as b, xr.open_dataset(moved) as c:
        np.testing.assert_array_equal(a["pred_mean"].values, b["pred_mean"].values)
        np.testing.assert_array_equal(a["pred_std"].values, b["pred_std"].values)
        # the predictor does read its inputs: changing visible values changes predictions
        diff = np.abs(a["pred_mean"].values - c["pred_mean"].values)
        assert np.nanmax(diff) > 1e-4
    # the scores do use the hidden values
    sa = pd.read_csv(tmp_path / "base.csv")
    sb = pd.read_csv(tmp_path / "same.csv")
    rmse = (sa.metric == "RMSE") & (sa.band == "all") & (sa.protocol == "hidden")
    assert sa[rmse].value.iloc[0] != sb[rmse].value.iloc[0]


def test_bracket_span_and_loo():
    t = np.array([[0.0, 10.0, 30.0, 60.0]])
    v = np.array([[[1.0], [2.0], [np.nan], [5.0]]])
    span = bracket_span(t, v, np.array([[-5.0, 5.0, 30.0, 70.0]]))
    np.testing.assert_allclose(span[0, :, 0], [10.0, 10.0, 50.0, 20.0])
    errors, spans = loo_linear(t, v)
    # LOO: at t=0 constant 2 -> err -1, span 20; at 10 interp(0..60) = 1 + 4/6 -> 2 - 1.667;
    # at 60 constant 2 -> 3, span 100
    np.testing.assert_allclose(errors[0], [-1.0, 2.0 - (1.0 + 4.0 * 10 / 60), 3.0])
    np.testing.assert_allclose(spans[0], [20.0, 60.0, 100.0])


def test_span_variance_fit_recovers_linear_law():
    rng = np.random.default_rng(1)
    d = rng.uniform(5, 80, 20000)
    e = rng.normal(0.0, np.sqrt(1e-4 + 2e-6 * d))
    a, b = span_variance_fit(e, d)
    assert a == pytest.approx(1e-4, rel=0.15) and b == pytest.approx(2e-6, rel=0.1)
    a0, b0 = span_variance_fit(np.array([0.1, -0.1]), np.array([10.0, 10.0]))
    assert (a0, b0) == (pytest.approx(0.01), 0.0)


class _ExactGP(gpytorch.models.ExactGP):
    def __init__(self, x, y, lik, ell, scale, const):
        super().__init__(x, y, lik)
        self.mean_module = gpytorch.means.ConstantMean()
        self.mean_module.constant = const
        self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.MaternKernel(nu=1.5))
        self.covar_module.base_kernel.lengthscale = ell
        self.covar_module.outputscale = scale

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x),
                                                         self.covar_module(x))


def test_band_gp_matches_gpytorch_exact_gp_and_ignores_padding():
    torch.manual_seed(0)
    gp = BandGP(2).double()
    t = torch.tensor([[5.0, 20.0, 31.0, 70.0, 90.0, 0.0]], dtype=torch.float64)
    y = torch.randn(1, 6, 2, dtype=torch.float64)
    m = torch.ones(1, 6, 2, dtype=torch.bool)
    m[0, 5] = False  # padding
    m[0, 2, 1] = False  # band 1 misses a date
    y_pad = y.clone()
    y_pad[0, 5] = 123.0
    lml = gp.log_marginal(t, y_pad, m)
    tq = torch.tensor([[10.0, 50.0]], dtype=torch.float64)
    mean, std = gp.predict(t, y_pad, m, tq)
    ell = gp.kernel.base_kernel.lengthscale[0].item()
    scale = gp.kernel.outputscale[0].item()
    noise = gp.likelihood.noise[0].item()
    for b in range(2):
        keep = m[0, :, b]
        x = t[0, keep] / TIME_UNIT
        lik = gpytorch.likelihoods.GaussianLikelihood().double()
        lik.noise = noise + JITTER
        ref = _ExactGP(x, y[0, keep, b], lik, ell, scale, gp.mean.constant[b].item()).double()
        ref.eval()
        lik.eval()
        with gpytorch.settings.fast_computations(False, False, False):
            n = int(keep.sum())
            ref.train()
            mll = gpytorch.mlls.ExactMarginalLogLikelihood(lik, ref)
            expect = mll(ref(x), y[0, keep, b]).item() * n
            ref.eval()
            pred = lik(ref(tq[0] / TIME_UNIT))
        assert lml[0, b].item() == pytest.approx(expect, rel=1e-6)
        np.testing.assert_allclose(mean[0, :, b].detach(), pred.mean.detach(), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(std[0, :, b].detach(),
                                   (pred.variance - JITTER).sqrt().detach(), rtol=1e-6)
