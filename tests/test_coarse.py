"""Coarse sensors in the model and the data layer: cells, the cell-mean likelihood, cell
groups in batches (gpvae.io.coarse, gpvae.models.aggregate, gpvae.data.dataset)."""

from __future__ import annotations

import affine
import numpy as np
import pytest
import rasterio.crs
import torch
import xarray as xr

from gpvae.data.dataset import BlockSampler, cell_groups
from gpvae.io.coarse import cell_ids, cells_of, coarse_grid, is_coarser, same_grid
from gpvae.models.aggregate import cell_expected_log_lik
from gpvae.models.decoders import MLPDecoder
from gpvae.models.likelihoods import GaussianLikelihood
from gpvae.models.vae import expected_log_lik

CRS = rasterio.crs.CRS.from_epsg(32631)
FINE = (CRS, affine.Affine(10, 0, 330000, 0, -10, 4840000), 32, 32)


def test_coarse_grid_is_aligned_and_covers_the_tile():
    crs, t, h, w = coarse_grid(FINE, 30)
    assert (t.a, t.e, t.c, t.f) == (30, -30, 330000, 4840000) and (h, w) == (11, 11)
    assert is_coarser(FINE, (crs, t, h, w)) and not same_grid(FINE, (crs, t, h, w))
    assert coarse_grid(FINE, 250)[2:] == (2, 2)
    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    r, c, inside = cells_of(FINE, (crs, t, h, w), rows.ravel(), cols.ravel())
    assert inside.all()
    np.testing.assert_array_equal(r, rows.ravel() // 3)
    np.testing.assert_array_equal(c, cols.ravel() // 3)
    ids = cell_ids(1, (crs, t, h, w), r, c, inside)
    assert np.unique(ids).size == 121 and (ids >= 1 << 40).all()


def test_pixels_outside_a_smaller_coarse_grid_have_no_cell():
    crs, t, h, w = coarse_grid(FINE, 30)
    r, c, inside = cells_of(FINE, (crs, t, h - 2, w), np.array([0, 31]), np.array([0, 31]))
    assert inside.tolist() == [True, False]
    assert cell_ids(0, (crs, t, h, w), r, c, inside)[1] == -1


def _problem(seed: int = 0):
    torch.manual_seed(seed)
    b, n, c, d = 6, 5, 3, 2
    dec, lik = MLPDecoder(d, c, 8, depth=0), GaussianLikelihood(c, init_scale=0.3)
    x, m = torch.randn(b, n, c), torch.rand(b, n, c) > 0.3
    x[1], m[1] = x[0], m[0]  # pixels 0, 1 and 2 share a cell
    x[2], m[2] = x[0], m[0]
    mean, var = torch.randn(b, n, d, requires_grad=True), torch.rand(b, n, d) * 0.2
    return dec, lik, x, m, mean, var


def test_a_cell_of_one_pixel_is_the_usual_likelihood():
    dec, lik, x, m, mean, var = _problem()
    group, share = torch.arange(6), torch.ones(6)
    got = cell_expected_log_lik(dec, lik, x, m, mean, var, 0, None, group, share)
    want = expected_log_lik(dec, lik, x, m, mean, var, 0).sum((-2, -1))
    torch.testing.assert_close(got, want)


def test_a_cell_observes_the_mean_of_its_pixels():
    """Analytic (linear decoder): loc = mean_p (W m_p + b), var = sum_p W^2 v_p / n^2; the
    cell's term is counted once (share x members); Monte Carlo agrees."""
    dec, lik, x, m, mean, var = _problem()
    group = torch.tensor([7, 7, 7, 1, 2, 3])
    share = torch.tensor([1 / 3, 1 / 3, 1 / 3, 1, 1, 1])
    got = cell_expected_log_lik(dec, lik, x, m, mean, var, 0, None, group, share)
    lm, lv = dec.linear_moments(mean, var)
    cell = lik.expected_log_prob(torch.where(m[0], x[0], 0), lm[:3].mean(0), lv[:3].sum(0) / 9)
    cell = torch.where(m[0], cell, 0).sum()
    torch.testing.assert_close(got[:3].sum(), cell)
    torch.testing.assert_close(got[0], got[2])
    torch.manual_seed(1)
    mc = cell_expected_log_lik(dec, lik, x, m, mean, var, 20000, None, group, share)
    assert float(mc[:3].sum().detach()) == pytest.approx(float(cell.detach()), rel=0.02)
    # the coarse observation moves every pixel of the cell
    got[:3].sum().backward()
    assert (mean.grad[:3].abs().sum((1, 2)) > 0).all() and (mean.grad[3:] == 0).all()


def test_naive_upsampling_differs_from_the_cell_mean():
    """Two pixels of one cell with different predictions: the cell mean fits the coarse value
    (their average), the per-pixel (upsampled) likelihood does not."""
    dec = MLPDecoder(1, 1, 4, depth=0)
    with torch.no_grad():
        dec.net[-1].weight.fill_(1.0)
        dec.net[-1].bias.zero_()
    lik = GaussianLikelihood(1, init_scale=0.1)
    x = torch.full((2, 1, 1), 0.5)
    m = torch.ones(2, 1, 1, dtype=torch.bool)
    mean, var = torch.tensor([[[0.0]], [[1.0]]]), torch.zeros(2, 1, 1)
    cell = cell_expected_log_lik(dec, lik, x, m, mean, var, 0, None, torch.tensor([0, 0]),
                                 torch.tensor([0.5, 0.5])).sum()
    naive = expected_log_lik(dec, lik, x, m, mean, var, 0).sum() / 2
    assert float(cell) > float(naive) + 5


def _pixels_ds(cells: np.ndarray, starts: np.ndarray, splits: np.ndarray) -> xr.Dataset:
    n = cells.size
    return xr.Dataset(coords={"cell_L": ("sample", cells), "start": ("sample", starts),
                              "end": ("sample", starts + np.timedelta64(365, "D")),
                              "year": ("sample", np.full(n, 2022))})


def test_cell_groups_count_a_cell_once_per_split_and_span():
    start = np.datetime64("2022-01-01", "ns")
    cells = np.array([5, 5, 5, 5, 9, -1, -1])
    starts = np.array([start] * 3 + [start + np.timedelta64(365, "D")] + [start] * 3)
    splits = np.array(["train", "train", "val", "train", "train", "train", "train"])
    (group, share), = cell_groups(_pixels_ds(cells, starts, splits), ["L", "S2"],
                                  splits).values()
    assert group[0] == group[1] and len(set(group[[0, 2, 3, 4, 5, 6]])) == 6
    np.testing.assert_allclose(share, [0.5, 0.5, 1, 1, 1, 1, 1])


def test_sampler_keeps_a_cell_together_and_is_reproducible():
    idx = np.arange(100, 160)
    groups = np.repeat(np.arange(12), 5)
    sampler = BlockSampler(idx, 16, seed=3, groups=groups)
    sampler.set_epoch(2)
    order = sampler.order()
    assert sorted(order.tolist()) == idx.tolist()
    g = groups[order - 100]
    assert (np.diff(g) != 0).sum() == 11  # each group's samples come together
    assert np.array_equal(order, sampler.order())
    sampler.set_epoch(3)
    assert not np.array_equal(order, sampler.order())
