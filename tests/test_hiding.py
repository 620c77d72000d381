"""The hiding protocol: only observed dates, ~20% + one 30-60-day gap, seeded, never seen."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from fixtures_pixels import write_pixels

from gpvae import to_days
from gpvae.data.dataset import PixelDataset, sample_origin
from gpvae.evaluate.hiding import hide_series, make_hidden, open_hidden
from gpvae.evaluate.inference import iterate_pixels


@pytest.fixture(scope="module")
def pixels(tmp_path_factory):
    return write_pixels(tmp_path_factory.mktemp("hide") / "pixels.nc", n_samples=60,
                        years=(2021, 2022), s2_step_days=5, cloud_fraction=0.3, seed=3)


@pytest.fixture(scope="module")
def hidden(pixels, tmp_path_factory):
    return make_hidden(pixels, tmp_path_factory.mktemp("h") / "hidden.nc", seed=7)


def _observed(pixels, idx):
    with xr.open_dataset(pixels) as ds:
        return (~np.isnan(ds["values_S2"].isel(sample=idx).values)).any(-1)


def test_hides_only_observed_and_keeps_some(pixels, hidden):
    h = open_hidden(hidden)
    idx = h["sample"].values
    with xr.open_dataset(pixels) as ds:
        assert set(ds["split"].values[idx]) == {"test"}
        assert idx.size == (ds["split"].values == "test").sum()
    obs = _observed(pixels, idx)
    hide = h.values.astype(bool)
    assert hide.any()
    assert not (hide & ~obs).any()
    assert ((obs & ~hide).sum(1) >= 1).all()


def test_fraction_and_gap(pixels, hidden):
    h = open_hidden(hidden)
    with xr.open_dataset(hidden) as hds, xr.open_dataset(pixels) as ds:
        start, length = hds["gap_start_day"].values, hds["gap_length_days"].values
        idx = hds["sample"].values
        t = to_days(ds["time_S2"].values)[None, :] - sample_origin(ds, idx)[:, None]
    obs = _observed(pixels, idx)
    hide = h.values.astype(bool)
    assert ((length >= 30) & (length <= 60)).all()
    for i in range(idx.size):
        in_gap = obs[i] & (t[i] >= start[i]) & (t[i] < start[i] + length[i])
        assert in_gap.sum() >= 1 and hide[i, in_gap].all()  # the whole gap is hidden
        n = obs[i].sum()
        extra = (hide[i] & ~in_gap).sum()  # the random part, outside the gap
        assert extra == round(0.2 * n)
    frac = hide.sum() / obs.sum()
    assert 0.25 < frac < 0.6  # 20 % + a 30-60 day gap of a ~5-day revisit


def test_deterministic_by_seed(pixels, hidden, tmp_path):
    again = open_hidden(make_hidden(pixels, tmp_path / "again.nc", seed=7)).values
    other = open_hidden(make_hidden(pixels, tmp_path / "other.nc", seed=8)).values
    np.testing.assert_array_equal(again, open_hidden(hidden).values)
    assert (other != again).any()
    sub = open_hidden(make_hidden(pixels, tmp_path / "sub.nc", seed=7, max_samples=5))
    assert sub.sizes["sample"] == 5
    # per-sample streams: a subset gets the same mask as in the full run
    np.testing.assert_array_equal(sub.values, open_hidden(hidden).sel(sample=sub["sample"]))


def test_hide_series_edge_cases():
    rng = np.random.default_rng(0)
    t = np.arange(0.0, 100.0, 10.0)
    one = np.zeros(10, bool)
    one[3] = True
    assert not hide_series(t, one, rng, random_fraction=0.2, gap_days=(30, 60))[0].any()
    two = one.copy()
    two[4] = True
    h = hide_series(t, two, rng, random_fraction=0.2, gap_days=(30, 60))[0]
    assert h.sum() == 1 and not (h & ~two).any()


def test_iterate_pixels_removes_hidden_entries(pixels, hidden, tmp_path):
    """Replacing the hidden values by anything leaves the batches unchanged."""
    h = open_hidden(hidden)
    idx = h["sample"].values
    with PixelDataset(pixels, {"S2": ["B02", "B04", "B08"], "S1_ASC": ["VV", "VH"]}) as d:
        meta = {"sensor_bands": d.sensor_bands,
                "normalisation": d.compute_normalisation("train")}
    with xr.open_dataset(pixels) as ds:
        changed = ds.load()
    v = changed["values_S2"].values.copy()
    hide = np.zeros(v.shape[:2], bool)
    hide[idx] = h.values.astype(bool)
    v[hide] = np.random.default_rng(0).uniform(0.0, 1.0, (hide.sum(), v.shape[-1]))
    changed["values_S2"].values[:] = v
    other = tmp_path / "changed.nc"
    changed.to_netcdf(other)
    a = list(iterate_pixels(pixels, meta, idx, batch_size=7, hidden=h))
    b = list(iterate_pixels(other, meta, idx, batch_size=7, hidden=h))
    no_hide = list(iterate_pixels(other, meta, idx, batch_size=7))
    assert len(a) == len(b) == -(-idx.size // 7)
    for (ia, ba), (ib, bb), (_, bn) in zip(a, b, no_hide, strict=True):
        np.testing.assert_array_equal(ia, ib)
        for s in ba.sensors:
            for f in ("t", "x", "m", "obs"):
                assert torch_equal(getattr(ba.sensors[s], f), getattr(bb.sensors[s], f))
        assert bn.sensors["S2"].obs.sum() > ba.sensors["S2"].obs.sum()


def torch_equal(a, b) -> bool:
    return a.shape == b.shape and bool((a == b).all())
