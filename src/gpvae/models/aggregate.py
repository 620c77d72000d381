"""Coarse sensors: one observation of a cell constrains every fine pixel it covers.

A coarse sensor s (Landsat 30 m, MODIS 250 m) observes the mean of what it would see on the
fine (10 m) pixels of its cell c: x_{c,t} = (1/|c|) Σ_{p ∈ c} g_s(z_p(t)) + δ + ε. Only the
sampled pixels of a cell are known, so the mean runs over the pixels of the cell in the batch
(a Monte-Carlo estimate of the cell's mean, unbiased for its expectation; exact when every
pixel of the cell is in the batch). The cell's expected log-likelihood enters the ELBO once
per split: each of its pixels carries ``share`` = 1 / (its cell's samples in the split) of
it, so a cell whose pixels fall into two batches still counts once over a pass (samplers keep
a cell's pixels together: :class:`gpvae.data.dataset.BlockSampler` ``groups``). The encoder
of the coarse sensor still gives each pixel of the cell a site from the cell's observation;
the ELBO is a valid bound for any such q.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gpvae.models.decoders import MLPDecoder
from gpvae.models.likelihoods import GaussianLikelihood, Likelihood


def group_index(group: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(index of each pixel's group (B,), pixels per group (G,), first pixel of each group
    (G,)) for group ids (B,)."""
    _, inverse = torch.unique(group, return_inverse=True)
    g = int(inverse.max()) + 1 if inverse.numel() else 0
    count = torch.zeros(g, dtype=torch.float64, device=group.device).index_add_(
        0, inverse, torch.ones_like(inverse, dtype=torch.float64))
    pos = torch.arange(group.numel(), device=group.device)
    first = torch.full((g,), group.numel(), dtype=pos.dtype, device=group.device)
    first = first.scatter_reduce(0, inverse, pos, reduce="amin")
    return inverse, count, first


def group_mean(values: Tensor, inverse: Tensor, count: Tensor, dim: int) -> Tensor:
    """Mean over the pixels of each group along ``dim`` (the pixel axis)."""
    shape = list(values.shape)
    shape[dim] = count.numel()
    total = values.new_zeros(shape).index_add_(dim, inverse, values)
    view = [1] * values.dim()
    view[dim] = count.numel()
    return total / count.to(values.dtype).view(view)


def cell_expected_log_lik(decoder: MLPDecoder, likelihood: Likelihood, x: Tensor, m: Tensor,
                          mean: Tensor, var: Tensor, num_samples: int,
                          offset: tuple[Tensor, Tensor] | None, group: Tensor, share: Tensor
                          ) -> Tensor:
    """Per pixel (B,): ``share`` x Σ over dates and observed bands of its cell's
    E_q[log p(x_c | mean over the batch's pixels p of c of decoder(z_p) + δ)].

    x, m (B, N, C): the cell's observations (the same for the pixels of a group); mean, var
    (B, N, D): each pixel's decoder-input marginals at those dates; ``group`` (B,) cell
    groups, ``share`` (B,) their weights. ``num_samples`` 0: exact for a linear decoder with
    a homoscedastic Gaussian likelihood (q factorises over pixels, so the variances of the
    mean add up divided by the group size squared).
    """
    inverse, count, first = group_index(group)
    xg = torch.where(m[first], x[first], torch.zeros_like(x[first]))
    off = None if offset is None else (offset[0][first], offset[1][first])
    if num_samples == 0:
        if not (decoder.is_linear and isinstance(likelihood, GaussianLikelihood)):
            raise ValueError("num_samples=0 (analytic) needs a linear decoder and a "
                             "homoscedastic Gaussian likelihood")
        loc_mean, loc_var = decoder.linear_moments(mean, var)
        loc_mean = group_mean(loc_mean, inverse, count, 0)
        loc_var = group_mean(loc_var, inverse, count, 0) / count.to(loc_var.dtype).view(-1, 1, 1)
        if off is not None:
            loc_mean, loc_var = loc_mean + off[0], loc_var + off[1]
        ll = likelihood.expected_log_prob(xg, loc_mean, loc_var)
    else:
        eps = torch.randn((num_samples, *mean.shape), dtype=mean.dtype, device=mean.device)
        loc, raw = decoder(mean + var.clamp_min(0).sqrt() * eps)
        loc = group_mean(loc, inverse, count, 1)
        raw = None if raw is None else group_mean(raw, inverse, count, 1)
        if off is not None:
            loc = loc + off[0] + off[1].clamp_min(0).sqrt() * torch.randn_like(loc)
        ll = likelihood.log_prob(xg, loc, raw).mean(0)
    ll = torch.where(m[first], ll, torch.zeros_like(ll)).sum((-2, -1))
    return ll[inverse] * share.to(ll.dtype)
