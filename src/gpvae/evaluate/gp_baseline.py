"""Per-pixel exact GP regression baseline for gap filling (gpytorch kernel, batched Cholesky).

Model, per pixel and band b: y(t) = c_b + f(t) + eps, f ~ GP(0, s_b² Matern-3/2(ℓ_b)),
eps ~ N(0, σ_b²), on per-band standardised reflectance. Every pixel is conditioned on its own
remaining observations only (exact GP posterior, Rasmussen & Williams 2006 eq. 2.22-2.24).
The four hyperparameters per band are shared by all pixels and fitted once on a seeded subset
of the train split by maximising the summed exact log marginal likelihood (Adam): test pixels
then need only one Cholesky each, so ~1000 test pixels take seconds on 2 CPU cores.

Pixels have different numbers of observations; they are padded to a common length, and padded
entries are made exactly inert (zero covariance, unit diagonal, zero residual), so the padded
log-likelihood and posterior equal the unpadded ones. gpytorch's ``ExactGP`` class assumes one
shared training set per batch and is therefore not used; its Matern kernel, constant mean and
Gaussian likelihood modules (with their positivity constraints) are.
"""

from __future__ import annotations

import logging
import math

import gpytorch
import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

#: Jitter added to the observation covariance diagonal (standardised units).
JITTER = 1e-6
#: Time unit of the kernel (days), so that the lengthscale is O(1) for Adam.
TIME_UNIT = 30.0


class BandGP(nn.Module):
    """Exact GP regression y = c + f + eps per band, f ~ GP(0, s² Matern-3/2(ℓ)), batched over
    pixels with padding (Rasmussen & Williams 2006, ch. 2)."""

    def __init__(self, num_bands: int, *, lengthscale: float = 30.0) -> None:
        super().__init__()
        shape = torch.Size([num_bands])
        self.kernel = gpytorch.kernels.ScaleKernel(
            gpytorch.kernels.MaternKernel(nu=1.5, batch_shape=shape), batch_shape=shape)
        self.kernel.base_kernel.lengthscale = lengthscale / TIME_UNIT
        self.kernel.outputscale = 1.0
        self.mean = gpytorch.means.ConstantMean(batch_shape=shape)
        self.likelihood = gpytorch.likelihoods.GaussianLikelihood(batch_shape=shape)
        self.likelihood.noise = 0.05

    def covariance(self, t1: Tensor, t2: Tensor) -> Tensor:
        """s² k(t1, t2) per band: t1 (P, N), t2 (P, M) days -> (P, C, N, M)."""
        c = self.mean.constant.shape[0]
        x1 = (t1 / TIME_UNIT).unsqueeze(1).expand(-1, c, -1).unsqueeze(-1)
        x2 = (t2 / TIME_UNIT).unsqueeze(1).expand(-1, c, -1).unsqueeze(-1)
        return self.kernel(x1, x2).to_dense()

    def factor(self, t: Tensor, y: Tensor, m: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Cholesky factor L of the padded K + σ² I (P, C, N, N), masked residual r = y - c
        (P, C, N) and mask (P, C, N) of observations t (P, N), y, m (P, N, C)."""
        mask = m.transpose(1, 2)
        r = torch.where(mask, y.transpose(1, 2) - self.mean.constant.view(1, -1, 1), 0.0)
        pair = mask.unsqueeze(-1) & mask.unsqueeze(-2)
        k = torch.where(pair, self.covariance(t, t), 0.0)
        noise = self.likelihood.noise.view(1, -1, 1) + JITTER
        diag = torch.where(mask, noise, torch.ones_like(r))
        return torch.linalg.cholesky(k + torch.diag_embed(diag)), r, mask

    def log_marginal(self, t: Tensor, y: Tensor, m: Tensor) -> Tensor:
        """Exact log p(y) per pixel and band (P, C): -r'K⁻¹r/2 - log|K|/2 - n log(2π)/2."""
        chol, r, mask = self.factor(t, y, m)
        alpha = torch.linalg.solve_triangular(chol, r.unsqueeze(-1), upper=False).squeeze(-1)
        logdet = torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        return -0.5 * (alpha ** 2).sum(-1) - logdet - 0.5 * mask.sum(-1) * math.log(2 * math.pi)

    def predict(self, t: Tensor, y: Tensor, m: Tensor, t_query: Tensor) -> tuple[Tensor, Tensor]:
        """Predictive mean and std of y (noise included) at t_query (P, Q): (P, Q, C)."""
        chol, r, mask = self.factor(t, y, m)
        kq = torch.where(mask.unsqueeze(-1), self.covariance(t, t_query), 0.0)  # (P, C, N, Q)
        v = torch.linalg.solve_triangular(chol, kq, upper=False)
        alpha = torch.linalg.solve_triangular(chol, r.unsqueeze(-1), upper=False)
        mean = self.mean.constant.view(1, -1, 1) + (v * alpha).sum(-2)
        prior = self.kernel.outputscale.view(1, -1, 1)
        var = (prior - (v ** 2).sum(-2)).clamp_min(0) + self.likelihood.noise.view(1, -1, 1)
        return mean.transpose(1, 2), var.sqrt().transpose(1, 2)


def fit_band_gp(t: Tensor, y: Tensor, m: Tensor, *, steps: int = 40, lr: float = 0.1,
                lengthscale: float = 30.0) -> BandGP:
    """Shared per-band hyperparameters maximising Σ_pixels log p(y) of observations t (P, N),
    y, m (P, N, C) (standardised), by Adam; returns the fitted :class:`BandGP` (eval mode)."""
    gp = BandGP(y.shape[-1], lengthscale=lengthscale).to(device=y.device, dtype=y.dtype)
    opt = torch.optim.Adam(gp.parameters(), lr=lr)
    count = m.sum().clamp_min(1)
    for step in range(steps):
        opt.zero_grad()
        loss = -gp.log_marginal(t, y, m).sum() / count
        loss.backward()
        opt.step()
        if step % 20 == 0 or step == steps - 1:
            log.debug("gp fit step %d: -log p per observation %.4f", step, loss.item())
    log.info("gp baseline hyperparameters: lengthscale %s days, outputscale %s, noise %s",
             (TIME_UNIT * gp.kernel.base_kernel.lengthscale.detach()).flatten().cpu().numpy()
             .round(1),
             gp.kernel.outputscale.detach().cpu().numpy().round(3),
             gp.likelihood.noise.detach().flatten().cpu().numpy().round(4))
    return gp.eval()
