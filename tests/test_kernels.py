"""Kernels and their state-space forms against closed-form formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import ive

from gpvae.errors import InputError
from gpvae.models.kernels import KERNELS, kernel_hyperparameters, make_kernel
from gpvae.models.statespace import scaled_bessel_i, state_space

TAU = np.array([0.0, 0.5, 3.0, 17.0, 45.0, 120.0, 400.0])


def k_at(kernel, tau: np.ndarray) -> np.ndarray:
    """k_l(0, tau) from gpytorch, (L, len(tau))."""
    x = torch.tensor(tau, dtype=torch.float64)[:, None]
    return kernel(torch.zeros(1, 1, dtype=torch.float64), x).to_dense()[:, 0].detach().numpy()


def matern(nu: float, tau: np.ndarray, ls: float) -> np.ndarray:
    r = np.sqrt(2 * nu) * np.abs(tau) / ls
    poly = {0.5: 1.0, 1.5: 1.0 + r, 2.5: 1.0 + r + r**2 / 3.0}[nu]
    return poly * np.exp(-r)


def truncated_periodic(tau: np.ndarray, period: float, lp: float, J: int) -> np.ndarray:
    """sum_j q_j^2 cos(j w tau) with q_0^2 = ive(0, 1/lp), q_j^2 = 2 ive(j, 1/lp)."""
    z = 1.0 / lp
    out = ive(0, z) * np.ones_like(tau)
    for j in range(1, J + 1):
        out = out + 2 * ive(j, z) * np.cos(j * 2 * np.pi * tau / period)
    return out


def test_unknown_kernel_names_valid_choices():
    with pytest.raises(InputError) as err:
        make_kernel("matern72", 2)
    for name in KERNELS:
        assert name in str(err.value)


@pytest.mark.parametrize("name,nu", [("matern12", 0.5), ("matern32", 1.5), ("matern52", 2.5)])
def test_matern_closed_form(name, nu):
    k = make_kernel(name, 3, lengthscale=25.0, outputscale=2.5, dtype=torch.float64)
    got = k_at(k, TAU)
    assert got.shape == (3, len(TAU))
    np.testing.assert_allclose(got, 2.5 * matern(nu, TAU, 25.0)[None].repeat(3, 0), rtol=1e-6,
                               atol=1e-9)


def test_rbf_rq_cauchy_closed_form():
    ls = 20.0
    rbf = k_at(make_kernel("rbf", 1, lengthscale=ls, dtype=torch.float64), TAU)[0]
    np.testing.assert_allclose(rbf, np.exp(-0.5 * TAU**2 / ls**2), rtol=1e-6, atol=1e-9)
    rq = k_at(make_kernel("rq", 1, lengthscale=ls, alpha=3.0, dtype=torch.float64), TAU)[0]
    np.testing.assert_allclose(rq, (1 + TAU**2 / (2 * 3.0 * ls**2)) ** -3.0, rtol=1e-6)
    cauchy = make_kernel("cauchy", 1, lengthscale=ls, dtype=torch.float64)
    np.testing.assert_allclose(k_at(cauchy, TAU)[0], 1 / (1 + TAU**2 / (2 * ls**2)), rtol=1e-6)
    trainable = [n for n, p in cauchy.named_parameters() if p.requires_grad]
    assert not any("alpha" in n for n in trainable)
    assert any("alpha" in n for n, p in make_kernel("rq", 1).named_parameters()
               if p.requires_grad)


def test_quasi_periodic_is_periodic_times_matern32():
    k = make_kernel("quasi_periodic", 2, lengthscale=300.0, outputscale=0.7,
                    periodic_lengthscale=0.8, dtype=torch.float64)
    expected = (0.7 * np.exp(-2 * np.sin(np.pi * TAU / 365.25) ** 2 / 0.8)
                * matern(1.5, TAU, 300.0))
    np.testing.assert_allclose(k_at(k, TAU), np.stack([expected] * 2), rtol=1e-6, atol=1e-9)
    period = [p for n, p in k.named_parameters() if "period_length" in n]
    assert period and not period[0].requires_grad


def test_latent_dims_have_independent_hyperparameters():
    k = make_kernel("matern32", 3, dtype=torch.float64)
    k.base_kernel.lengthscale = torch.tensor([5.0, 50.0, 500.0], dtype=torch.float64)[:, None,
                                                                                       None]
    got = k_at(k, TAU)
    for i, ls in enumerate([5.0, 50.0, 500.0]):
        np.testing.assert_allclose(got[i], matern(1.5, TAU, ls), rtol=1e-6, atol=1e-9)
    hyp = kernel_hyperparameters(k)
    np.testing.assert_allclose(hyp["matern32.lengthscale"].numpy(), [5.0, 50.0, 500.0])
    assert hyp["scale.outputscale"].shape == (3,)


def test_kernel_hyperparameters_cover_all_parameters():
    for name in KERNELS:
        k = make_kernel(name, 4, lengthscale=12.0, outputscale=3.0)
        hyp = kernel_hyperparameters(k)
        n_raw = sum(1 for n, _ in k.named_parameters() if n.split(".")[-1].startswith("raw_"))
        assert len(hyp) == n_raw
        assert all(v.shape == (4,) for v in hyp.values())
        np.testing.assert_allclose(hyp["scale.outputscale"].numpy(), 3.0, rtol=1e-6)


def test_scaled_bessel_matches_scipy():
    z = torch.tensor([0.05, 0.7, 1.0, 4.0, 20.0], dtype=torch.float64)
    order = torch.arange(8)
    got = scaled_bessel_i(order, z).numpy()
    ref = ive(np.arange(8)[None], z.numpy()[:, None])
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-300)


@pytest.mark.parametrize("name,nu", [("matern12", 0.5), ("matern32", 1.5), ("matern52", 2.5)])
def test_matern_state_space_covariance(name, nu):
    k = make_kernel(name, 2, lengthscale=33.0, outputscale=1.7, dtype=torch.float64)
    ss = state_space(k)
    assert ss.dim == int(nu + 0.5)
    tau = torch.tensor(TAU, dtype=torch.float64).expand(2, -1)
    np.testing.assert_allclose(ss.covariance(tau).detach().numpy(),
                               1.7 * matern(nu, TAU, 33.0)[None].repeat(2, 0), rtol=1e-7,
                               atol=1e-12)


def test_quasi_periodic_state_space_is_truncated_expansion():
    J = 4
    k = make_kernel("quasi_periodic", 1, lengthscale=250.0, outputscale=1.3,
                    periodic_lengthscale=1.2, dtype=torch.float64)
    ss = state_space(k, num_harmonics=J)
    assert ss.dim == 2 * (2 * J + 1)
    tau = torch.tensor(TAU, dtype=torch.float64)[None]
    expected = 1.3 * truncated_periodic(TAU, 365.25, 1.2, J) * matern(1.5, TAU, 250.0)
    got = ss.covariance(tau).detach().numpy()[0]
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-12)
    # and it converges to gpytorch's exact quasi-periodic kernel as J grows
    exact = k_at(k, TAU)[0]
    err = [np.abs(state_space(k, num_harmonics=j).covariance(tau).detach().numpy()[0] - exact)
           .max() for j in (2, 4, 8)]
    assert err[0] > err[1] > err[2] and err[2] < 1e-6 * 1.3


def test_process_noise_is_psd():
    for name in ("matern12", "matern32", "matern52", "quasi_periodic"):
        ss = state_space(make_kernel(name, 2, lengthscale=20.0, dtype=torch.float64),
                         num_harmonics=3)
        dt = torch.tensor([0.0, 0.1, 5.0, 200.0], dtype=torch.float64).expand(2, -1)
        A = ss.transition(dt)
        Q = ss.process_noise(A)
        eig = torch.linalg.eigvalsh(Q)
        assert eig.min() > -1e-9
        assert torch.allclose(A[:, 0], torch.eye(ss.dim, dtype=torch.float64).expand_as(A[:, 0]))
        assert torch.allclose(Q[:, 0], torch.zeros_like(Q[:, 0]), atol=1e-12)


@pytest.mark.parametrize("name", ["rbf", "rq", "cauchy"])
def test_no_state_space_suggests_alternatives(name):
    with pytest.raises(InputError, match="matern52"):
        state_space(make_kernel(name, 2))


def test_period_state_space_period():
    k = make_kernel("quasi_periodic", 1, lengthscale=1e6, periodic_lengthscale=1.0,
                    dtype=torch.float64)
    ss = state_space(k)
    c = ss.covariance(torch.tensor([[0.0, 365.25, 730.5]], dtype=torch.float64)).detach()
    assert torch.allclose(c[0, 1], c[0, 0], rtol=1e-5) and torch.allclose(c[0, 2], c[0, 0],
                                                                           rtol=1e-5)
    assert math.isclose(c[0, 0].item(), 1.0, rel_tol=1e-5)


@pytest.mark.parametrize("name", ["matern12", "matern32", "matern52", "quasi_periodic"])
def test_closed_form_transition_equals_matrix_exponential(name):
    """The closed-form A = expm(F dt) (nilpotent series, rotations) against torch's expm."""
    ss = state_space(make_kernel(name, 3, lengthscale=25.0, dtype=torch.float64), num_harmonics=3)
    dt = torch.rand(4, 3, 9, dtype=torch.float64) * 80.0
    A = ss.transition(dt)
    assert A.shape == (4, 3, 9, ss.dim, ss.dim)
    ref = torch.linalg.matrix_exp(ss.F[:, None] * dt[..., None, None])
    torch.testing.assert_close(A, ref, rtol=1e-10, atol=1e-10)
