"""Structured Gaussian posterior with banded precision on a regular grid (Fortuin et al. 2020).

q(z_l) = N(m, Λ^-1) on G grid dates, Λ = B^T B, B upper bidiagonal (diag d > 0, superdiag e).
Prior p(z_l) = N(0, K_gg). Marginal variances and log|Σ| use the bidiagonal structure
(O(G)); the KL trace term and ``predict`` use dense G x G triangular solves, fine for
G up to a few hundred.
"""

from __future__ import annotations

import gpytorch
import torch
from torch import Tensor

from gpvae.models.kernels import outputscale
from gpvae.models.priors.base import LatentPosterior
from gpvae.models.priors.exact import kernel_matrix
from gpvae.models.priors.scan import associative_scan


def _affine_op(ei: tuple[Tensor, ...], ej: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Composition of affine maps v -> a + c v: (c_i, a_i) ∘ (c_j, a_j)."""
    return ei[0] * ej[0], ei[1] + ei[0] * ej[1]


def bidiagonal_marginal_var(d: Tensor, e: Tensor) -> Tensor:
    """diag((B^T B)^-1) for upper bidiagonal B: v_i = (1 + e_i^2 v_{i+1}) / d_i^2.

    d (..., G), e (..., G-1) -> (..., G), by a reverse associative scan over the grid.
    """
    inv_d2 = d.pow(-2)
    c = torch.cat([e.pow(2), torch.zeros_like(d[..., :1])], -1) * inv_d2
    out = associative_scan(_affine_op, (c.movedim(-1, 0), inv_d2.movedim(-1, 0)), reverse=True)
    return out[1].movedim(0, -1)


def bidiagonal(d: Tensor, e: Tensor) -> Tensor:
    """Dense upper bidiagonal matrix from diag d (..., G) and superdiag e (..., G-1)."""
    return torch.diag_embed(d) + torch.diag_embed(e, offset=1)


class BandedGPPosterior(torch.nn.Module):
    """GP-VAE (Fortuin 2020) posterior on a regular grid vs the GP prior N(0, K_gg).

    ``jitter`` (relative to the outputscale, default 1e-6) is added to K_gg's diagonal.
    """

    def __init__(self, kernel: gpytorch.kernels.Kernel, jitter: float = 1e-6) -> None:
        super().__init__()
        self.kernel = kernel
        self.jitter = jitter

    def _prior_chol(self, grid: Tensor) -> Tensor:
        """Cholesky of K_gg + jitter, (1, L, G, G); grid relative to its first date."""
        k = kernel_matrix(self.kernel, grid[None], grid[None])
        eye = torch.eye(grid.shape[0], dtype=k.dtype, device=k.device)
        return torch.linalg.cholesky(k + self.jitter * outputscale(self.kernel)[:, None, None]
                                     * eye)

    @staticmethod
    def _layout(mean: Tensor, prec_diag: Tensor, prec_offdiag: Tensor
                ) -> tuple[Tensor, Tensor, Tensor]:
        return mean.transpose(1, 2), prec_diag.transpose(1, 2), prec_offdiag.transpose(1, 2)

    def posterior(self, grid_t: Tensor, mean: Tensor, prec_diag: Tensor, prec_offdiag: Tensor
                  ) -> LatentPosterior:
        """Marginals at the grid and KL(N(m, Λ^-1) || N(0, K_gg)) summed over latents."""
        m, d, e = self._layout(mean, prec_diag, prec_offdiag)
        grid = grid_t.to(m) - grid_t[0].to(m)
        chol = self._prior_chol(grid)
        n_grid = grid.shape[0]
        eye = torch.eye(n_grid, dtype=m.dtype, device=m.device)
        b_inv = torch.linalg.solve_triangular(bidiagonal(d, e), eye, upper=True)
        trace = torch.linalg.solve_triangular(chol, b_inv, upper=False).pow(2).sum((-2, -1))
        quad = torch.linalg.solve_triangular(chol, m.unsqueeze(-1), upper=False).pow(2)
        logdet_k = 2.0 * torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)
        logdet_s = -2.0 * d.log().sum(-1)
        kl = 0.5 * (trace + quad.sum((-2, -1)) - n_grid + logdet_k - logdet_s)
        var = bidiagonal_marginal_var(d, e)
        return LatentPosterior(mean=mean, var=var.transpose(1, 2), kl=kl.sum(-1))

    def predict(self, grid_t: Tensor, mean: Tensor, prec_diag: Tensor, prec_offdiag: Tensor,
                t_query: Tensor) -> tuple[Tensor, Tensor]:
        """q(z*) = ∫ p(z* | z_g) q(z_g): mean W^T m, var k** - kg*^T W + W^T Σ W, W = K^-1 kg*."""
        m, d, e = self._layout(mean, prec_diag, prec_offdiag)
        origin = grid_t[0].to(m)
        grid = grid_t.to(m) - origin
        chol = self._prior_chol(grid)
        tq = t_query.to(m) - origin
        k_gq = kernel_matrix(self.kernel, grid[None].expand(tq.shape[0], -1), tq)
        a = torch.linalg.solve_triangular(chol, k_gq, upper=False)
        w = torch.linalg.solve_triangular(chol.mT, a, upper=True)
        q_mean = (w * m.unsqueeze(-1)).sum(-2)
        bw = torch.linalg.solve_triangular(bidiagonal(d, e).mT, w, upper=False)
        k_qq = outputscale(self.kernel).to(m)[:, None]
        q_var = k_qq - a.pow(2).sum(-2) + bw.pow(2).sum(-2)
        return q_mean.transpose(1, 2), q_var.transpose(1, 2)
