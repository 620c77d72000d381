"""The training recipe: site hiding, date effects, seasonal features, schedule, budget."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gpvae.data.summary import DataSummary, date_keys
from gpvae.models.batch import Batch, synthetic_batch
from gpvae.models.build import build_model
from gpvae.models.date_effects import DateEffects, SeasonalFeatures
from gpvae.train.hiding import SiteHiding, step_generator
from gpvae.train.loop import Budget, auto_batch_size, param_groups, train_settings
from gpvae.train.schedule import lr_factor

S2 = ["B04", "B08", "B11"]


# --- site hiding -----------------------------------------------------------------------------
def test_hiding_only_hides_observed_dates_and_keeps_one():
    batch = synthetic_batch({"S2": 3}, 64, 12, seed=0)
    sb = batch.sensors["S2"]
    obs = sb.obs & sb.m.any(-1)
    hiding = SiteHiding(max_fraction=1.0, max_gap_days=400.0, gap_probability=1.0)
    hide = hiding.hide(batch, ["S2"], step_generator(3, 5))["S2"]
    assert hide.dtype == torch.bool and hide.shape == obs.shape
    assert not (hide & ~obs).any()  # padding and missing dates are never "hidden"
    assert ((obs & ~hide).sum(1) >= 1)[obs.any(1)].all()  # a site survives in every series
    assert hide.any()


def test_hiding_depends_on_seed_and_step_only():
    batch = synthetic_batch({"S2": 3}, 32, 10, seed=1)
    h = SiteHiding()
    a = h.hide(batch, ["S2"], step_generator(0, 7))["S2"]
    b = h.hide(batch, ["S2"], step_generator(0, 7))["S2"]
    c = h.hide(batch, ["S2"], step_generator(0, 8))["S2"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_hiding_fraction_and_window():
    t = torch.arange(0, 360, 4.0).expand(2000, -1)
    obs = torch.ones_like(t, dtype=torch.bool)
    only_random = SiteHiding(max_fraction=0.3, gap_probability=0.0).draw(t, obs,
                                                                     step_generator(0, 0))
    share = only_random.float().mean().item()
    assert 0.12 < share < 0.18  # U(0, 0.3) on average 0.15
    only_window = SiteHiding(max_fraction=0.0, max_gap_days=90.0, gap_probability=1.0).draw(
        t, obs, step_generator(0, 1))
    for row in only_window[:50]:  # one contiguous run of at most 90 days per series
        idx = torch.nonzero(row).flatten()
        if idx.numel():
            assert (idx.diff() == 1).all() and (t[0, idx[-1]] - t[0, idx[0]]) < 90.0


def _gpvae(**over):
    cfg = {"type": "gpvae", "prior": "exact", "latent_dim": 2, "hidden": 8, **over}
    return build_model(cfg, {"S2": S2}).double()


def test_elbo_with_hidden_sites_is_posterior_from_the_others():
    """KL and posterior come from the visible sites only; every observation is scored."""
    torch.manual_seed(0)
    model = _gpvae(seasonal_harmonics=0)
    batch = synthetic_batch({"S2": 3}, 4, 9, seed=2, dtype=torch.float64)
    sb = batch.sensors["S2"]
    hidden = torch.zeros_like(sb.obs)
    hidden[:, 1] = sb.obs[:, 1]
    _, post_h = model.posterior(batch, {"S2": hidden})
    # the same posterior by removing the hidden sites' bands from the encoder input
    visible = Batch({"S2": type(sb)(sb.t, sb.x, sb.m & ~hidden.unsqueeze(-1), sb.obs)},
                    batch.origin, batch.index)
    _, post_v = model.posterior(visible)
    torch.testing.assert_close(post_h.kl, post_v.kl)
    with torch.no_grad():
        torch.manual_seed(1)
        with_hidden = model.elbo(batch, num_samples=4, hidden={"S2": hidden}).recon
        torch.manual_seed(1)
        without = model.elbo(visible, num_samples=4).recon
    assert not torch.allclose(with_hidden, without)  # hidden observations are scored


# --- date effects and seasonal features ---------------------------------------------------
def test_date_effects_lookup_and_kl():
    keys = date_keys(np.array([0, 0, 1]), np.array([8000.4, 8010.9, 8000.2]))
    eff = DateEffects(keys, 2, init_scale=0.1)
    with torch.no_grad():
        eff.mean[:] = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    region = torch.tensor([0, 1, -1])
    t = torch.tensor([[8000.7, 8010.0, 8020.0], [8000.0, 8010.0, 8000.5],
                      [8000.0, 8010.0, 8000.5]], dtype=torch.float64)
    mean, var = eff.moments(region, t)
    assert mean[0, 0].tolist() == [1.0, 2.0] and mean[0, 1].tolist() == [3.0, 4.0]
    assert mean[1, 0].tolist() == [5.0, 6.0] and mean[1, 1].tolist() == [0.0, 0.0]
    prior = eff.prior_std().pow(2)
    torch.testing.assert_close(var[1, 1], prior)  # unknown date: the prior
    torch.testing.assert_close(var[2], prior.expand(3, -1))  # unknown region: the prior
    assert eff.kl() > 0
    with torch.no_grad():
        eff.mean.zero_()
        eff.log_std.copy_(eff.log_prior_std.expand_as(eff.log_std))
    assert abs(float(eff.kl())) < 1e-6


def test_seasonal_features_are_yearly():
    f = SeasonalFeatures(3)
    t = torch.tensor([8000.0, 8000.0 + 365.25, 8100.0], dtype=torch.float64)
    x = f(t)
    assert x.shape == (3, 6)
    torch.testing.assert_close(x[0], x[1], atol=1e-5, rtol=0)
    assert not torch.allclose(x[0], x[2])


def test_gpvae_learns_a_shared_date_offset():
    """Series = smooth pixel signal + an offset shared by every pixel on a date: the learned
    date effects track the true offsets (they are identifiable only from the scene)."""
    rng = np.random.default_rng(0)
    n, days = 96, np.arange(0, 200, 10.0)
    offsets = rng.normal(0, 1.0, days.size)
    level = rng.normal(0, 1, (n, 1))
    x = level + 0.3 * np.sin(days / 40.0)[None] + offsets[None] + 0.05 * rng.normal(
        size=(n, days.size))
    t = torch.tensor(days, dtype=torch.float32).expand(n, -1).contiguous()
    from gpvae.data.batch import SensorBatch
    sb = SensorBatch(t, torch.tensor(x[..., None], dtype=torch.float32),
                     torch.ones(n, days.size, 1, dtype=torch.bool),
                     torch.ones(n, days.size, dtype=torch.bool))
    origin = torch.full((n,), 8000.0, dtype=torch.float64)
    batch = Batch({"X": sb}, origin, torch.arange(n), torch.zeros(n, dtype=torch.int64))
    keys = date_keys(np.zeros(days.size, int), 8000.0 + days)
    summary = DataSummary(["r"], {"X": keys}, n)
    torch.manual_seed(0)
    model = build_model({"type": "gpvae", "prior": "markov", "latent_dim": 2, "hidden": 16,
                         "seasonal_harmonics": 0}, {"X": ["v"]}, data=summary)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(500):
        opt.zero_grad()
        (-model.elbo(batch).elbo.mean()).backward()
        opt.step()
    learned = model.date_effects["X"].mean.detach().numpy()[:, 0]
    corr = np.corrcoef(learned, offsets)[0, 1]
    assert corr > 0.9, corr


# --- schedule and budget ---------------------------------------------------------------------
def test_lr_schedule():
    assert lr_factor(0, 1000, 100) == pytest.approx(0.01)
    assert lr_factor(99, 1000, 100) == pytest.approx(1.0)
    assert lr_factor(100, 1000, 100) == pytest.approx(1.0)
    assert lr_factor(999, 1000, 100, floor=0.1) == pytest.approx(0.1, abs=1e-4)
    values = [lr_factor(s, 1000, 100) for s in range(100, 1000)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_budget_from_dataset_size():
    assert auto_batch_size(300) == 16 and auto_batch_size(760) == 64
    assert auto_batch_size(3240) == 256 and auto_batch_size(300_000) == 256
    s = train_settings({})
    small, large = Budget.from_settings(s, 300), Budget.from_settings(s, 300_000)
    assert small.total_steps == large.total_steps == 3000
    assert small.validate_every == 100 and small.warmup_steps == 100
    e = Budget.from_settings(train_settings({"train": {"epochs": 3, "batch_size": 10}}), 95)
    assert (e.steps_per_epoch, e.total_steps, e.validate_every) == (10, 30, 10)


def test_hyperparameters_learn_at_their_own_rate():
    model = _gpvae()
    groups = param_groups(model, 1e-3, 3.0)
    assert [g["lr"] for g in groups] == [1e-3, pytest.approx(3e-3)]
    names = {id(p): n for n, p in model.named_parameters()}
    hyper = {names[id(p)] for p in groups[1]["params"]}
    assert any("lengthscale" in n for n in hyper) and any("likelihoods" in n for n in hyper)
    assert not any("encoders" in n or "decoders" in n for n in hyper)


def test_kernel_hyperparameters_move_on_a_log_scale():
    """Adam's step is ~lr on the raw parameter: with log-parametrised length scales a few
    hundred steps move 30 days by a factor, not by a few days (softplus of raw days)."""
    model = _gpvae().float()
    raw = model.prior.kernel.kernels[0].base_kernel.raw_lengthscale
    opt = torch.optim.Adam([raw], lr=0.01)
    for _ in range(200):
        opt.zero_grad()
        (-raw.sum()).backward()  # push the length scale up at full speed
        opt.step()
    ls = model.prior.kernel.kernels[0].base_kernel.lengthscale.detach()
    assert (ls > 30.0 * math.exp(1.5)).all()
