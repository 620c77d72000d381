"""GP prior approximations against dense reference computations (float64 unless stated)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import ive
from torch.distributions import MultivariateNormal, kl_divergence

from gpvae.errors import InputError
from gpvae.models.kernels import make_kernel
from gpvae.models.priors import PRIORS, BandedGPPosterior, make_prior

F64 = torch.float64
MARKOV_KERNELS = ["matern12", "matern32", "matern52"]


def problem(B=3, N=12, L=2, seed=0, dtype=F64, shared_dates=False, offset=8000.0):
    """Random irregular dates (days since EPOCH), masks with >= 1 observation, random sites."""
    g = torch.Generator().manual_seed(seed)
    if shared_dates:
        t = torch.sort(torch.rand(N, generator=g, dtype=F64) * 365).values.expand(B, -1)
    else:
        t = torch.sort(torch.rand(B, N, generator=g, dtype=F64) * 365, dim=1).values
    mask = torch.rand(B, N, generator=g) > 0.3
    mask[:, 0] = True
    mu = torch.randn(B, N, L, generator=g, dtype=F64)
    s2 = 0.05 + torch.rand(B, N, L, generator=g, dtype=F64)
    return (t + offset).to(dtype).contiguous(), mask, mu.to(dtype), s2.to(dtype)


def kernel(name="matern32", L=2, dtype=F64, **kw):
    kw.setdefault("lengthscale", 40.0)
    return make_kernel(name, L, dtype=dtype, **kw)


def dense_gp(kfun, t, mask, mu, s2, tq=None):
    """Reference by plain linear algebra per pixel and latent: log Z, marginals at t (or tq)."""
    B, N, L = mu.shape
    tq = t if tq is None else tq
    log_z = torch.zeros(B, dtype=F64)
    mean = torch.zeros(B, tq.shape[1], L, dtype=F64)
    var = torch.zeros_like(mean)
    for b in range(B):
        o = mask[b]
        to, y = t[b, o], mu[b, o]
        for lat in range(L):
            K = kfun(to[:, None] - to[None, :], lat)
            C = K + torch.diag(s2[b, o, lat])
            log_z[b] += MultivariateNormal(torch.zeros_like(to), C).log_prob(y[:, lat])
            Kq = kfun(tq[b][:, None] - to[None, :], lat)
            Ci = torch.linalg.inv(C)
            mean[b, :, lat] = Kq @ Ci @ y[:, lat]
            var[b, :, lat] = kfun(torch.zeros(1, dtype=F64), lat) - ((Kq @ Ci) * Kq).sum(-1)
    return log_z, mean, var


def gpytorch_kfun(k):
    def f(tau, lat):
        with torch.no_grad():
            x = tau.reshape(-1, 1)
            kk = k(torch.zeros(1, 1, dtype=F64), x).to_dense()[lat, 0]
        return kk.reshape(tau.shape)
    return f


def site_kl_ref(log_z, mean, var, mask, mu, s2):
    e = -0.5 * (np.log(2 * np.pi) + torch.log(s2) + (mu - mean) ** 2 / s2) - 0.5 * var / s2
    return (e * mask[..., None]).sum((1, 2)) - log_z


# ---------------------------------------------------------------- markov vs dense
@pytest.mark.parametrize("bias", [0.0, 0.8])
@pytest.mark.parametrize("name", MARKOV_KERNELS)
@pytest.mark.parametrize("scan", ["sequential", "parallel"])
def test_markov_equals_dense(name, scan, bias):
    """Also with a bias (constant) component: one more state, A = 1, Q = 0."""
    t, mask, mu, s2 = problem(seed=1)
    k = kernel(name, bias=bias)
    prior = make_prior("markov", k, jitter=0.0, scan=scan)
    log_z, mean, var = dense_gp(gpytorch_kfun(k), t, mask, mu, s2)
    got = prior.log_marginal(t, mask, mu, s2).detach()
    torch.testing.assert_close(got, log_z, rtol=1e-5, atol=0)
    post = prior.posterior(t, mask, mu, s2)
    torch.testing.assert_close(post.mean.detach(), mean, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(post.var.detach(), var, rtol=1e-6, atol=1e-8)
    kl = site_kl_ref(log_z, mean, var, mask, mu, s2)
    torch.testing.assert_close(post.kl.detach(), kl, rtol=1e-5, atol=1e-8)


def test_markov_quasi_periodic_equals_truncated_dense():
    J, lp, ls, sig2 = 3, 1.5, 200.0, 0.8
    t, mask, mu, s2 = problem(seed=2, N=15, L=1)
    k = kernel("quasi_periodic", L=1, lengthscale=ls, outputscale=sig2, periodic_lengthscale=lp)
    prior = make_prior("markov", k, jitter=0.0, num_harmonics=J)

    def trunc(tau, lat):
        q = [ive(0, 1 / lp)] + [2 * ive(j, 1 / lp) for j in range(1, J + 1)]
        per = sum(qj * torch.cos(j * 2 * np.pi * tau / 365.25) for j, qj in enumerate(q))
        r = np.sqrt(3) * tau.abs() / ls
        return sig2 * per * (1 + r) * torch.exp(-r)

    log_z, mean, var = dense_gp(trunc, t, mask, mu, s2)
    torch.testing.assert_close(prior.log_marginal(t, mask, mu, s2).detach(), log_z, rtol=1e-5,
                               atol=0)
    post = prior.posterior(t, mask, mu, s2)
    torch.testing.assert_close(post.mean.detach(), mean, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(post.var.detach(), var, rtol=1e-6, atol=1e-8)
    # loosely equal to gpytorch's exact quasi-periodic kernel with enough harmonics
    exact = make_prior("exact", k, jitter=0.0).log_marginal(t, mask, mu, s2).detach()
    many = make_prior("markov", k, jitter=0.0, num_harmonics=8).log_marginal(t, mask, mu, s2)
    torch.testing.assert_close(many.detach(), exact, rtol=1e-4, atol=0)
    assert (many.detach() - exact).abs().max() < (log_z - exact).abs().max()


@pytest.mark.parametrize("name", MARKOV_KERNELS + ["quasi_periodic"])
def test_parallel_scan_equals_sequential(name):
    t, mask, mu, s2 = problem(seed=3, N=13)
    k = kernel(name, lengthscale=60.0)
    seq = make_prior("markov", k, scan="sequential", num_harmonics=3)
    par = make_prior("markov", k, scan="parallel", num_harmonics=3)
    a, b = seq.posterior(t, mask, mu, s2), par.posterior(t, mask, mu, s2)
    for x, y in [(a.mean, b.mean), (a.var, b.var), (a.kl, b.kl)]:
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-10)
    tq = torch.linspace(7900, 8500, 7, dtype=F64).expand(3, -1)
    for x, y in zip(seq.predict(t, mask, mu, s2, tq), par.predict(t, mask, mu, s2, tq),
                    strict=True):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-10)


def test_markov_rejects_kernels_without_state_space_and_bad_scan():
    for name in ("rbf", "rq", "cauchy"):
        with pytest.raises(InputError, match="matern52"):
            make_prior("markov", kernel(name))
    with pytest.raises(InputError, match="sequential"):
        make_prior("markov", kernel(), scan="fast")


@pytest.mark.parametrize("name", ["matern52", "quasi_periodic"])
def test_float32_close_to_float64(name):
    """Dates ~8000 days since EPOCH must not cost float32 precision (origins are subtracted)."""
    t, mask, mu, s2 = problem(seed=4, N=30)
    kw = dict(lengthscale=300.0) if name == "quasi_periodic" else {}
    p64, p32 = all_priors(kernel(name, **kw)), all_priors(kernel(name, dtype=torch.float32, **kw))
    for label in p64:
        ref = p64[label].posterior(t, mask, mu, s2)
        got = p32[label].posterior(t.float(), mask, mu.float(), s2.float())
        for x, y in [(got.mean, ref.mean), (got.var, ref.var), (got.kl, ref.kl)]:
            torch.testing.assert_close(x.double(), y, rtol=1e-3, atol=1e-3, msg=label)


def test_markov_unsorted_padding_is_inert():
    t, mask, mu, s2 = problem(seed=5, N=8)
    prior = make_prior("markov", kernel(), scan="sequential")
    ref = prior.posterior(t, mask, mu, s2)
    pad = 3
    t2 = torch.cat([t, torch.zeros(3, pad, dtype=F64)], 1)  # padding dated 0, out of order
    m2 = torch.cat([mask, torch.zeros(3, pad, dtype=torch.bool)], 1)
    mu2 = torch.cat([mu, torch.full((3, pad, 2), float("nan"), dtype=F64)], 1)
    s22 = torch.cat([s2, torch.full((3, pad, 2), float("nan"), dtype=F64)], 1)
    got = prior.posterior(t2, m2, mu2, s22)
    torch.testing.assert_close(got.mean[:, :8], ref.mean)
    torch.testing.assert_close(got.var[:, :8], ref.var)
    torch.testing.assert_close(got.kl, ref.kl)


# ---------------------------------------------------------------- exact
def test_exact_equals_dense_reference():
    t, mask, mu, s2 = problem(seed=6, L=3)
    k = kernel("rq", L=3, alpha=2.0)
    prior = make_prior("exact", k, jitter=0.0)
    tq = torch.linspace(7950, 8400, 9, dtype=F64).expand(3, -1)
    log_z, mean, var = dense_gp(gpytorch_kfun(k), t, mask, mu, s2, tq)
    torch.testing.assert_close(prior.log_marginal(t, mask, mu, s2).detach(), log_z)
    qm, qv = prior.predict(t, mask, mu, s2, tq)
    torch.testing.assert_close(qm.detach(), mean)
    torch.testing.assert_close(qv.detach(), var)


def test_exact_padded_batch_equals_pixel_by_pixel():
    t, mask, mu, s2 = problem(seed=7, B=4, N=10)
    prior = make_prior("exact", kernel("matern52"))
    batch = prior.posterior(t, mask, mu, s2)
    lm = prior.log_marginal(t, mask, mu, s2)
    for b in range(4):
        o = mask[b]
        one = prior.posterior(t[b:b + 1, o], o[o][None], mu[b:b + 1, o], s2[b:b + 1, o])
        torch.testing.assert_close(batch.mean[b, o], one.mean[0])
        torch.testing.assert_close(batch.var[b, o], one.var[0])
        torch.testing.assert_close(batch.kl[b], one.kl[0])
        one_lm = prior.log_marginal(t[b:b + 1, o], o[o][None], mu[b:b + 1, o], s2[b:b + 1, o])
        torch.testing.assert_close(lm[b], one_lm[0])


# ---------------------------------------------------------------- sparse
@pytest.mark.parametrize("name", ["matern32", "rbf", "quasi_periodic"])
def test_sparse_with_inducing_at_dates_equals_exact(name):
    t, mask, mu, s2 = problem(seed=8, shared_dates=True)
    k = kernel(name)
    exact = make_prior("exact", k, jitter=0.0)
    sparse = make_prior("sparse", k, jitter=0.0, num_inducing=3, time_range=(0.0, 1.0))
    z = t[0]
    a, b = exact.posterior(t, mask, mu, s2), sparse.posterior(t, mask, mu, s2, inducing=z)
    for x, y in [(a.mean, b.mean), (a.var, b.var), (a.kl, b.kl)]:
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(sparse.log_marginal(t, mask, mu, s2, inducing=z),
                               exact.log_marginal(t, mask, mu, s2), rtol=1e-6, atol=1e-8)
    tq = torch.linspace(7900, 8500, 7, dtype=F64).expand(3, -1)
    for x, y in zip(exact.predict(t, mask, mu, s2, tq),
                    sparse.predict(t, mask, mu, s2, tq, inducing=z), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-8)


def test_sparse_bound_below_exact_and_learnable_inducing():
    t, mask, mu, s2 = problem(seed=9)
    k = kernel("matern32")
    sparse = make_prior("sparse", k, num_inducing=6, time_range=(8000.0, 8365.0),
                        learn_inducing=True)
    assert isinstance(sparse.inducing, torch.nn.Parameter)
    torch.testing.assert_close(sparse.inducing[[0, -1]].detach(),
                               torch.tensor([8000.0, 8365.0], dtype=F64))
    bound = sparse.log_marginal(t, mask, mu, s2)
    assert (bound < make_prior("exact", k).log_marginal(t, mask, mu, s2)).all()
    sparse.posterior(t, mask, mu, s2).kl.sum().backward()
    assert torch.isfinite(sparse.inducing.grad).all() and sparse.inducing.grad.abs().sum() > 0


# ---------------------------------------------------------------- banded
def banded_problem(B=3, G=9, L=2, seed=10):
    g = torch.Generator().manual_seed(seed)
    grid = 8000.0 + 15.0 * torch.arange(G, dtype=F64)
    mean = torch.randn(B, G, L, generator=g, dtype=F64)
    d = 0.3 + torch.rand(B, G, L, generator=g, dtype=F64)
    e = torch.randn(B, G - 1, L, generator=g, dtype=F64)
    return grid, mean, d, e


def test_banded_equals_dense():
    grid, mean, d, e = banded_problem()
    k = kernel("matern52")
    post = BandedGPPosterior(k, jitter=0.0).posterior(grid, mean, d, e)
    Bm = torch.diag_embed(d.transpose(1, 2)) + torch.diag_embed(e.transpose(1, 2), offset=1)
    prec = Bm.mT @ Bm
    with torch.no_grad():
        K = k(grid[:, None] - grid[0]).to_dense()
    q = MultivariateNormal(mean.transpose(1, 2), precision_matrix=prec)
    p = MultivariateNormal(torch.zeros_like(grid), K)
    torch.testing.assert_close(post.kl.detach(), kl_divergence(q, p).sum(-1))
    ref_var = torch.diagonal(torch.linalg.inv(prec), dim1=-2, dim2=-1).transpose(1, 2)
    torch.testing.assert_close(post.var.detach(), ref_var)
    torch.testing.assert_close(post.mean, mean)


def test_banded_predict():
    grid, mean, d, e = banded_problem()
    k = kernel("matern32")
    banded = BandedGPPosterior(k, jitter=0.0)
    post = banded.posterior(grid, mean, d, e)
    m, v = banded.predict(grid, mean, d, e, grid.expand(3, -1))
    torch.testing.assert_close(m, post.mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(v, post.var, rtol=1e-5, atol=1e-6)
    far = torch.full((3, 2), 8000.0 + 1e5, dtype=F64)
    m, v = banded.predict(grid, mean, d, e, far)
    torch.testing.assert_close(m, torch.zeros_like(m), atol=1e-8, rtol=0)
    torch.testing.assert_close(v, torch.ones_like(v), atol=1e-8, rtol=0)


# ---------------------------------------------------------------- all approximations
def all_priors(k):
    return {"exact": make_prior("exact", k),
            "sparse": make_prior("sparse", k, num_inducing=8, time_range=(7950.0, 8400.0)),
            "markov_seq": make_prior("markov", k, scan="sequential"),
            "markov_par": make_prior("markov", k, scan="parallel")}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kl_nonnegative(seed):
    t, mask, mu, s2 = problem(seed=20 + seed, N=15)
    s2 = s2 * 10.0 ** (seed - 1)  # confident to vague sites
    for prior in all_priors(kernel("matern32")).values():
        kl = prior.posterior(t, mask, mu, s2).kl
        assert (kl >= -1e-9).all() and (kl > 0).any()
    grid, mean, d, e = banded_problem(seed=seed)
    assert (BandedGPPosterior(kernel("matern32")).posterior(grid, mean, d, e).kl >= 0).all()


def test_predict_at_sites_and_far_away():
    t, mask, mu, s2 = problem(seed=11, shared_dates=True)
    k = kernel("matern32", outputscale=2.0)
    for name, prior in all_priors(k).items():
        post = prior.posterior(t, mask, mu, s2)
        m, v = prior.predict(t, mask, mu, s2, t)
        torch.testing.assert_close(m, post.mean, rtol=1e-6, atol=1e-8, msg=name)
        torch.testing.assert_close(v, post.var, rtol=1e-6, atol=1e-8, msg=name)
        far = torch.tensor([[3000.0, 20000.0]], dtype=F64).expand(3, -1)
        m, v = prior.predict(t, mask, mu, s2, far)
        torch.testing.assert_close(m, torch.zeros_like(m), atol=1e-6, rtol=0, msg=name)
        torch.testing.assert_close(v, torch.full_like(v, 2.0), atol=1e-6, rtol=0, msg=name)


def gradient_series(kind, dtype):
    """One observation, or two clusters separated by a 200-day gap."""
    if kind == "one":
        t = torch.tensor([[8100.0, 8100.0, 8100.0]], dtype=dtype)
        mask = torch.tensor([[True, False, False]])
    else:
        t = torch.tensor([[8000.0, 8005.0, 8010.0, 8210.0, 8215.0, 8230.0]], dtype=dtype)
        mask = torch.ones(1, 6, dtype=torch.bool)
    g = torch.Generator().manual_seed(5)
    mu = torch.randn(1, t.shape[1], 2, generator=g).to(dtype).requires_grad_()
    s2 = (0.01 + torch.rand(1, t.shape[1], 2, generator=g)).to(dtype).requires_grad_()
    return t, mask, mu, s2


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("kind", ["one", "gap"])
@pytest.mark.parametrize("name", ["matern52", "quasi_periodic"])
def test_gradients_finite(dtype, kind, name):
    k = kernel(name, dtype=dtype, lengthscale=20.0)
    tq = torch.tensor([[7900.0, 8100.0, 8120.0, 8600.0]], dtype=dtype)
    for label, prior in all_priors(k).items():
        prior.kernel.zero_grad()
        t, mask, mu, s2 = gradient_series(kind, dtype)
        post = prior.posterior(t, mask, mu, s2)
        m, v = prior.predict(t, mask, mu, s2, tq)
        loss = (post.kl.sum() + post.mean.sum() + post.var.sum() + m.sum() + v.sum()
                + prior.log_marginal(t, mask, mu, s2).sum())
        loss.backward()
        assert torch.isfinite(loss), label
        assert torch.isfinite(mu.grad).all() and torch.isfinite(s2.grad).all(), label
        assert mu.grad[mask].abs().sum() > 0, label
        grads = [p.grad for p in k.parameters() if p.requires_grad]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads), label
    grid = torch.tensor([8000.0, 8100.0, 8200.0, 8300.0], dtype=dtype)
    mean = torch.zeros(1, 4, 2, dtype=dtype, requires_grad=True)
    d = torch.ones(1, 4, 2, dtype=dtype, requires_grad=True)
    e = torch.zeros(1, 3, 2, dtype=dtype, requires_grad=True)
    banded = BandedGPPosterior(k)
    post = banded.posterior(grid, mean, d, e)
    (post.kl.sum() + post.var.sum() + sum(x.sum() for x in banded.predict(
        grid, mean, d, e, tq))).backward()
    assert all(torch.isfinite(x.grad).all() for x in (mean, d, e))


def test_unknown_prior_names_valid_choices():
    with pytest.raises(InputError) as err:
        make_prior("variational", kernel())
    for name in PRIORS:
        assert name in str(err.value)
