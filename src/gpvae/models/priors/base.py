"""Interface shared by the GP prior approximations: Gaussian sites in, posterior out."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import gpytorch
import torch
from torch import Tensor

from gpvae.models.kernels import outputscale

LOG_2PI = math.log(2.0 * math.pi)


@contextlib.contextmanager
def full_precision(*xs: Tensor) -> Iterator[tuple[Tensor, ...]]:
    """Autocast off and ``xs`` in float32 (float64 kept): GP algebra (Cholesky, Kalman, solves)
    is never run in bf16/fp16, even when the networks around it are (mixed precision)."""
    dtype = torch.promote_types(xs[0].dtype, torch.float32)
    with torch.autocast(xs[0].device.type, enabled=False):
        yield tuple(x.to(dtype) if x.is_floating_point() else x for x in xs)


@dataclass
class LatentPosterior:
    """Marginals of q(z) at the site dates and the approximation's KL(q || p)."""

    mean: Tensor  # (B, N, L)
    var: Tensor  # (B, N, L)
    kl: Tensor  # (B,)


def gaussian_log_density(x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    """Elementwise log N(x; mean, var)."""
    return -0.5 * (LOG_2PI + torch.log(var) + (x - mean) ** 2 / var)


def expected_site_log_density(mean: Tensor, var: Tensor, mask: Tensor, site_mean: Tensor,
                              site_var: Tensor) -> Tensor:
    """Sum over observed sites and latents of E_q[log N(mu; z, s^2)] = log N(mu; m, s^2) - v/(2s^2).

    Shapes (B, N, L) with mask (B, N); returns (B,).
    """
    m = mask.unsqueeze(-1)
    s2 = torch.where(m, site_var, torch.ones_like(site_var))
    mu = torch.where(m, site_mean, torch.zeros_like(site_mean))
    e = gaussian_log_density(mu, mean, s2) - 0.5 * var / s2
    return torch.where(m, e, torch.zeros_like(e)).sum(dim=(-2, -1))


def site_kl(mean: Tensor, var: Tensor, mask: Tensor, site_mean: Tensor, site_var: Tensor,
            log_z: Tensor) -> Tensor:
    """KL(q || p) = E_q[log prod sites] - log Z for q ∝ p prod sites (Pearce 2019; SGP-VAE)."""
    return expected_site_log_density(mean, var, mask, site_mean, site_var) - log_z


def clean_sites(mask: Tensor, site_mean: Tensor, site_var: Tensor
                ) -> tuple[Tensor, Tensor]:
    """Zero mean and unit variance at masked sites so that padding (even NaN) is inert."""
    m = mask.unsqueeze(-1)
    return (torch.where(m, site_mean, torch.zeros_like(site_mean)),
            torch.where(m, site_var, torch.ones_like(site_var)))


def clean_times(t: Tensor) -> Tensor:
    """Replace non-finite (padding) dates by 0 so that kernels stay finite."""
    return torch.where(torch.isfinite(t), t, torch.zeros_like(t))


class GPPrior(torch.nn.Module):
    """L independent GP priors z_l(t) ~ GP(0, k_l) combined with Gaussian sites.

    ``jitter`` (default 1e-6) is relative to each latent's outputscale: it is added to the
    site variances (exact, markov) or to the prior covariance of inducing/grid values (sparse,
    banded) for float32 stability.
    """

    def __init__(self, kernel: gpytorch.kernels.Kernel, jitter: float = 1e-6) -> None:
        super().__init__()
        self.kernel = kernel
        self.jitter = jitter

    @property
    def num_latents(self) -> int:
        return int(self.kernel.batch_shape[0])

    def jitter_var(self) -> Tensor:
        """Absolute jitter per latent dim, (L,)."""
        return self.jitter * outputscale(self.kernel)

    def prior_var(self) -> Tensor:
        """Prior marginal variance k_l(0) per latent dim, (L,)."""
        return outputscale(self.kernel)

    def posterior(self, t: Tensor, mask: Tensor, site_mean: Tensor, site_var: Tensor
                  ) -> LatentPosterior:
        """q(z) ∝ p(z) prod_n N(site_mean_n; z(t_n), site_var_n): marginals at t and KL."""
        raise NotImplementedError

    def predict(self, t: Tensor, mask: Tensor, site_mean: Tensor, site_var: Tensor,
                t_query: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and variance of z at t_query (B, Q): two (B, Q, L) tensors."""
        raise NotImplementedError

    def log_marginal(self, t: Tensor, mask: Tensor, y: Tensor, noise_var: Tensor) -> Tensor:
        """log N(y; 0, K + diag(noise_var)) over observed entries, summed over L: (B,)."""
        raise NotImplementedError
