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
from gpvae.models.date_effects import DateEffects, SeasonalFeatures
from gpvae.models.decoders import MLPDecoder
from gpvae.models.encoders import SiteEncoder
from gpvae.models.kernels import kernel_hyperparameters
from gpvae.models.likelihoods import Likelihood
from gpvae.models.priors import GPPrior, LatentPosterior
from gpvae.models.priors.base import full_precision
from gpvae.models.vae import SITSVAE, ElboTerms, Offset

#: Dates whose sites are left out of q (sensor -> (B, N_s) bool), or None.
Hidden = dict[str, Tensor] | None


class GPVAE(SITSVAE):
    """GP-prior VAE over irregular multi-sensor dates (SGP-VAE / GP-VAE with Gaussian sites).

    ``elbo(batch, hidden=...)`` leaves the sites of hidden dates out of q (training-time
    hiding, :mod:`gpvae.train.hiding`): ``supports_hidden_sites``.

    Optional parts: ``date_effects`` (sensor -> :class:`DateEffects`, shared per-acquisition
    offsets: the encoder sees x - E[δ], the decoder predicts g(z) + δ; their KL enters each
    pixel's ELBO divided by ``num_train``, the number of training pixels), and ``seasonal``
    (:class:`SeasonalFeatures` of the date given to every decoder beside z(t)).
    """

    supports_hidden_sites = True

    def __init__(self, sensor_bands: dict[str, list[str]], latent_dim: int, *, prior: GPPrior,
                 encoders: dict[str, SiteEncoder], decoders: dict[str, MLPDecoder],
                 likelihoods: dict[str, Likelihood], beta: float = 1.0,
                 date_effects: dict[str, DateEffects] | None = None,
                 seasonal: SeasonalFeatures | None = None, num_train: int = 1) -> None:
        super().__init__(sensor_bands, latent_dim, decoders=decoders, likelihoods=likelihoods,
                         beta=beta)
        self.prior = prior
        self.encoders = nn.ModuleDict(encoders)
        self.date_effects = nn.ModuleDict(date_effects or {})
        self.seasonal = seasonal
        self.num_train = max(int(num_train), 1)

    def sites(self, batch: Batch, hidden: Hidden = None
              ) -> tuple[Timeline, Tensor, Tensor, Tensor]:
        """Merged timeline, where it has a site (B, M) and the Gaussian sites on it: site
        mean, site var (B, M, L). Dates in ``hidden`` (sensor -> (B, N_s) bool) stay on the
        timeline but give no site (their observations are kept for the likelihood)."""
        self.check_batch(batch)
        tl = merge_timeline(batch, self.sensors)
        enc, has_site = [], []
        for s in self.sensors:
            sb = batch.sensors[s]
            m = sb.m
            if hidden is not None and s in hidden:
                m = m & ~hidden[s].unsqueeze(-1)
            offset = self.observation_offset(s, sb.t, batch)
            x = sb.x if offset is None else sb.x - offset[0].to(sb.x)
            enc.append(self.encoders[s](x, m))
            has_site.append(sb.obs & m.any(-1))
        mask = tl.mask & tl.merge(has_site)
        return tl, mask, tl.merge([e[0] for e in enc]), tl.merge([e[1] for e in enc])

    def observation_offset(self, sensor: str, t: Tensor, batch: Batch) -> Offset:
        if sensor not in self.date_effects:
            return None
        return self.date_effects[sensor].moments(batch.regions(), batch.absolute(t))

    def decoder_input(self, sensor: str, mean: Tensor, var: Tensor, t: Tensor, batch: Batch
                      ) -> tuple[Tensor, Tensor]:
        if self.seasonal is None:
            return mean, var
        f = self.seasonal(batch.absolute(t)).to(mean.dtype)
        return torch.cat([mean, f], -1), torch.cat([var, torch.zeros_like(f)], -1)

    def date_effects_kl(self) -> Tensor:
        """KL of all date-effect tables, per training pixel (scalar)."""
        total = sum((d.kl() for d in self.date_effects.values()), torch.zeros(()))
        return total / self.num_train

    def posterior(self, batch: Batch, hidden: Hidden = None
                  ) -> tuple[Timeline, LatentPosterior]:
        """q(z) at the merged dates (from the sites not ``hidden``) and KL(q || p)."""
        tl, mask, sm, sv = self.sites(batch, hidden)
        with full_precision(sm, sv, tl.t) as (sm, sv, t):
            return tl, self.prior.posterior(t, mask, sm, sv)

    def elbo(self, batch: Batch, num_samples: int = 1, hidden: Hidden = None) -> ElboTerms:
        """Σ E_q log p(x | z) - beta KL. With ``hidden`` (sensor -> (B, N_s) bool), q is the
        posterior given the other dates' sites while every observation is scored: still a
        lower bound on log p(x) (any q is), one that rewards predicting unseen dates."""
        tl, post = self.posterior(batch, hidden)
        means, variances = tl.split(post.mean), tl.split(post.var, fill=1.0)
        marginals = {s: (means[s], variances[s]) for s in self.sensors}
        recon = self.recon_terms(batch, marginals, num_samples)
        kl = post.kl
        if len(self.date_effects):
            kl = kl + self.date_effects_kl().to(kl)
        return ElboTerms(recon - self.beta * kl, recon, kl)

    def latent(self, batch: Batch, t_query: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and variance of z at t_query (B, Q, L) (GP conditional)."""
        tl, mask, sm, sv = self.sites(batch)
        with full_precision(sm, sv, tl.t, t_query) as (sm, sv, t, tq):
            return self.prior.predict(t, mask, sm, sv, tq)

    def hyperparameters(self) -> dict[str, float]:
        out = {**super().hyperparameters(), **kernel_log(self.prior.kernel)}
        for s, d in self.date_effects.items():
            for band, v in zip(self.sensor_bands[s], d.prior_std().tolist(), strict=True):
                out[f"date_effect_std_{s}_{band}"] = float(v)
        return out


def kernel_log(kernel: torch.nn.Module) -> dict[str, float]:
    """Flattened kernel hyperparameters ``<kernel>.<name>_<latent>`` -> value, for CSV logs."""
    return {f"{name}_{i}": float(v) for name, value in kernel_hyperparameters(kernel).items()
            for i, v in enumerate(value.reshape(-1).tolist())}
