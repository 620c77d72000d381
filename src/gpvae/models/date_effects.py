"""What all pixels of a scene share on one acquisition, and the season every pixel shares.

:class:`DateEffects`: a per-(region, acquisition day) offset of one sensor's observations,
x = g(z(t)) + δ_{r,d} + ε, with δ_{r,d} ~ N(0, diag σ²) a priori (σ per band, learned) and a
Gaussian variational posterior q(δ_{r,d}) = N(m, diag s²) learned from the training pixels
(residual haze, thin clouds or illumination the mask missed, a composite's artefacts). Pixels
observed on that acquisition inform δ jointly, the pixel trajectory z(t) stays a GP between
dates. An acquisition absent from the table (an unseen date or region) gets the prior N(0, σ²).

:class:`SeasonalFeatures`: Fourier features of the day of the year, given to the decoder
beside z(t), so that the decoder learns the population's seasonal course and the latent GP
carries each pixel's departure from it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from gpvae.data.summary import KEY_STRIDE

#: Days per year of the seasonal features.
YEAR_DAYS = 365.25


class DateEffects(nn.Module):
    """q(δ_k) = N(m_k, diag s_k²) per known acquisition k of one sensor, prior N(0, diag σ²)."""

    def __init__(self, keys: np.ndarray | Tensor, num_bands: int, *, init_scale: float = 0.1
                 ) -> None:
        super().__init__()
        keys = np.unique(np.asarray(keys, dtype=np.int64))
        keys = torch.as_tensor(keys[keys >= 0])
        self.register_buffer("keys", keys, persistent=False)
        k = int(keys.numel())
        self.mean = nn.Parameter(torch.zeros(k, num_bands))
        self.log_std = nn.Parameter(torch.full((k, num_bands), math.log(init_scale * 0.1)))
        self.log_prior_std = nn.Parameter(torch.full((num_bands,), math.log(init_scale)))

    @property
    def num_keys(self) -> int:
        return int(self.keys.numel())

    def lookup(self, region: Tensor, t_abs: Tensor) -> tuple[Tensor, Tensor]:
        """Table rows (B, N) of the acquisitions at absolute days t_abs (B, N) (float64) of
        pixels in ``region`` (B,) codes, and whether each is known."""
        day = torch.floor(torch.where(torch.isfinite(t_abs), t_abs, torch.zeros_like(t_abs)))
        key = region.to(torch.int64)[:, None] * KEY_STRIDE + day.to(torch.int64)
        if self.num_keys == 0:
            return torch.zeros_like(key), torch.zeros_like(key, dtype=torch.bool)
        pos = torch.searchsorted(self.keys, key.contiguous()).clamp_max(self.num_keys - 1)
        found = (self.keys[pos] == key) & (region[:, None] >= 0) & torch.isfinite(t_abs)
        return pos, found

    def moments(self, region: Tensor, t_abs: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and variance (B, N, C) of δ at each date: q where known, the prior elsewhere."""
        pos, found = self.lookup(region, t_abs)
        prior_var = torch.exp(2 * self.log_prior_std)
        if self.num_keys == 0:
            shape = (*pos.shape, prior_var.shape[0])
            return prior_var.new_zeros(shape), prior_var.expand(shape)
        f = found.unsqueeze(-1)
        mean = torch.where(f, self.mean[pos], torch.zeros_like(self.mean[pos]))
        var = torch.where(f, torch.exp(2 * self.log_std[pos]), prior_var.expand_as(mean))
        return mean, var

    def kl(self) -> Tensor:
        """Σ_k KL(N(m_k, s_k²) || N(0, σ²)) over the table (scalar)."""
        if self.num_keys == 0:
            return self.log_prior_std.sum() * 0.0
        log_ratio = self.log_prior_std - self.log_std
        ratio2 = torch.exp(-2 * log_ratio)
        m2 = self.mean.pow(2) * torch.exp(-2 * self.log_prior_std)
        return 0.5 * (ratio2 + m2 - 1.0 + 2 * log_ratio).sum()

    def prior_std(self) -> Tensor:
        """(C,) prior standard deviation σ of the offsets (for logs)."""
        return torch.exp(self.log_prior_std)


class SeasonalFeatures(nn.Module):
    """φ(t) = [sin(2πk t / 365.25), cos(2πk t / 365.25)], k = 1..K, of absolute days t."""

    def __init__(self, num_harmonics: int) -> None:
        super().__init__()
        self.num_harmonics = num_harmonics

    @property
    def dim(self) -> int:
        return 2 * self.num_harmonics

    def forward(self, t_abs: Tensor) -> Tensor:
        """t_abs (...) float64 days since the epoch -> (..., 2K) float32."""
        phase = torch.remainder(t_abs.double(), YEAR_DAYS) * (2 * math.pi / YEAR_DAYS)
        k = torch.arange(1, self.num_harmonics + 1, dtype=phase.dtype, device=phase.device)
        a = phase.unsqueeze(-1) * k
        return torch.cat([a.sin(), a.cos()], -1).float()
