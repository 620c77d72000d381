"""State-space (linear SDE) forms of stationary kernels (Hartikainen & Särkkä 2010).

A kernel k(tau) = H expm(F tau) P_inf H^T (tau >= 0) is the covariance of f = H x for the
linear SDE dx = F x dt + L dbeta with stationary covariance P_inf. Exact discretisation on a
gap dt: x_{n+1} = A x_n + q, A = expm(F dt), Q = P_inf - A P_inf A^T (Särkkä & Solin 2019).

Available: Matern 1/2, 3/2, 5/2 (exact) and gpytorch's periodic kernel by its truncated Bessel
expansion with J harmonics (Solin & Särkkä 2014), a constant (bias), products (Kronecker),
sums (block-diagonal) and scalings.
RBF / RQ / Cauchy have no finite state space.
"""

from __future__ import annotations

import copy
import math

import gpytorch
import torch
from torch import Tensor

from gpvae.errors import InputError

#: Default number of harmonics J of the periodic expansion; with gpytorch's periodic
#: lengthscale l_p = 1 the neglected terms sum to ~1e-6 of the variance; smaller l_p needs more.
NUM_HARMONICS = 6


def batched_kron(a: Tensor, b: Tensor) -> Tensor:
    """Kronecker product of the last two dims, batched over the leading dims."""
    m, n = a.shape[-2:]
    p, q = b.shape[-2:]
    out = a[..., :, None, :, None] * b[..., None, :, None, :]
    return out.reshape(*out.shape[:-4], m * p, n * q)


class StateSpace:
    """Linear SDE per latent dim: feedback F (L, D, D), stationary P_inf (L, D, D), H (L, D)."""

    def __init__(self, F: Tensor, Pinf: Tensor, H: Tensor) -> None:
        self.F, self.Pinf, self.H = F, Pinf, H

    @property
    def dim(self) -> int:
        return self.F.shape[-1]

    def transition(self, dt: Tensor) -> Tensor:
        """A = expm(F dt): dt (..., L, N) broadcastable -> (..., L, N, D, D)."""
        return torch.linalg.matrix_exp(self.F[:, None] * dt[..., None, None])

    def process_noise(self, A: Tensor) -> Tensor:
        """Q = P_inf - A P_inf A^T for transitions A (..., L, N, D, D)."""
        P = self.Pinf[:, None]
        Q = P - A @ P @ A.mT
        return 0.5 * (Q + Q.mT)

    def covariance(self, tau: Tensor) -> Tensor:
        """k(tau) = H expm(F |tau|) P_inf H^T, tau (..., L, N) -> (..., L, N)."""
        A = self.transition(tau.abs())
        h = self.H[:, None, :, None]
        return (h.mT @ A @ self.Pinf[:, None] @ h)[..., 0, 0]

    def scaled(self, variance: Tensor) -> StateSpace:
        """State space of variance * k, variance (L,)."""
        out = copy.copy(self)
        out.Pinf = self.Pinf * variance[:, None, None]
        return out


class MaternStateSpace(StateSpace):
    """Matern SDE whose feedback F has the single eigenvalue -lam (multiplicity D): with the
    nilpotent N = F + lam I, expm(F dt) = exp(-lam dt) sum_{k<D} (N dt)^k / k! in closed form
    (no matrix exponential per date)."""

    def __init__(self, F: Tensor, Pinf: Tensor, H: Tensor, lam: Tensor) -> None:
        super().__init__(F, Pinf, H)
        self.lam = lam

    def transition(self, dt: Tensor) -> Tensor:
        eye = torch.eye(self.dim, dtype=self.F.dtype, device=self.F.device)
        N = (self.F + self.lam[:, None, None] * eye)[:, None]
        Ndt = N * dt[..., None, None]
        term = eye.expand_as(Ndt)
        total = term
        for k in range(1, self.dim):
            term = term @ Ndt / k
            total = total + term
        return torch.exp(-self.lam[:, None] * dt)[..., None, None] * total


class ProductStateSpace(StateSpace):
    """k1 * k2: F = F1 ⊕ F2 (Kronecker sum), P_inf = P1 ⊗ P2, H = H1 ⊗ H2, A = A1 ⊗ A2."""

    def __init__(self, a: StateSpace, b: StateSpace) -> None:
        eye_a = torch.eye(a.dim, dtype=a.F.dtype, device=a.F.device).expand_as(a.F)
        eye_b = torch.eye(b.dim, dtype=b.F.dtype, device=b.F.device).expand_as(b.F)
        F = batched_kron(a.F, eye_b) + batched_kron(eye_a, b.F)
        H = batched_kron(a.H[..., None, :], b.H[..., None, :])[..., 0, :]
        super().__init__(F, batched_kron(a.Pinf, b.Pinf), H)
        self.a, self.b = a, b

    def transition(self, dt: Tensor) -> Tensor:
        return batched_kron(self.a.transition(dt), self.b.transition(dt))

    def scaled(self, variance: Tensor) -> StateSpace:
        return ProductStateSpace(self.a.scaled(variance), self.b)


class SumStateSpace(StateSpace):
    """k1 + k2: independent states side by side, F, P_inf, A block-diagonal, H = [H1, H2]."""

    def __init__(self, a: StateSpace, b: StateSpace) -> None:
        super().__init__(_block_diag(a.F, b.F),
                         _block_diag(a.Pinf, b.Pinf), torch.cat([a.H, b.H], -1))
        self.a, self.b = a, b

    def transition(self, dt: Tensor) -> Tensor:
        return _block_diag(self.a.transition(dt), self.b.transition(dt))

    def scaled(self, variance: Tensor) -> StateSpace:
        return SumStateSpace(self.a.scaled(variance), self.b.scaled(variance))


def _block_diag(a: Tensor, b: Tensor) -> Tensor:
    """Block-diagonal [[a, 0], [0, b]] of the last two dims, batched over the leading dims."""
    batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    (m, n), (p, q) = a.shape[-2:], b.shape[-2:]
    out = a.new_zeros(*batch, m + p, n + q)
    out[..., :m, :n] = a
    out[..., m:, n:] = b
    return out


class ConstantStateSpace(StateSpace):
    """Constant (bias) kernel k(tau) = c: one state with F = 0, A = 1, P_inf = c, Q = 0."""

    def transition(self, dt: Tensor) -> Tensor:
        return torch.ones(*dt.shape, 1, 1, dtype=self.F.dtype, device=self.F.device)


def constant_state_space(constant: Tensor) -> StateSpace:
    """State space of the constant kernel c (L,)."""
    zero = torch.zeros_like(constant)[:, None, None]
    return ConstantStateSpace(zero, constant[:, None, None], torch.ones_like(constant)[:, None])


def matern_state_space(nu: float, lengthscale: Tensor) -> StateSpace:
    """Matern nu in {1/2, 3/2, 5/2} with unit variance, lengthscale (L,) (Hartikainen 2010)."""
    lam = math.sqrt(2.0 * nu) / lengthscale
    zero, one = torch.zeros_like(lam), torch.ones_like(lam)
    if nu == 0.5:
        F = -lam[:, None, None]
        Pinf = one[:, None, None]
    elif nu == 1.5:
        F = torch.stack([torch.stack([zero, one], -1),
                         torch.stack([-lam**2, -2 * lam], -1)], -2)
        Pinf = torch.diag_embed(torch.stack([one, lam**2], -1))
    elif nu == 2.5:
        F = torch.stack([torch.stack([zero, one, zero], -1),
                         torch.stack([zero, zero, one], -1),
                         torch.stack([-lam**3, -3 * lam**2, -3 * lam], -1)], -2)
        kappa = lam**2 / 3.0
        Pinf = torch.stack([torch.stack([one, zero, -kappa], -1),
                            torch.stack([zero, kappa, zero], -1),
                            torch.stack([-kappa, zero, lam**4], -1)], -2)
    else:
        raise InputError(f"Matern nu={nu} has no implemented state space", field="kernel",
                         fix="use nu in 0.5, 1.5, 2.5")
    H = torch.zeros(lam.shape[0], F.shape[-1], dtype=lam.dtype, device=lam.device)
    H[:, 0] = 1.0
    return MaternStateSpace(F, Pinf, H, lam)


def scaled_bessel_i(order: Tensor, z: Tensor, terms: int = 100) -> Tensor:
    """exp(-z) I_j(z) by its power series sum_m (z/2)^(2m+j) / (m! (m+j)!), in log space.

    order (J,), z (L,) > 0 -> (L, J). Accurate for z up to ~50 with the default terms.
    """
    m = torch.arange(terms, dtype=z.dtype, device=z.device)[:, None]
    j = order.to(z)[None, :]
    log_half = torch.log(z / 2.0)[:, None, None]
    log_terms = ((2 * m + j) * log_half - torch.lgamma(m + 1) - torch.lgamma(m + j + 1))
    return torch.exp(torch.logsumexp(log_terms, dim=-2) - z[:, None])


def periodic_coefficients(lengthscale: Tensor, num_harmonics: int) -> Tensor:
    """Variances q_j^2 of gpytorch's periodic kernel exp(-2 sin^2(pi tau/p) / l) = sum_j q_j^2
    cos(j w0 tau): q_0^2 = e^-z I_0(z), q_j^2 = 2 e^-z I_j(z), z = 1/l (Solin & Särkkä 2014).

    lengthscale (L,) -> (L, J + 1).
    """
    order = torch.arange(num_harmonics + 1, device=lengthscale.device)
    q2 = scaled_bessel_i(order, 1.0 / lengthscale)
    return torch.cat([q2[:, :1], 2.0 * q2[:, 1:]], dim=-1)


class PeriodicStateSpace(StateSpace):
    """Harmonic 0 (1 state) + J resonators dx = [[0, -j w0], [j w0, 0]] x: expm(F dt) is
    block-diagonal with 1 and the rotations by j w0 dt (closed form)."""

    def __init__(self, F: Tensor, Pinf: Tensor, H: Tensor, w0: Tensor) -> None:
        super().__init__(F, Pinf, H)
        self.w0 = w0

    def transition(self, dt: Tensor) -> Tensor:
        J = (self.dim - 1) // 2
        j = torch.arange(1, J + 1, dtype=dt.dtype, device=dt.device)
        angle = (self.w0[:, None] * dt)[..., None] * j  # (..., L, N, J)
        cos, sin = torch.cos(angle), torch.sin(angle)
        A = dt.new_zeros((*angle.shape[:-1], self.dim, self.dim))
        A[..., 0, 0] = 1.0
        i = torch.arange(1, 2 * J, 2, device=dt.device)
        A[..., i, i] = cos
        A[..., i + 1, i + 1] = cos
        A[..., i, i + 1] = -sin
        A[..., i + 1, i] = sin
        return A


def periodic_state_space(period: Tensor, lengthscale: Tensor,
                         num_harmonics: int = NUM_HARMONICS) -> StateSpace:
    """Truncated periodic kernel: harmonic 0 (1 state) + J resonators (2 states each)."""
    q2 = periodic_coefficients(lengthscale, num_harmonics)
    w0 = 2.0 * math.pi / period
    n_lat, dim = period.shape[0], 2 * num_harmonics + 1
    F = torch.zeros(n_lat, dim, dim, dtype=period.dtype, device=period.device)
    diag = torch.zeros(n_lat, dim, dtype=period.dtype, device=period.device)
    H = torch.zeros(n_lat, dim, dtype=period.dtype, device=period.device)
    diag[:, 0], H[:, 0] = q2[:, 0], 1.0
    for j in range(1, num_harmonics + 1):
        i = 2 * j - 1
        F[:, i, i + 1] = -j * w0
        F[:, i + 1, i] = j * w0
        diag[:, i], diag[:, i + 1] = q2[:, j], q2[:, j]
        H[:, i] = 1.0
    return PeriodicStateSpace(F, torch.diag_embed(diag), H, w0)


def _flat(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1)[:, 0]


def state_space(kernel: gpytorch.kernels.Kernel, num_harmonics: int = NUM_HARMONICS
                ) -> StateSpace:
    """State space of a (batch_shape (L,)) gpytorch kernel built by ``make_kernel``."""
    K = gpytorch.kernels
    if isinstance(kernel, K.ScaleKernel):
        return state_space(kernel.base_kernel, num_harmonics).scaled(kernel.outputscale)
    if isinstance(kernel, K.MaternKernel):
        return matern_state_space(kernel.nu, _flat(kernel.lengthscale))
    if isinstance(kernel, K.PeriodicKernel):
        return periodic_state_space(_flat(kernel.period_length), _flat(kernel.lengthscale),
                                    num_harmonics)
    if isinstance(kernel, K.ConstantKernel):
        return constant_state_space(_flat(kernel.constant))
    if isinstance(kernel, K.AdditiveKernel):
        parts = [state_space(k, num_harmonics) for k in kernel.kernels]
        out = parts[0]
        for p in parts[1:]:
            out = SumStateSpace(out, p)
        return out
    if isinstance(kernel, K.ProductKernel):
        parts = [state_space(k, num_harmonics) for k in kernel.kernels]
        out = parts[0]
        for p in parts[1:]:
            out = ProductStateSpace(out, p)
        return out
    raise InputError(f"kernel {type(kernel).__name__} has no finite state-space form",
                     field="kernel", fix="use matern12/32/52 or quasi_periodic with the "
                     "markov prior (e.g. matern52 instead of rbf), or use the exact/sparse prior")
