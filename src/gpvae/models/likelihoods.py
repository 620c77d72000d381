"""Observation likelihoods p(x | decoder output), one per sensor, with per-band noise.

A decoder returns ``(loc, raw)``: ``loc`` (..., C) and ``raw`` (..., C) or None. ``raw`` is an
unconstrained per-element noise offset (heteroscedastic models); homoscedastic models use a
learned per-band scale only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpvae.errors import InputError

LIKELIHOODS = ("gaussian", "student_t")

_SCALE_FLOOR = 1e-3


def _inv_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class Likelihood(nn.Module):
    """Base: a per-band scale s_c = exp(a_c [+ raw]) + floor; subclasses give the law.

    The scale is stored as its logarithm, so that it moves by relative steps under Adam (from
    a small ``init_scale``, in standardised units, to the data's noise level in a few hundred
    steps).
    """

    def __init__(self, num_bands: int, *, heteroscedastic: bool = False,
                 init_scale: float = 0.1) -> None:
        super().__init__()
        self.num_bands = num_bands
        self.heteroscedastic = heteroscedastic
        self.raw_scale = nn.Parameter(torch.full((num_bands,), math.log(init_scale)))

    def scale(self, loc: Tensor, raw: Tensor | None = None) -> Tensor:
        """Per-element scale broadcast to ``loc`` (..., C)."""
        a = self.raw_scale.to(loc.dtype)
        if raw is not None:
            a = a + raw
        return (torch.exp(a.clamp_max(20.0)) + _SCALE_FLOOR).expand_as(loc)

    def log_prob(self, x: Tensor, loc: Tensor, raw: Tensor | None = None) -> Tensor:
        """Element-wise log p(x | loc, raw), shape of ``loc``."""
        raise NotImplementedError

    def variance(self, loc: Tensor, raw: Tensor | None = None) -> Tensor:
        """Element-wise observation-noise variance Var[x | loc, raw]."""
        raise NotImplementedError

    def noise_std(self) -> Tensor:
        """(C,) homoscedastic noise standard deviation per band (for logs)."""
        loc = torch.zeros(self.num_bands, dtype=self.raw_scale.dtype,
                          device=self.raw_scale.device)
        return self.variance(loc).sqrt()


class GaussianLikelihood(Likelihood):
    """x ~ N(loc, s²) with learned per-band (optionally per-element) scale s."""

    def log_prob(self, x: Tensor, loc: Tensor, raw: Tensor | None = None) -> Tensor:
        s = self.scale(loc, raw)
        return -0.5 * ((x - loc) / s) ** 2 - torch.log(s) - 0.5 * math.log(2 * math.pi)

    def variance(self, loc: Tensor, raw: Tensor | None = None) -> Tensor:
        return self.scale(loc, raw) ** 2

    def expected_log_prob(self, x: Tensor, loc_mean: Tensor, loc_var: Tensor) -> Tensor:
        """E[log N(x; loc, s²)] for loc ~ N(m, v): log N(x; m, s²) - v / (2 s²)."""
        s2 = self.variance(loc_mean)
        return self.log_prob(x, loc_mean) - 0.5 * loc_var / s2


class StudentTLikelihood(Likelihood):
    """x ~ StudentT(ν_c, loc, s) with learned ν_c = 2 + softplus(·) > 2 (finite variance)."""

    def __init__(self, num_bands: int, *, heteroscedastic: bool = False,
                 init_scale: float = 0.1, init_df: float = 5.0) -> None:
        super().__init__(num_bands, heteroscedastic=heteroscedastic, init_scale=init_scale)
        self.raw_df = nn.Parameter(torch.full((num_bands,), _inv_softplus(init_df - 2.0)))

    def df(self) -> Tensor:
        """(C,) degrees of freedom."""
        return 2.0 + F.softplus(self.raw_df)

    def log_prob(self, x: Tensor, loc: Tensor, raw: Tensor | None = None) -> Tensor:
        s = self.scale(loc, raw)
        nu = self.df().to(loc.dtype)
        z2 = ((x - loc) / s) ** 2
        return (torch.lgamma((nu + 1) / 2) - torch.lgamma(nu / 2)
                - 0.5 * torch.log(nu * math.pi) - torch.log(s)
                - (nu + 1) / 2 * torch.log1p(z2 / nu))

    def variance(self, loc: Tensor, raw: Tensor | None = None) -> Tensor:
        nu = self.df().to(loc.dtype)
        return self.scale(loc, raw) ** 2 * nu / (nu - 2)


def make_likelihood(name: str, num_bands: int, *, heteroscedastic: bool = False,
                    init_scale: float = 0.1) -> Likelihood:
    """Likelihood by config name (``gaussian`` | ``student_t``)."""
    classes = {"gaussian": GaussianLikelihood, "student_t": StudentTLikelihood}
    if name not in classes:
        raise InputError(f"unknown likelihood {name!r}", field="likelihood",
                         fix=f"use one of {', '.join(LIKELIHOODS)}")
    return classes[name](num_bands, heteroscedastic=heteroscedastic, init_scale=init_scale)
