"""The model interface shared by the GP-VAE and the baselines, and ELBO helpers.

Every model maps a :class:`~gpvae.models.batch.Batch` to per-pixel ELBO terms, to latent
marginals at query dates and to predictive reconstructions (normalised units).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gpvae.errors import InputError
from gpvae.models.batch import Batch
from gpvae.models.decoders import MLPDecoder
from gpvae.models.likelihoods import GaussianLikelihood, Likelihood, StudentTLikelihood


@dataclass
class ElboTerms:
    """Per-pixel evidence lower bound: elbo = recon - beta * kl, each (B,)."""

    elbo: Tensor
    recon: Tensor
    kl: Tensor


def reparameterised_samples(mean: Tensor, var: Tensor, num_samples: int) -> Tensor:
    """z = mean + sqrt(var) * eps, eps ~ N(0, I): (S, *mean.shape)."""
    eps = torch.randn((num_samples,) + mean.shape, dtype=mean.dtype, device=mean.device)
    return mean + var.clamp_min(0).sqrt() * eps


Offset = tuple[Tensor, Tensor] | None


def expected_log_lik(decoder: MLPDecoder, likelihood: Likelihood, x: Tensor, m: Tensor,
                     mean: Tensor, var: Tensor, num_samples: int, offset: Offset = None
                     ) -> Tensor:
    """E_{z ~ N(mean, diag var), δ ~ N(offset)}[log p(x | decoder(z) + δ)] per entry, 0 where
    ``m`` is False.

    x, m (..., C); mean, var (..., D) the decoder input's marginals; ``offset``: mean and
    variance (..., C) of an additive Gaussian offset of the location (None: no offset).
    ``num_samples >= 1``: Monte-Carlo with reparameterised samples; ``num_samples == 0``:
    exact, for a linear decoder with a homoscedastic Gaussian likelihood only.
    """
    x = torch.where(m, x, torch.zeros_like(x))
    if num_samples == 0:
        if not (decoder.is_linear and isinstance(likelihood, GaussianLikelihood)):
            raise ValueError("num_samples=0 (analytic) needs a linear decoder and a "
                             "homoscedastic Gaussian likelihood")
        loc_mean, loc_var = decoder.linear_moments(mean, var)
        if offset is not None:
            loc_mean, loc_var = loc_mean + offset[0], loc_var + offset[1]
        ll = likelihood.expected_log_prob(x, loc_mean, loc_var)
    else:
        loc, raw = decoder(reparameterised_samples(mean, var, num_samples))
        if offset is not None:
            loc = loc + reparameterised_samples(*offset, num_samples)
        ll = likelihood.log_prob(x, loc, raw).mean(0)
    return torch.where(m, ll, torch.zeros_like(ll))


def predictive_moments(decoder: MLPDecoder, likelihood: Likelihood, mean: Tensor, var: Tensor,
                       num_samples: int, offset: Offset = None) -> tuple[Tensor, Tensor]:
    """Predictive mean and std of x for z ~ N(mean, diag var) (plus an independent Gaussian
    ``offset`` of the location), observation noise included.

    Law of total variance over latent samples: Var[x] = E[Var[x|z]] + Var[E[x|z]]; exact
    moment matching (no sampling) for a linear homoscedastic decoder.
    """
    if decoder.is_linear:
        loc_mean, loc_var = decoder.linear_moments(mean, var)
        noise = likelihood.variance(loc_mean)
    else:
        loc, raw = decoder(reparameterised_samples(mean, var, max(num_samples, 1)))
        noise = likelihood.variance(loc, raw).mean(0)
        loc_mean, loc_var = loc.mean(0), loc.var(0, unbiased=False)
    if offset is not None:
        loc_mean, loc_var = loc_mean + offset[0], loc_var + offset[1]
    return loc_mean, (loc_var + noise).sqrt()


def nearest_marginals(t: Tensor, mask: Tensor, mean: Tensor, var: Tensor, t_query: Tensor,
                      prior_mean: Tensor, prior_var: Tensor) -> tuple[Tensor, Tensor]:
    """Marginals at the valid date nearest to each query date (ties: the earlier date).

    t, mask (B, N); mean, var (B, N, L); t_query (B, Q). A pixel without any valid date gets
    (prior_mean, prior_var), broadcastable to (B, Q, L).
    """
    dist = (t_query.unsqueeze(-1) - t.unsqueeze(1)).abs()  # (B, Q, N)
    dist = torch.where(mask.unsqueeze(1), dist, torch.full_like(dist, float("inf")))
    idx = dist.argmin(-1)  # (B, Q)
    gidx = idx.unsqueeze(-1).expand(-1, -1, mean.shape[-1])
    qm, qv = torch.gather(mean, 1, gidx), torch.gather(var, 1, gidx)
    has = mask.any(1).view(-1, 1, 1)
    return (torch.where(has, qm, prior_mean.expand_as(qm)),
            torch.where(has, qv, prior_var.expand_as(qv)))


def standard_normal_kl(mean: Tensor, var: Tensor) -> Tensor:
    """KL(N(mean, diag var) || N(0, I)) summed over the last dim."""
    return 0.5 * (var + mean ** 2 - 1.0 - torch.log(var)).sum(-1)


class SITSVAE(nn.Module):
    """Base of all satellite-image-time-series VAEs: per-sensor decoders and likelihoods.

    Subclasses implement :meth:`elbo` and :meth:`latent`; :meth:`reconstruct` decodes the latent
    marginals at the query dates via :meth:`decoder_input`.
    """

    def __init__(self, sensor_bands: dict[str, list[str]], latent_dim: int, *,
                 decoders: dict[str, MLPDecoder], likelihoods: dict[str, Likelihood],
                 beta: float = 1.0) -> None:
        super().__init__()
        self.sensors = list(sensor_bands)
        self.sensor_bands = {s: list(b) for s, b in sensor_bands.items()}
        self.latent_dim = latent_dim
        self.beta = beta
        self.decoders = nn.ModuleDict(decoders)
        self.likelihoods = nn.ModuleDict(likelihoods)
        self.config: dict = {}
        self.data = None  # the DataSummary the model was built with (build_model)

    # --- interface -------------------------------------------------------------------------
    def elbo(self, batch: Batch, num_samples: int = 1) -> ElboTerms:
        """Per-pixel ELBO terms; expected log-likelihood by ``num_samples`` reparameterised
        latent samples, or exactly with ``num_samples=0`` (linear Gaussian decoders only)."""
        raise NotImplementedError

    def latent(self, batch: Batch, t_query: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and variance (B, Q, L) of the latent at t_query (B, Q), in the
        batch's time frame (days - origin)."""
        raise NotImplementedError

    def decoder_input(self, sensor: str, mean: Tensor, var: Tensor, t: Tensor, batch: Batch
                      ) -> tuple[Tensor, Tensor]:
        """Moments of the decoder input at dates t (B, N) (the batch's frame) from latent
        moments (B, N, L)."""
        return mean, var

    def observation_offset(self, sensor: str, t: Tensor, batch: Batch) -> Offset:
        """Mean and variance (B, N, C) of an additive offset of ``sensor``'s observations at
        dates t (B, N) (e.g. shared date effects), or None."""
        return None

    def reconstruct(self, batch: Batch, sensor: str, t_query: Tensor, num_samples: int = 32
                    ) -> tuple[Tensor, Tensor]:
        """Predictive mean and std (B, Q, C) of ``sensor``'s normalised values at t_query."""
        self.check_batch(batch)
        self.check_sensor(sensor)
        mean, var = self.latent(batch, t_query)
        return self.predict_observations(sensor, mean, var, t_query, batch, num_samples)

    def predict_observations(self, sensor: str, mean: Tensor, var: Tensor, t_query: Tensor,
                             batch: Batch, num_samples: int = 32) -> tuple[Tensor, Tensor]:
        """Predictive mean and std (B, Q, C) of ``sensor`` from latent moments (B, Q, L) at
        t_query (B, Q) of the pixels of ``batch``, e.g. those of :meth:`latent` (computed
        once, decoded per sensor)."""
        self.check_sensor(sensor)
        dm, dv = self.decoder_input(sensor, mean, var, t_query, batch)
        return predictive_moments(self.decoders[sensor], self.likelihoods[sensor], dm, dv,
                                  num_samples, self.observation_offset(sensor, t_query, batch))

    # --- shared pieces ---------------------------------------------------------------------
    def check_sensor(self, sensor: str) -> None:
        """InputError when the model has no decoder for ``sensor``."""
        if sensor not in self.decoders:
            raise InputError(f"model has no decoder for sensor {sensor!r}", field="sensor",
                             fix=f"use one of {', '.join(self.sensors)}")

    def check_batch(self, batch: Batch) -> None:
        """InputError when a sensor of the model is missing or has the wrong band count."""
        for s in self.sensors:
            if s not in batch.sensors:
                raise InputError(f"batch lacks sensor {s!r} used by the model",
                                 field="sensors",
                                 fix="add the sensor to the pixel dataset or drop it from the "
                                     "model's `sensors`")
            c = batch.sensors[s].x.shape[-1]
            if c != len(self.sensor_bands[s]):
                raise InputError(f"sensor {s!r} has {c} bands, model expects "
                                 f"{len(self.sensor_bands[s])} ({self.sensor_bands[s]})",
                                 field=f"band_{s}", fix="use the bands the model was built with")

    def recon_terms(self, batch: Batch, marginals: dict[str, tuple[Tensor, Tensor]],
                    num_samples: int) -> Tensor:
        """Σ over sensors, dates and observed bands of E_q[log p(x | z)]: (B,)."""
        total = 0.0
        for s in self.sensors:
            sb = batch.sensors[s]
            mean, var = self.decoder_input(s, *marginals[s], sb.t, batch)
            m = sb.m & sb.obs.unsqueeze(-1)
            ll = expected_log_lik(self.decoders[s], self.likelihoods[s], sb.x, m, mean, var,
                                  num_samples, self.observation_offset(s, sb.t, batch))
            total = total + ll.sum((-2, -1))
        return total

    def hyperparameters(self) -> dict[str, float]:
        """Noise std (and Student-t df) per sensor band, for CSV logs."""
        out: dict[str, float] = {}
        for s in self.sensors:
            lik = self.likelihoods[s]
            with torch.no_grad():
                std = lik.noise_std().tolist()
                df = lik.df().tolist() if isinstance(lik, StudentTLikelihood) else None
            for i, band in enumerate(self.sensor_bands[s]):
                out[f"noise_std_{s}_{band}"] = float(std[i])
                if df is not None:
                    out[f"df_{s}_{band}"] = float(df[i])
        out["beta"] = float(self.beta)
        return out

