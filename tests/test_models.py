"""Encoders, decoders, likelihoods, fusion, every model type and build_model validation."""

from __future__ import annotations

import math

import pytest
import torch

from gpvae.errors import InputError
from gpvae.models.batch import Batch, SensorBatch, merge_timeline, synthetic_batch
from gpvae.models.build import build_model
from gpvae.models.decoders import MLPDecoder
from gpvae.models.encoders import PartialEncoder
from gpvae.models.likelihoods import GaussianLikelihood, StudentTLikelihood, make_likelihood
from gpvae.models.vae import nearest_marginals, predictive_moments

S2 = ["B02", "B03", "B04", "B08"]
S1 = ["VV", "VH"]
BANDS = {"S2": S2, "S1_ASC": S1, "S1_DES": S1}

MODELS = {
    "gpvae_exact": {"type": "gpvae", "prior": "exact"},
    "gpvae_sparse": {"type": "gpvae", "prior": "sparse", "num_inducing": 10},
    "gpvae_markov": {"type": "gpvae", "prior": "markov"},
    "banded_gpvae": {"type": "banded_gpvae", "grid_step_days": 15.0},
    "iid_vae": {"type": "iid_vae"},
    "hivae": {"type": "hivae", "num_components": 3},
    "seq_vae": {"type": "seq_vae"},
}


def make(name: str, bands=BANDS, **over):
    return build_model({**MODELS[name], "latent_dim": 3, "hidden": 16, **over}, bands)


def batch3(seed: int = 0, b: int = 4, n: int = 8) -> Batch:
    return synthetic_batch({"S2": len(S2), "S1_ASC": 2, "S1_DES": 2}, b, n, seed=seed)


# --- likelihoods -----------------------------------------------------------------------------
def test_gaussian_and_student_t_log_prob_match_torch():
    g = torch.Generator().manual_seed(0)
    x, loc = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    gauss = GaussianLikelihood(3)
    with torch.no_grad():
        gauss.raw_scale.copy_(torch.tensor([-1.0, 0.0, 1.0]))
    s = gauss.scale(loc)
    torch.testing.assert_close(gauss.log_prob(x, loc),
                               torch.distributions.Normal(loc, s).log_prob(x))
    st = StudentTLikelihood(3)
    nu = st.df()
    assert (nu > 2).all()
    s = st.scale(loc)
    torch.testing.assert_close(st.log_prob(x, loc),
                               torch.distributions.StudentT(nu, loc, s).log_prob(x))
    torch.testing.assert_close(st.variance(loc), s ** 2 * nu / (nu - 2))


def test_heteroscedastic_scale_follows_raw_and_unknown_likelihood_fails():
    lik = make_likelihood("gaussian", 2, heteroscedastic=True)
    loc = torch.zeros(2, 2)
    raw = torch.tensor([[-3.0, -3.0], [3.0, 3.0]])
    v = lik.variance(loc, raw)
    assert (v[1] > 10 * v[0]).all()
    with pytest.raises(InputError, match="likelihood"):
        make_likelihood("laplace", 2)


def test_predictive_moments_include_noise_and_latent_spread():
    torch.manual_seed(0)
    dec, lik = MLPDecoder(2, 3, 8, depth=0), GaussianLikelihood(3)
    mean, var = torch.randn(4, 2), torch.rand(4, 2) + 0.5
    mu, std = predictive_moments(dec, lik, mean, var, num_samples=0)
    z = mean + var.sqrt() * torch.randn(20000, 4, 2)
    x = dec(z)[0] + lik.scale(dec(z)[0]) * torch.randn(20000, 4, 3)
    torch.testing.assert_close(mu, x.mean(0), atol=0.05, rtol=0.02)
    torch.testing.assert_close(std, x.std(0), atol=0.05, rtol=0.02)
    # non-linear decoder: Monte-Carlo path, std above the noise floor
    dec2 = MLPDecoder(2, 3, 8, depth=2)
    mu2, std2 = predictive_moments(dec2, lik, mean, var, num_samples=64)
    assert mu2.shape == (4, 3) and (std2 >= lik.noise_std() - 1e-6).all()


# --- batch layout helpers --------------------------------------------------------------------
def test_merge_timeline_sorts_and_roundtrips():
    b = batch3(1)
    tl = merge_timeline(b, ["S2", "S1_ASC", "S1_DES"])
    per_pixel = sum((sb.obs & sb.m.any(-1)).sum(1) for sb in b.sensors.values())
    assert tl.t.shape == (4, int(per_pixel.max()))  # trimmed to the longest merged series
    assert torch.equal(tl.mask.sum(1), per_pixel)
    assert (tl.t[:, 1:] >= tl.t[:, :-1]).all()
    # valid dates first, padding after them
    assert not (~tl.mask[:, :-1] & tl.mask[:, 1:]).any()
    vals = [torch.randn(sb.t.shape + (2,)) for sb in b.sensors.values()]
    back = tl.split(tl.merge(vals), fill=-5.0)
    for v, (s, sb) in zip(vals, b.sensors.items(), strict=True):
        present = sb.obs & sb.m.any(-1)
        torch.testing.assert_close(back[s][present], v[present])
        pad_back, pad_v = back[s][~present], v[~present]
        assert ((pad_back == -5.0) | (pad_back == pad_v)).all()  # trimmed padding gets fill


def test_nearest_marginals_picks_closest_valid_date():
    t = torch.tensor([[0.0, 10.0, 20.0, 20.0]])
    mask = torch.tensor([[True, False, True, False]])
    mean = torch.arange(4.0).view(1, 4, 1)
    m, v = nearest_marginals(t, mask, mean, mean + 1, torch.tensor([[1.0, 9.0, 14.0, 99.0]]),
                             torch.zeros(()), torch.ones(()))
    assert m.view(-1).tolist() == [0.0, 0.0, 2.0, 2.0]
    empty = nearest_marginals(t, mask & False, mean, mean + 1, torch.tensor([[5.0]]),
                              torch.zeros(()), torch.ones(()))
    assert empty[0].item() == 0.0 and empty[1].item() == 1.0


# --- partial encoder -------------------------------------------------------------------------
def test_partial_encoder_ignores_unobserved_bands():
    torch.manual_seed(0)
    enc = PartialEncoder(4, 16, 5)
    x = torch.randn(3, 6, 4)
    m = torch.rand(3, 6, 4) > 0.4
    out = enc(x, m)
    x2 = torch.where(m, x, torch.randn(3, 6, 4) * 100)
    x2[~m & (torch.rand(3, 6, 4) > 0.5)] = float("nan")
    torch.testing.assert_close(enc(x2, m), out)
    x3 = torch.where(m, x + 1.0, x)
    changed = (enc(x3, m) - out).abs().sum(-1) > 1e-6
    assert torch.equal(changed, m.any(-1))


@pytest.mark.parametrize("name", list(MODELS))
def test_models_ignore_values_of_unobserved_entries(name):
    torch.manual_seed(0)
    model = make(name)
    b = batch3(2)
    b2 = Batch({s: SensorBatch(sb.t, torch.where(sb.m, sb.x, torch.full_like(sb.x, 7.0)), sb.m,
                               sb.obs) for s, sb in b.sensors.items()}, b.origin, b.index)
    torch.manual_seed(1)
    e1 = model.elbo(b, num_samples=2).elbo
    torch.manual_seed(1)
    e2 = model.elbo(b2, num_samples=2).elbo
    torch.testing.assert_close(e1, e2)


# --- every model type ------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("likelihood,hetero", [("gaussian", False), ("student_t", True)])
def test_model_elbo_latent_reconstruct_shapes(name, likelihood, hetero):
    torch.manual_seed(0)
    model = make(name, likelihood=likelihood, heteroscedastic=hetero)
    b = batch3(3, b=5, n=7)
    terms = model.elbo(b, num_samples=2)
    for v in (terms.elbo, terms.recon, terms.kl):
        assert v.shape == (5,) and torch.isfinite(v).all()
    assert (terms.kl > -1e-3).all()
    torch.testing.assert_close(terms.elbo, terms.recon - model.beta * terms.kl)
    tq = torch.linspace(-20.0, 400.0, 9).expand(5, -1)
    mean, var = model.latent(b, tq)
    assert mean.shape == var.shape == (5, 9, 3) and (var > 0).all()
    for s, c in (("S2", len(S2)), ("S1_DES", 2)):
        torch.manual_seed(5)
        mu, std = model.reconstruct(b, s, tq, num_samples=4)
        assert mu.shape == std.shape == (5, 9, c)
        assert torch.isfinite(mu).all() and (std > 0).all()
        torch.manual_seed(5)  # decoding precomputed latent moments = reconstruct
        mu2, std2 = model.predict_observations(s, mean, var, tq, b, num_samples=4)
        torch.testing.assert_close((mu2, std2), (mu, std))
    hp = model.hyperparameters()
    assert hp["noise_std_S2_B02"] > 0 and all(isinstance(v, float) for v in hp.values())
    if name.startswith(("gpvae", "banded")):
        assert any("lengthscale" in k for k in hp)
    assert model.config["type"] == MODELS[name]["type"]


def test_seq_vae_latent_is_global_and_decoder_reads_time():
    torch.manual_seed(0)
    model = make("seq_vae")
    b = batch3(4)
    tq = torch.linspace(0.0, 360.0, 6).expand(4, -1)
    mean, _ = model.latent(b, tq)
    torch.testing.assert_close(mean, mean[:, :1].expand_as(mean))
    mu, _ = model.reconstruct(b, "S2", tq)
    assert (mu[:, 1:] - mu[:, :1]).abs().max() > 1e-4


def test_hivae_prior_is_a_learned_mixture():
    torch.manual_seed(0)
    model = make("hivae")
    b = batch3(5)
    empty = Batch({s: SensorBatch(sb.t, sb.x, sb.m & False, sb.obs & False)
                   for s, sb in b.sensors.items()}, b.origin, b.index)
    mean, var = model.latent(empty, torch.zeros(4, 1))
    mu_p = model.prior_means.detach()
    torch.testing.assert_close(mean[0, 0], mu_p.mean(0))
    torch.testing.assert_close(var[0, 0], 1 + mu_p.var(0, unbiased=False))
    assert torch.equal(model.elbo(empty).kl, torch.zeros(4))


# --- fusion ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gpvae_exact", "gpvae_markov", "banded_gpvae"])
def test_fusion_one_posterior_and_s1_removal_equals_s2_only(name):
    torch.manual_seed(0)
    fused = make(name, {"S2": S2, "S1_ASC": S1}, decoder_layers=0).double()
    s2only = make(name, {"S2": S2}, decoder_layers=0).double()
    missing, unexpected = s2only.load_state_dict(fused.state_dict(), strict=False)
    assert not missing and unexpected and all("S1_ASC" in k for k in unexpected)
    for model in (fused, s2only):
        if hasattr(model, "prior"):  # markov's smoother jitter also acts at padding (~1e-6)
            model.prior.jitter = 0.0
    b = synthetic_batch({"S2": len(S2), "S1_ASC": 2}, 4, 6, seed=6, dtype=torch.float64)
    tq = torch.linspace(0.0, 365.0, 5, dtype=torch.float64).expand(4, -1)
    if name.startswith("gpvae"):
        tl, post = fused.posterior(b)
        s2, s1 = b.sensors["S2"], b.sensors["S1_ASC"]
        n_merged = s2.obs.sum(1) + s1.obs.sum(1)
        assert post.mean.shape[1] == int(n_merged.max())
        assert torch.equal(tl.mask.sum(1), n_merged)
        assert (tl.t[:, 1:] >= tl.t[:, :-1]).all()
    with torch.no_grad():
        with_s1 = fused.latent(b, tq)[0]
        s1 = b.sensors["S1_ASC"]
        no_s1 = Batch({"S2": b.sensors["S2"],
                       "S1_ASC": SensorBatch(s1.t, s1.x, s1.m & False, s1.obs & False)},
                      b.origin, b.index)
        e_fused, e_s2 = fused.elbo(no_s1, num_samples=0), s2only.elbo(no_s1, num_samples=0)
        torch.testing.assert_close(e_fused.elbo, e_s2.elbo)
        torch.testing.assert_close(e_fused.kl, e_s2.kl)
        lat = fused.latent(no_s1, tq)[0]
        torch.testing.assert_close(lat, s2only.latent(no_s1, tq)[0])
    assert (with_s1 - lat).abs().max() > 1e-6  # S1 dates do move the shared latent


# --- build_model validation ------------------------------------------------------------------
@pytest.mark.parametrize("key,value", [("prior", "kalman"), ("kernel", "laplace"),
                                       ("sensors", ["S3"]), ("likelihood", "laplace"),
                                       ("type", "gan"), ("latent_dim", 0), ("hidden", -1),
                                       ("time_range", [10, 0]), ("lengthscale", "long"),
                                       ("beta", -1.0), ("heteroscedastic", "yes"),
                                       ("sensors", "S3"), ("decoder_layers", -1)])
def test_build_model_errors_name_the_key(key, value):
    cfg = {"type": "gpvae", "prior": "markov", key: value}
    with pytest.raises(InputError) as err:
        build_model(cfg, BANDS, name="m1")
    assert f"models.m1.{key}" in str(err.value) and "fix:" in str(err.value)


def test_missing_bands_raise_input_error():
    with pytest.raises(InputError, match="sensors"):
        build_model({"type": "gpvae", "sensors": ["S2", "S1_ASC"]}, {"S2": S2})
    with pytest.raises(InputError, match="sensors"):
        build_model({"type": "iid_vae", "sensors": ["S2"]}, {"S2": []})
    model = build_model({"type": "iid_vae", "sensors": ["S2", "S1_ASC"]}, BANDS)
    b = batch3()
    with pytest.raises(InputError, match="S1_ASC"):
        model.elbo(Batch({"S2": b.sensors["S2"]}, b.origin, b.index))
    bad = synthetic_batch({"S2": 3, "S1_ASC": 2}, 2, 4)
    with pytest.raises(InputError, match="band_S2"):
        model.elbo(bad)


def test_band_subset_and_missing_bands():
    model = build_model({"type": "iid_vae", "sensors": ["S2"], "bands": {"S2": ["B08", "B04"]}},
                        BANDS)
    assert model.sensor_bands == {"S2": ["B08", "B04"]}
    assert model.decoders["S2"].num_bands == 2
    rebuilt = build_model(model.config, model.sensor_bands)
    assert rebuilt.sensor_bands == model.sensor_bands
    for bands in ({"S2": ["B8A"]}, {"S1_ASC": ["VV"]}, ["B04"]):
        with pytest.raises(InputError, match="bands"):
            build_model({"type": "iid_vae", "sensors": ["S2"], "bands": bands}, BANDS)


def test_default_sensors_are_the_dataset_sensors():
    model = build_model({"type": "gpvae", "prior": "exact"}, {"S2": S2, "S1_DES": S1})
    assert model.sensors == ["S2", "S1_DES"] and model.config["sensors"] == ["S2", "S1_DES"]


# --- device ----------------------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", list(MODELS))
def test_models_run_on_cuda(name):
    torch.manual_seed(0)
    model = make(name).cuda()
    b = batch3().to("cuda")
    terms = model.elbo(b, num_samples=2)
    (-terms.elbo.sum()).backward()
    mu, std = model.reconstruct(b, "S2", torch.linspace(0, 300, 4, device="cuda").expand(4, -1))
    assert mu.is_cuda and torch.isfinite(std).all()


# --- training --------------------------------------------------------------------------------
def test_short_training_increases_gpvae_elbo():
    torch.manual_seed(0)
    model = build_model({"type": "gpvae", "prior": "markov", "latent_dim": 2, "hidden": 16,
                         "lengthscale": 60.0}, {"S2": S2[:3]})
    b = synthetic_batch({"S2": 3}, 24, 10, seed=7)
    n_obs = int(b.sensors["S2"].m.sum())

    def score() -> float:
        torch.manual_seed(123)
        with torch.no_grad():
            return float(model.elbo(b, num_samples=16).elbo.sum()) / n_obs

    before = score()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(200):
        opt.zero_grad()
        loss = -model.elbo(b, num_samples=1).elbo.sum() / n_obs
        loss.backward()
        opt.step()
    after = score()
    assert math.isfinite(after) and after > before + 0.5, (before, after)


# --- mixed precision: the GP algebra stays in float32 --------------------------------------
@pytest.mark.parametrize("name", ["gpvae_exact", "gpvae_sparse", "gpvae_markov",
                                  "banded_gpvae"])
def test_gp_algebra_runs_in_float32_under_bf16_autocast(name, monkeypatch):
    """Under bf16 autocast (what train.mixed_precision enables on CUDA; CPU autocast here) the
    prior receives float32 inputs with autocast off and gives exactly the float32 result for
    the same sites: only the networks run in bf16."""
    torch.manual_seed(0)
    model = make(name)
    b = batch3(2, b=4, n=9)
    gp = model.banded if name == "banded_gpvae" else model.prior
    seen = []
    real = gp.posterior

    def spy(*args):
        seen.append(([a.dtype for a in args if a.is_floating_point()],
                     torch.is_autocast_enabled("cpu")))
        out = real(*args)
        seen[-1] += ({k: v.detach().clone() for k, v in vars(out).items()}, args)
        return out

    monkeypatch.setattr(gp, "posterior", spy)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = model.elbo(b, num_samples=1)
    dtypes, autocast_on, post, args = seen[0]
    assert set(dtypes) == {torch.float32} and not autocast_on
    assert all(v.dtype == torch.float32 for v in post.values())
    assert torch.isfinite(terms.elbo.float()).all()
    again = real(*args)  # same float32 sites, no autocast anywhere: identical
    for k, v in post.items():
        torch.testing.assert_close(getattr(again, k), v, rtol=0, atol=0)
