"""Inference-network building blocks: partial (missing-band) encoders, Gaussian heads,
time encodings, attention pooling and the temporal CNN of the banded baseline."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_VAR_FLOOR = 1e-4


def mlp(in_dim: int, hidden: int, out_dim: int, depth: int = 2) -> nn.Sequential:
    """A ReLU multilayer perceptron with ``depth`` hidden layers (depth 0 = one linear map)."""
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(depth):
        layers += [nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class PartialEncoder(nn.Module):
    """Partial inference network h = ρ(Σ_{c observed} φ(x_c w_c + b_c)) (Ashman et al. 2020).

    Unobserved bands (m = False) contribute nothing, whatever their value.
    """

    def __init__(self, num_bands: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_bands, hidden) / math.sqrt(2.0))
        self.bias = nn.Parameter(torch.randn(num_bands, hidden) * 0.1)
        self.phi = nn.Sequential(nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.rho = mlp(hidden, hidden, out_dim, depth=1)

    def forward(self, x: Tensor, m: Tensor) -> Tensor:
        """x, m (..., C) -> features (..., out_dim)."""
        x = torch.where(m, x, torch.zeros_like(x))  # NaN-safe: unobserved values never enter
        e = self.phi(x.unsqueeze(-1) * self.weight + self.bias)  # (..., C, H)
        pooled = (e * m.unsqueeze(-1).to(e.dtype)).sum(-2)
        return self.rho(pooled)


class GaussianHead(nn.Module):
    """Linear map to a diagonal Gaussian: mean, variance = softplus(·) + floor."""

    def __init__(self, in_dim: int, out_dim: int, *, init_var: float = 1.0) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, 2 * out_dim)
        with torch.no_grad():
            self.linear.bias[out_dim:] = math.log(math.expm1(init_var))

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        mean, raw = self.linear(h).chunk(2, dim=-1)
        return mean, F.softplus(raw) + _VAR_FLOOR


class SiteEncoder(nn.Module):
    """Amortised Gaussian sites N(mu_n; z(t_n), s_n²) of one sensor (SGP-VAE, Ashman 2020)."""

    def __init__(self, num_bands: int, hidden: int, latent_dim: int, *,
                 init_var: float = 1.0) -> None:
        super().__init__()
        self.features = PartialEncoder(num_bands, hidden, hidden)
        self.head = GaussianHead(hidden, latent_dim, init_var=init_var)

    def forward(self, x: Tensor, m: Tensor) -> tuple[Tensor, Tensor]:
        """x, m (B, N, C) -> site mean, site variance (B, N, L)."""
        return self.head(torch.relu(self.features(x, m)))


class SinusoidalTimeEncoding(nn.Module):
    """Transformer time encoding [sin(2π t/P_k), cos(2π t/P_k)] on geometric periods P_k (days)."""

    def __init__(self, dim: int, *, min_period: float = 4.0, max_period: float = 1000.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError("time-encoding dimension must be even")
        periods = torch.logspace(math.log10(min_period), math.log10(max_period), dim // 2)
        self.register_buffer("freq", 2 * math.pi / periods, persistent=False)
        self.dim = dim

    def forward(self, t: Tensor) -> Tensor:
        """t (...) days -> (..., dim)."""
        a = t.unsqueeze(-1) * self.freq.to(t.dtype)
        return torch.cat([a.sin(), a.cos()], dim=-1)


class AttentionPool(nn.Module):
    """Multi-head attention of a learned query over a padded set, plus an always-present null
    token so that a pixel with no observation still gets a (prior-like) summary."""

    def __init__(self, dim: int, num_heads: int = 4) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, dim) * 0.1)
        self.null = nn.Parameter(torch.zeros(1, 1, dim))
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.out = mlp(dim, dim, dim, depth=1)

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        """h (B, N, D), mask (B, N) bool (True = present) -> (B, D)."""
        b = h.shape[0]
        keys = torch.cat([self.null.expand(b, 1, -1).to(h.dtype), h], dim=1)
        keep = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        pooled, _ = self.attn(self.query.expand(b, 1, -1).to(h.dtype), keys, keys,
                              key_padding_mask=~keep, need_weights=False)
        return self.out(pooled[:, 0])


class TemporalCNN(nn.Module):
    """1-D convolutional network over a regular time grid: (B, G, C_in) -> (B, G, C_out)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, *, kernel_size: int = 5,
                 depth: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for _ in range(depth):
            layers += [nn.Conv1d(d, hidden, kernel_size, padding=kernel_size // 2), nn.ReLU()]
            d = hidden
        layers.append(nn.Conv1d(d, out_dim, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h.transpose(1, 2)).transpose(1, 2)
