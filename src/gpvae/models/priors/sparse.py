"""Sparse GP prior with M inducing dates shared by all pixels (SGP-VAE, Ashman et al. 2020).

q(u) ∝ p(u) prod_i N(mu_i; A_i u, s_i^2), A = K_xu K_uu^-1 (Titsias 2009), O(N M^2) per
pixel. Computed in whitened coordinates u = L_uu v, p(v) = N(0, I):
q(v) = N(Bm^-1 c, Bm^-1), Bm = I + V W V^T, V = L_uu^-1 K_ux, W = diag(1/s^2), c = V W mu.
Inducing dates are absolute (same time frame as t); all dates are centred on the inducing
dates' mean before evaluating the (stationary) kernel, for float32 precision.
"""

from __future__ import annotations

import gpytorch
import torch
from torch import Tensor

from gpvae.models.priors.base import LOG_2PI, GPPrior, LatentPosterior, clean_sites, clean_times
from gpvae.models.priors.exact import kernel_matrix


class WhitenedSites:
    """q(v) for the whitened inducing values of every pixel and latent dim."""

    def __init__(self, kernel: gpytorch.kernels.Kernel, z: Tensor, jitter: Tensor, t: Tensor,
                 obs: Tensor, mu: Tensor, s2: Tensor) -> None:
        # z (M,); t (B, N); obs (B, 1, N); mu, s2 (B, L, N)
        self.kernel, self.z, self.origin = kernel, z, z.new_zeros(())
        k_uu = kernel_matrix(kernel, z[None], z[None])
        eye = torch.eye(z.shape[0], dtype=k_uu.dtype, device=k_uu.device)
        self.chol_uu = torch.linalg.cholesky(k_uu + jitter[:, None, None] * eye)
        self.V = self.whiten(t)
        self.w = torch.where(obs, 1.0 / s2, 0.0)
        self.mu = torch.where(obs, mu, 0.0)
        self.chol_b = torch.linalg.cholesky(eye + (self.V * self.w.unsqueeze(-2)) @ self.V.mT)
        self.c = (self.V @ (self.w * self.mu).unsqueeze(-1)).squeeze(-1)
        self.mean_v = torch.cholesky_solve(self.c.unsqueeze(-1), self.chol_b).squeeze(-1)

    def whiten(self, t: Tensor) -> Tensor:
        """L_uu^-1 K_ux: t (B, N) -> (B, L, M, N)."""
        k_ux = kernel_matrix(self.kernel, self.z[None], t)
        return torch.linalg.solve_triangular(self.chol_uu, k_ux, upper=False)

    def logdet_b(self) -> Tensor:
        return 2.0 * torch.diagonal(self.chol_b, dim1=-2, dim2=-1).log().sum(-1)

    def kl(self) -> Tensor:
        """KL(q(u) || p(u)) = KL(q(v) || N(0, I)) summed over latents, (B,)."""
        eye = torch.eye(self.chol_b.shape[-1], dtype=self.c.dtype, device=self.c.device)
        inv_l = torch.linalg.solve_triangular(self.chol_b, eye.expand_as(self.chol_b),
                                              upper=False)
        trace = inv_l.pow(2).sum((-2, -1))
        kl = 0.5 * (trace + self.mean_v.pow(2).sum(-1) - self.z.shape[0] + self.logdet_b())
        return kl.sum(-1)

    def marginals(self, a: Tensor, k_qq: Tensor) -> tuple[Tensor, Tensor]:
        """q(z_q) = N(a^T m_v, k_qq - a^T a + a^T S_v a) for whitened a = L_uu^-1 K_uq."""
        mean = (a * self.mean_v.unsqueeze(-1)).sum(-2)
        b = torch.linalg.solve_triangular(self.chol_b, a, upper=False)
        return mean, k_qq - a.pow(2).sum(-2) + b.pow(2).sum(-2)

    def collapsed_bound(self, k_xx: Tensor) -> Tensor:
        """Titsias bound log N(mu; 0, Q + S) - tr(S^-1 (K - Q)) / 2, summed over latents."""
        n_obs = (self.w > 0).sum(-1).to(self.c.dtype)
        log_s2 = torch.where(self.w > 0, -torch.log(torch.where(self.w > 0, self.w, 1.0)), 0.0)
        beta = torch.linalg.solve_triangular(self.chol_b, self.c.unsqueeze(-1), upper=False)
        quad = (self.w * self.mu.pow(2)).sum(-1) - beta.pow(2).sum((-2, -1))
        logdet = log_s2.sum(-1) + self.logdet_b()
        trace = (self.w * (k_xx - self.V.pow(2).sum(-2))).sum(-1)
        return (-0.5 * (quad + logdet + n_obs * LOG_2PI) - 0.5 * trace).sum(-1)


class SparseGPPrior(GPPrior):
    """SGP-VAE posterior with M inducing dates shared by all pixels.

    Inducing dates: ``inducing`` (M,) if given, else a regular grid of ``num_inducing``
    dates over ``time_range`` (days, same frame as t). ``learn_inducing`` makes them a
    parameter. ``posterior``/``predict`` accept ``inducing=`` to override them.
    """

    def __init__(self, kernel: gpytorch.kernels.Kernel, jitter: float = 1e-6,
                 num_inducing: int = 16, time_range: tuple[float, float] = (0.0, 365.25),
                 inducing: Tensor | None = None, learn_inducing: bool = False) -> None:
        super().__init__(kernel, jitter)
        dtype = next(kernel.parameters()).dtype
        if inducing is None:
            inducing = torch.linspace(*time_range, num_inducing, dtype=dtype)
        inducing = torch.as_tensor(inducing, dtype=dtype).reshape(-1)
        if learn_inducing:
            self.inducing = torch.nn.Parameter(inducing.clone())
        else:
            self.register_buffer("inducing", inducing.clone())

    def _sites(self, t: Tensor, mask: Tensor, site_mean: Tensor, site_var: Tensor,
               inducing: Tensor | None) -> WhitenedSites:
        z = (self.inducing if inducing is None else inducing).to(site_mean)
        origin = z.detach().mean()  # stationary kernels: centre dates for float32 precision
        mu, s2 = clean_sites(mask, site_mean, site_var)
        q = WhitenedSites(self.kernel, z - origin, self.jitter_var(), clean_times(t) - origin,
                          mask.unsqueeze(1), mu.transpose(1, 2), s2.transpose(1, 2))
        q.origin = origin
        return q

    def _prior_var(self, t: Tensor) -> Tensor:
        return self.prior_var()[:, None].expand(t.shape[0], -1, t.shape[1])

    def _floor(self, var: Tensor) -> Tensor:
        return torch.maximum(var, self.jitter_var()[:, None])

    def posterior(self, t: Tensor, mask: Tensor, site_mean: Tensor, site_var: Tensor,
                  inducing: Tensor | None = None) -> LatentPosterior:
        q = self._sites(t, mask, site_mean, site_var, inducing)
        mean, var = q.marginals(q.V, self._prior_var(t).to(q.V))
        return LatentPosterior(mean=mean.transpose(1, 2), var=self._floor(var).transpose(1, 2),
                               kl=q.kl())

    def predict(self, t: Tensor, mask: Tensor, site_mean: Tensor, site_var: Tensor,
                t_query: Tensor, inducing: Tensor | None = None) -> tuple[Tensor, Tensor]:
        q = self._sites(t, mask, site_mean, site_var, inducing)
        tq = clean_times(t_query).to(q.V) - q.origin
        mean, var = q.marginals(q.whiten(tq), self._prior_var(tq).to(q.V))
        return mean.transpose(1, 2), self._floor(var).transpose(1, 2)

    def log_marginal(self, t: Tensor, mask: Tensor, y: Tensor, noise_var: Tensor,
                     inducing: Tensor | None = None) -> Tensor:
        """Titsias (2009) collapsed lower bound on log N(y; 0, K + diag(noise_var)), (B,);
        equal to it when the inducing dates contain the observed dates."""
        q = self._sites(t, mask, y, noise_var, inducing)
        return q.collapsed_bound(self._prior_var(t).to(q.V))


