"""Exact GP posterior with Gaussian sites: one batched Cholesky per pixel, O(N^3)."""

from __future__ import annotations

import gpytorch
import torch
from torch import Tensor

from gpvae.models.priors.base import (
    LOG_2PI,
    GPPrior,
    LatentPosterior,
    clean_sites,
    clean_times,
    site_kl,
)


def kernel_matrix(kernel: gpytorch.kernels.Kernel, t1: Tensor, t2: Tensor) -> Tensor:
    """Cross-covariance k_l(t1_i, t2_j): t1 (B, N), t2 (B, M) -> (B, L, N, M)."""
    return kernel(t1[:, None, :, None], t2[:, None, :, None]).to_dense()


class SiteFactor:
    """Cholesky of C = K + S over the observed sites (padding: identity rows, zero site).

    Gives log Z = log N(mu; 0, K + S) and conditionals of z at any dates.
    """

    def __init__(self, kernel: gpytorch.kernels.Kernel, t: Tensor, obs: Tensor, mu: Tensor,
                 s2: Tensor) -> None:
        # t (B, N); obs (B, 1, N) bool; mu, s2 (B, L, N) already cleaned and jittered
        self.kernel, self.t, self.obs = kernel, t, obs
        self.K = kernel_matrix(kernel, t, t)
        n = t.shape[-1]
        eye = torch.eye(n, dtype=self.K.dtype, device=self.K.device)
        pair = obs.unsqueeze(-1) & obs.unsqueeze(-2)
        c = torch.where(pair, self.K, eye) + torch.diag_embed(torch.where(obs, s2, 0.0))
        self.chol = torch.linalg.cholesky(c)
        self.mu = torch.where(obs, mu, 0.0)
        self.alpha = torch.cholesky_solve(self.mu.unsqueeze(-1), self.chol).squeeze(-1)

    def log_z(self) -> Tensor:
        """log N(mu; 0, K + S) summed over latents, (B,); padding counts nothing."""
        quad = (self.mu * self.alpha).sum(-1)
        logdet = 2.0 * torch.diagonal(self.chol, dim1=-2, dim2=-1).log().sum(-1)
        n_obs = self.obs.sum(-1).to(quad.dtype)
        return (-0.5 * (quad + logdet + n_obs * LOG_2PI)).sum(-1)

    def condition(self, k_qx: Tensor, k_qq: Tensor) -> tuple[Tensor, Tensor]:
        """Mean k_qx C^-1 mu and variance k_qq - diag(k_qx C^-1 k_xq), (B, L, Q)."""
        k_qx = torch.where(self.obs.unsqueeze(-2), k_qx, 0.0)
        mean = (k_qx @ self.alpha.unsqueeze(-1)).squeeze(-1)
        v = torch.linalg.solve_triangular(self.chol, k_qx.mT, upper=False)
        return mean, k_qq - v.pow(2).sum(-2)


class ExactGPPrior(GPPrior):
    """Exact posterior of L independent GPs given Gaussian sites (Pearce 2019; SGP-VAE)."""

    def _factor(self, t: Tensor, mask: Tensor, site_mean: Tensor, site_var: Tensor
                ) -> tuple[SiteFactor, Tensor, Tensor, Tensor]:
        t = clean_times(t)
        origin = t[:, :1]
        mu, s2 = clean_sites(mask, site_mean, site_var)
        s2 = s2 + self.jitter_var()
        obs = mask.unsqueeze(1)
        f = SiteFactor(self.kernel, t - origin, obs, mu.transpose(1, 2), s2.transpose(1, 2))
        return f, origin, mu, s2

    def _floor(self, var: Tensor) -> Tensor:
        return torch.maximum(var, self.jitter_var()[:, None])

    def posterior(self, t: Tensor, mask: Tensor, site_mean: Tensor, site_var: Tensor
                  ) -> LatentPosterior:
        f, _, mu, s2 = self._factor(t, mask, site_mean, site_var)
        k_qq = torch.diagonal(f.K, dim1=-2, dim2=-1)
        mean, var = f.condition(f.K, k_qq)
        mean, var = mean.transpose(1, 2), self._floor(var).transpose(1, 2)
        kl = site_kl(mean, var, mask, mu, s2, f.log_z())
        return LatentPosterior(mean=mean, var=var, kl=kl)

    def predict(self, t: Tensor, mask: Tensor, site_mean: Tensor, site_var: Tensor,
                t_query: Tensor) -> tuple[Tensor, Tensor]:
        f, origin, _, _ = self._factor(t, mask, site_mean, site_var)
        tq = clean_times(t_query) - origin
        k_qx = kernel_matrix(self.kernel, tq, f.t)
        k_qq = self.prior_var()[:, None].expand(tq.shape[0], -1, tq.shape[1])
        mean, var = f.condition(k_qx, k_qq.to(k_qx))
        return mean.transpose(1, 2), self._floor(var).transpose(1, 2)

    def log_marginal(self, t: Tensor, mask: Tensor, y: Tensor, noise_var: Tensor) -> Tensor:
        f, _, _, _ = self._factor(t, mask, y, noise_var)
        return f.log_z()
