"""The GP-VAE: GP prior x amortised Gaussian sites of all sensors x per-sensor decoders.

pf: ``prior`` (L independent GPs over days); lf: ``sites`` (partial encoder per sensor, one
site per date with an observed band); qf: ``posterior`` (q(z) ∝ p(z) Π sites over the merged
dates of all sensors, the fusion); ``elbo`` = Σ E_q log p(x | z) - beta KL (Ashman et al. 2020,
Jazbec et al. 2021).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gpvae.models.batch import Batch, Timeline, merge_timeline
from gpvae.models.decoders import MLPDecoder
from gpvae.models.encoders import SiteEncoder
from gpvae.models.kernels import kernel_hyperparameters
from gpvae.models.likelihoods import Likelihood
from gpvae.models.priors import GPPrior, LatentPosterior
from gpvae.models.priors.base import full_precision
from gpvae.models.vae import SITSVAE, ElboTerms


class GPVAE(SITSVAE):
    """GP-prior VAE over irregular multi-sensor dates (SGP-VAE / GP-VAE with Gaussian sites)."""

    def __init__(self, sensor_bands: dict[str, list[str]], latent_dim: int, *, prior: GPPrior,
                 encoders: dict[str, SiteEncoder], decoders: dict[str, MLPDecoder],
                 likelihoods: dict[str, Likelihood], beta: float = 1.0) -> None:
        super().__init__(sensor_bands, latent_dim, decoders=decoders, likelihoods=likelihoods,
                         beta=beta)
        self.prior = prior
        self.encoders = nn.ModuleDict(encoders)

    def sites(self, batch: Batch) -> tuple[Timeline, Tensor, Tensor]:
        """Merged timeline and Gaussian sites on it: site mean, site var (B, M, L)."""
        self.check_batch(batch)
        tl = merge_timeline(batch, self.sensors)
        enc = [self.encoders[s](batch.sensors[s].x, batch.sensors[s].m) for s in self.sensors]
        return tl, tl.merge([e[0] for e in enc]), tl.merge([e[1] for e in enc])

    def posterior(self, batch: Batch) -> tuple[Timeline, LatentPosterior]:
        """q(z) at the merged dates and KL(q || p)."""
        tl, sm, sv = self.sites(batch)
        with full_precision(sm, sv, tl.t) as (sm, sv, t):
            return tl, self.prior.posterior(t, tl.mask, sm, sv)

    def elbo(self, batch: Batch, num_samples: int = 1) -> ElboTerms:
        tl, post = self.posterior(batch)
        means, variances = tl.split(post.mean), tl.split(post.var, fill=1.0)
        marginals = {s: (means[s], variances[s]) for s in self.sensors}
        recon = self.recon_terms(batch, marginals, num_samples)
        return ElboTerms(recon - self.beta * post.kl, recon, post.kl)

    def latent(self, batch: Batch, t_query: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and variance of z at t_query (B, Q, L) (GP conditional)."""
        tl, sm, sv = self.sites(batch)
        with full_precision(sm, sv, tl.t, t_query) as (sm, sv, t, tq):
            return self.prior.predict(t, tl.mask, sm, sv, tq)

    def hyperparameters(self) -> dict[str, float]:
        return {**super().hyperparameters(), **kernel_log(self.prior.kernel)}


def kernel_log(kernel: torch.nn.Module) -> dict[str, float]:
    """Flattened kernel hyperparameters ``<kernel>.<name>_<latent>`` -> value, for CSV logs."""
    return {f"{name}_{i}": float(v) for name, value in kernel_hyperparameters(kernel).items()
            for i, v in enumerate(value.reshape(-1).tolist())}
