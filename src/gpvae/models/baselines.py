"""Baseline VAEs sharing the partial encoders, decoders and likelihoods of the GP-VAE.

- :class:`IIDVAE`: one latent per observation date, N(0, I) prior, no temporal coupling.
- :class:`HIVAE`: HI-VAE-style per-date latent (Nazabal et al. 2020) with a discrete mixture
  component s and a Gaussian-mixture prior; s is marginalised exactly.
- :class:`SeqVAE`: one global latent per pixel from attention over the irregular dates; the
  decoder reads [z, time encoding(t)].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpvae.models.batch import Batch, merge_timeline
from gpvae.models.decoders import MLPDecoder
from gpvae.models.encoders import (
    AttentionPool,
    GaussianHead,
    PartialEncoder,
    SinusoidalTimeEncoding,
    SiteEncoder,
)
from gpvae.models.likelihoods import Likelihood
from gpvae.models.vae import (
    SITSVAE,
    ElboTerms,
    expected_log_lik,
    nearest_marginals,
    standard_normal_kl,
)


def _present(batch: Batch, sensor: str) -> Tensor:
    """(B, N) dates of ``sensor`` with at least one observed band."""
    sb = batch.sensors[sensor]
    return sb.obs & sb.m.any(-1)


class IIDVAE(SITSVAE):
    """Per-observation VAE: q(z_n | x_n) = N(enc(x_n)), p(z_n) = N(0, I), KL per observed date.

    ``latent()``: the posterior of the observed date nearest to each query date (any sensor;
    ties go to the earlier date); N(0, I) for a pixel with no observation.
    """

    def __init__(self, sensor_bands: dict[str, list[str]], latent_dim: int, *,
                 encoders: dict[str, SiteEncoder], decoders: dict[str, MLPDecoder],
                 likelihoods: dict[str, Likelihood], beta: float = 1.0) -> None:
        super().__init__(sensor_bands, latent_dim, decoders=decoders, likelihoods=likelihoods,
                         beta=beta)
        self.encoders = nn.ModuleDict(encoders)

    def posteriors(self, batch: Batch) -> dict[str, tuple[Tensor, Tensor]]:
        """Per-sensor q(z_n | x_n): mean, var (B, N_s, L)."""
        return {s: self.encoders[s](batch.sensors[s].x, batch.sensors[s].m)
                for s in self.sensors}

    def elbo(self, batch: Batch, num_samples: int = 1) -> ElboTerms:
        self.check_batch(batch)
        post = self.posteriors(batch)
        kl = sum(torch.where(_present(batch, s), standard_normal_kl(*post[s]), 0.0).sum(-1)
                 for s in self.sensors)
        recon = self.recon_terms(batch, post, num_samples)
        return ElboTerms(recon - self.beta * kl, recon, kl)

    def latent(self, batch: Batch, t_query: Tensor) -> tuple[Tensor, Tensor]:
        self.check_batch(batch)
        post = self.posteriors(batch)
        tl = merge_timeline(batch, self.sensors)
        mean = tl.merge([post[s][0] for s in self.sensors])
        var = tl.merge([post[s][1] for s in self.sensors])
        zero = torch.zeros((), dtype=mean.dtype, device=mean.device)
        return nearest_marginals(tl.t, tl.mask, mean, var, t_query, zero, zero + 1)


class HIVAE(SITSVAE):
    """HI-VAE-style per-date model (Nazabal et al. 2020) with a Gaussian-mixture prior.

    p(s) = Cat(1/K), p(z | s) = N(mu_s, I) with learned mu_s, p(x | z) per sensor.
    q(s | x) = Cat(softmax(g(h))), q(z | x, s) = N(enc([h, onehot s])) with h the partial
    encoder's features. Differs from :class:`IIDVAE` by the learned multi-modal prior and the
    discrete component; s is summed out exactly (no Gumbel-softmax):
    ELBO_n = Σ_k q_k (E_{q(z|s=k)} log p(x|z) - KL(q(z|x,k) || p(z|k))) - KL(q(s|x) || p(s)).
    ``latent()``: moments of the mixture q(z|x) = Σ_k q_k q(z|x,k) at the nearest observed
    date (ties: earlier); the prior mixture's moments for a pixel with no observation.
    """

    def __init__(self, sensor_bands: dict[str, list[str]], latent_dim: int, *,
                 hidden: int, num_components: int, decoders: dict[str, MLPDecoder],
                 likelihoods: dict[str, Likelihood], beta: float = 1.0) -> None:
        super().__init__(sensor_bands, latent_dim, decoders=decoders, likelihoods=likelihoods,
                         beta=beta)
        self.num_components = num_components
        self.features = nn.ModuleDict({s: PartialEncoder(len(b), hidden, hidden)
                                       for s, b in sensor_bands.items()})
        self.component_logits = nn.Linear(hidden, num_components)
        self.z_head = GaussianHead(hidden + num_components, latent_dim)
        self.prior_means = nn.Parameter(torch.randn(num_components, latent_dim))

    def posteriors(self, batch: Batch) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
        """Per sensor: q(s|x) probs (B, N, K) and q(z|x,s) mean, var (K, B, N, L)."""
        out = {}
        eye = torch.eye(self.num_components)
        for s in self.sensors:
            h = torch.relu(self.features[s](batch.sensors[s].x, batch.sensors[s].m))
            probs = F.softmax(self.component_logits(h), dim=-1)
            onehot = eye.to(h).view(self.num_components, 1, 1, -1).expand(
                -1, *h.shape[:-1], -1)
            mean, var = self.z_head(torch.cat([h.expand(self.num_components, *h.shape),
                                               onehot], dim=-1))
            out[s] = (probs, mean, var)
        return out

    def elbo(self, batch: Batch, num_samples: int = 1) -> ElboTerms:
        self.check_batch(batch)
        post = self.posteriors(batch)
        mu_p = self.prior_means.view(self.num_components, 1, 1, -1)
        recon, kl = 0.0, 0.0
        for s in self.sensors:
            sb = batch.sensors[s]
            probs, mean, var = post[s]
            q = probs.movedim(-1, 0)  # (K, B, N)
            m = (sb.m & sb.obs.unsqueeze(-1)).expand(self.num_components, *sb.m.shape)
            x = sb.x.expand(self.num_components, *sb.x.shape)
            ll = expected_log_lik(self.decoders[s], self.likelihoods[s], x, m, mean, var,
                                  num_samples).sum(-1)  # (K, B, N)
            kl_z = standard_normal_kl(mean - mu_p.to(mean), var)  # (K, B, N)
            kl_s = (probs * (torch.log(probs.clamp_min(1e-12))
                             + math.log(self.num_components))).sum(-1)  # (B, N)
            present = _present(batch, s)
            recon = recon + (q * ll).sum(0).sum(-1)
            kl = kl + torch.where(present, (q * kl_z).sum(0) + kl_s, 0.0).sum(-1)
        return ElboTerms(recon - self.beta * kl, recon, kl)

    def latent(self, batch: Batch, t_query: Tensor) -> tuple[Tensor, Tensor]:
        self.check_batch(batch)
        post = self.posteriors(batch)
        tl = merge_timeline(batch, self.sensors)
        means, variances = [], []
        for s in self.sensors:
            probs, mean, var = post[s]
            q = probs.movedim(-1, 0).unsqueeze(-1)
            mix_mean = (q * mean).sum(0)
            means.append(mix_mean)
            variances.append((q * (var + mean ** 2)).sum(0) - mix_mean ** 2)
        mu_p = self.prior_means.to(tl.t.dtype)
        prior_mean = mu_p.mean(0)
        prior_var = 1.0 + (mu_p ** 2).mean(0) - prior_mean ** 2
        return nearest_marginals(tl.t, tl.mask, tl.merge(means), tl.merge(variances).clamp_min(0),
                                 t_query, prior_mean, prior_var)


class SeqVAE(SITSVAE):
    """Sequence VAE: one global latent z per pixel, q(z | all dates) by attention pooling of
    partial-encoder features + sinusoidal time encodings + a sensor embedding; p(z) = N(0, I);
    p(x_n | z) = decoder([z, te(t_n)]).

    ``latent()``: the global posterior repeated at every query date.
    """

    def __init__(self, sensor_bands: dict[str, list[str]], latent_dim: int, *, hidden: int,
                 time_encoding: SinusoidalTimeEncoding, decoders: dict[str, MLPDecoder],
                 likelihoods: dict[str, Likelihood], beta: float = 1.0,
                 num_heads: int = 4) -> None:
        super().__init__(sensor_bands, latent_dim, decoders=decoders, likelihoods=likelihoods,
                         beta=beta)
        self.features = nn.ModuleDict({s: PartialEncoder(len(b), hidden, hidden)
                                       for s, b in sensor_bands.items()})
        self.time_encoding = time_encoding
        self.time_proj = nn.Linear(time_encoding.dim, hidden)
        self.sensor_embedding = nn.ParameterDict(
            {s: nn.Parameter(torch.randn(hidden) * 0.1) for s in sensor_bands})
        self.pool = AttentionPool(hidden, num_heads)
        self.head = GaussianHead(hidden, latent_dim)

    def posterior(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Global q(z | x): mean, var (B, L)."""
        tokens, masks = [], []
        for s in self.sensors:
            sb = batch.sensors[s]
            h = (self.features[s](sb.x, sb.m) + self.time_proj(self.time_encoding(sb.t))
                 + self.sensor_embedding[s])
            tokens.append(h)
            masks.append(_present(batch, s))
        return self.head(torch.relu(self.pool(torch.cat(tokens, 1), torch.cat(masks, 1))))

    def decoder_input(self, sensor: str, mean: Tensor, var: Tensor, t: Tensor, batch: Batch
                      ) -> tuple[Tensor, Tensor]:
        te = self.time_encoding(t).to(mean.dtype)
        return torch.cat([mean, te], -1), torch.cat([var, torch.zeros_like(te)], -1)

    def elbo(self, batch: Batch, num_samples: int = 1) -> ElboTerms:
        self.check_batch(batch)
        mean, var = self.posterior(batch)
        kl = standard_normal_kl(mean, var)
        marg = {}
        for s in self.sensors:
            n = batch.sensors[s].t.shape[1]
            marg[s] = (mean.unsqueeze(1).expand(-1, n, -1), var.unsqueeze(1).expand(-1, n, -1))
        # one shared sample per pixel would be the textbook estimator; per-date samples of the
        # same marginal give the same expectation with lower variance.
        recon = self.recon_terms(batch, marg, num_samples)
        return ElboTerms(recon - self.beta * kl, recon, kl)

    def latent(self, batch: Batch, t_query: Tensor) -> tuple[Tensor, Tensor]:
        self.check_batch(batch)
        mean, var = self.posterior(batch)
        q = t_query.shape[1]
        return mean.unsqueeze(1).expand(-1, q, -1), var.unsqueeze(1).expand(-1, q, -1)
