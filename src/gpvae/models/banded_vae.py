"""Banded GP-VAE (Fortuin et al. 2020): structured posterior with bidiagonal-Cholesky
precision on a regular time grid, the literature baseline.

Encoder: partial-encoder features of every observed date (all sensors) are averaged into the
grid cell nearest to the date (empty cells get zeros; a log(1 + count) channel tells the
network which cells hold data); a 1-D temporal CNN maps the grid to the posterior mean, the
diagonal (softplus) and super-diagonal of B with precision Λ = BᵀB. The decoder reads the
posterior marginals at each observation's nearest grid cell (dates outside the grid's
``time_range`` use the edge cell). ``latent()`` uses the GP conditional from the grid values
to the exact query dates (BandedGPPosterior.predict).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpvae.models.batch import Batch
from gpvae.models.decoders import MLPDecoder
from gpvae.models.encoders import PartialEncoder, TemporalCNN
from gpvae.models.gpvae import kernel_log
from gpvae.models.likelihoods import Likelihood
from gpvae.models.priors.banded import BandedGPPosterior
from gpvae.models.priors.base import LatentPosterior, full_precision
from gpvae.models.vae import SITSVAE, ElboTerms

_PREC_FLOOR = 1e-3


class BandedGPVAE(SITSVAE):
    """GP-VAE with a banded-precision Gaussian posterior over a regular grid (Fortuin 2020)."""

    def __init__(self, sensor_bands: dict[str, list[str]], latent_dim: int, *,
                 posterior: BandedGPPosterior, grid: Tensor, hidden: int,
                 decoders: dict[str, MLPDecoder], likelihoods: dict[str, Likelihood],
                 beta: float = 1.0) -> None:
        super().__init__(sensor_bands, latent_dim, decoders=decoders, likelihoods=likelihoods,
                         beta=beta)
        if grid.dim() != 1 or grid.numel() < 2:
            raise ValueError("grid must be a 1-D tensor of >= 2 regular dates")
        self.banded = posterior
        self.register_buffer("grid", grid)
        self.features = nn.ModuleDict({s: PartialEncoder(len(b), hidden, hidden)
                                       for s, b in sensor_bands.items()})
        self.cnn = TemporalCNN(hidden + 1, hidden, 3 * latent_dim)
        with torch.no_grad():  # start near unit posterior precision
            self.cnn.net[-1].bias[latent_dim:2 * latent_dim] = 0.55

    def grid_t(self, like: Tensor) -> Tensor:
        return self.grid.to(like.dtype)

    def cell(self, t: Tensor) -> Tensor:
        """Index of the grid cell nearest to each date t, clamped to the grid."""
        g = self.grid_t(t)
        idx = torch.round((t - g[0]) / (g[1] - g[0]))
        return idx.clamp(0, g.numel() - 1).long()

    def grid_parameters(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """Posterior mean (B, G, L), diag(B) (B, G, L) > 0 and superdiag(B) (B, G-1, L)."""
        self.check_batch(batch)
        total, count = 0.0, 0.0
        for s in self.sensors:
            sb = batch.sensors[s]
            h = self.features[s](sb.x, sb.m)
            present = (sb.obs & sb.m.any(-1)).to(h.dtype)
            onehot = F.one_hot(self.cell(sb.t), self.grid.numel()).to(h.dtype)  # (B, N, G)
            onehot = onehot * present.unsqueeze(-1)
            total = total + onehot.mT @ h
            count = count + onehot.sum(1)
        mean_feat = total / count.clamp_min(1.0).unsqueeze(-1)
        out = self.cnn(torch.cat([mean_feat, torch.log1p(count).unsqueeze(-1)], -1))
        mean, raw_diag, raw_off = out.chunk(3, dim=-1)
        return mean, F.softplus(raw_diag) + _PREC_FLOOR, raw_off[:, :-1]

    def posterior(self, batch: Batch) -> LatentPosterior:
        """Marginals at the grid (B, G, L) and KL(q || p(z_grid))."""
        with full_precision(*self.grid_parameters(batch)) as (mean, diag, off):
            return self.banded.posterior(self.grid_t(mean), mean, diag, off)

    def elbo(self, batch: Batch, num_samples: int = 1) -> ElboTerms:
        post = self.posterior(batch)
        marginals = {}
        for s in self.sensors:
            idx = self.cell(batch.sensors[s].t).unsqueeze(-1).expand(-1, -1, self.latent_dim)
            marginals[s] = (torch.gather(post.mean, 1, idx), torch.gather(post.var, 1, idx))
        recon = self.recon_terms(batch, marginals, num_samples)
        return ElboTerms(recon - self.beta * post.kl, recon, post.kl)

    def latent(self, batch: Batch, t_query: Tensor) -> tuple[Tensor, Tensor]:
        with full_precision(*self.grid_parameters(batch)) as (mean, diag, off):
            return self.banded.predict(self.grid_t(mean), mean, diag, off,
                                       t_query.to(mean.dtype))

    def hyperparameters(self) -> dict[str, float]:
        return {**super().hyperparameters(), **kernel_log(self.banded.kernel)}
