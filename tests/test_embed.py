"""Embeddings at reference dates: fixed shape whatever the dates, NaN + valid 0 when empty,
raw linear interpolation exact on linear signals."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from fixtures_pixels import write_pixels

from gpvae.evaluate.embed import embed_pixels, embed_raw_linear, interp_linear
from gpvae.evaluate.inference import iterate_pixels, latent_at
from gpvae.models.build import load_model
from gpvae.train.loop import train_model

REF = np.arange(0.0, 365.0, 10.0)
EMPTY = [0, 5]  # samples with no observation at all
NO_S2 = [1]  # samples with S1 only


@pytest.fixture(scope="module")
def pixels(tmp_path_factory):
    """Synthetic pixels; samples EMPTY have no observation, NO_S2 have no S2 observation."""
    root = tmp_path_factory.mktemp("emb")
    src = write_pixels(root / "src.nc", n_samples=32, years=(2021, 2022), cloud_fraction=0.4,
                       seed=2)
    with xr.open_dataset(src) as ds:
        ds = ds.load()
    for s in ("S2", "S1_ASC", "S1_DES"):
        ds[f"values_{s}"].values[EMPTY] = np.nan
    ds["values_S2"].values[NO_S2] = np.nan
    ds.to_netcdf(root / "pixels.nc")
    return root / "pixels.nc"


@pytest.fixture(scope="module", params=["gpvae", "iid_vae"])
def model(request, pixels, tmp_path_factory):
    cfg = {"type": request.param, "sensors": ["S2", "S1_ASC", "S1_DES"], "latent_dim": 2,
           "hidden": 8, "train": {"epochs": 1, "batch_size": 16, "patience": 0}}
    if request.param == "gpvae":
        cfg["prior"] = "exact"
    out = tmp_path_factory.mktemp(request.param)
    return train_model(pixels, request.param, cfg, out, device="cpu")


def test_embeddings_fixed_shape_and_empty_samples(pixels, model, tmp_path):
    out = embed_pixels(pixels, model, tmp_path / "m.nc", ref_days=REF, device="cpu",
                       batch_size=8)
    with xr.open_dataset(out) as e, xr.open_dataset(pixels) as px:
        n = px.sizes["sample"]
        assert e["mean"].shape == e["var"].shape == (n, REF.size, 2)
        np.testing.assert_array_equal(e["ref_day"].values, REF)
        valid = e["valid"].values
        assert valid.dtype == np.uint8
        assert (valid[EMPTY] == 0).all() and valid.sum() == n - len(EMPTY)
        assert valid[NO_S2].all()  # S1 alone still gives an embedding
        mean, var = e["mean"].values, e["var"].values
        assert np.isnan(mean[EMPTY]).all() and np.isnan(var[EMPTY]).all()
        ok = valid == 1
        assert np.isfinite(mean[ok]).all() and (var[ok] > 0).all()
        for k in ("tile", "parcel_id", "label", "split", "region", "year", "x", "y"):
            np.testing.assert_array_equal(e[k].values, px[k].values)
        assert e.attrs["model"] in ("gpvae", "iid_vae") and e.attrs["method"]


def test_latent_at_same_shape_for_different_date_sets(pixels, model):
    net, meta = load_model(model, "cpu")
    idx = np.array([2, 3, 4, 6])
    (sel, batch), = list(iterate_pixels(pixels, meta, idx, batch_size=4))
    counts = batch.sensors["S2"].obs.sum(1)
    assert len(set(counts.tolist())) > 1  # the pixels have different numbers of dates
    mean, var = latent_at(net, batch, REF)
    assert mean.shape == var.shape == (4, REF.size, 2)
    # a sample's embedding does not depend on the other samples of its batch
    (_, single), = list(iterate_pixels(pixels, meta, idx[:1], batch_size=1))
    m1, _ = latent_at(net, single, REF)
    np.testing.assert_allclose(m1[0], mean[0], rtol=1e-4, atol=5e-5)


def test_raw_linear_exact_on_linear_signal(tmp_path):
    src = write_pixels(tmp_path / "src.nc", n_samples=12, years=(2021,), cloud_fraction=0.5,
                       seed=4, sensors=("S2",))
    with xr.open_dataset(src) as ds:
        ds = ds.load()
    doy = (ds["time_S2"].values - np.datetime64("2021-01-01")) / np.timedelta64(1, "D")
    slope = np.linspace(1e-4, 1e-3, 10)
    linear = 0.05 + doy[None, :, None] * slope[None, None, :] + 0.01 * np.arange(12)[:, None,
                                                                                   None]
    v = ds["values_S2"].values
    ds["values_S2"].values[:] = np.where(np.isnan(v), np.nan, linear)
    ds["values_S2"].values[3] = np.nan  # no S2 at all
    ds.to_netcdf(tmp_path / "pixels.nc")
    out = embed_raw_linear(tmp_path / "pixels.nc", tmp_path / "raw.nc", ref_days=REF)
    with xr.open_dataset(out) as e:
        mean, valid = e["mean"].values, e["valid"].values
        assert mean.shape == (12, REF.size, 10) and list(e["feature"].values)[0] == "B02"
        assert "var" not in e
    assert valid[3] == 0 and np.isnan(mean[3]).all() and valid.sum() == 11
    for i in np.flatnonzero(valid):
        t_obs = doy[~np.isnan(v[i, :, 0])]
        inside = (REF >= t_obs.min()) & (REF <= t_obs.max())
        expect = 0.05 + REF[:, None] * slope + 0.01 * i
        np.testing.assert_allclose(mean[i, inside], expect[inside], rtol=1e-5)
        # clamped beyond the ends: the first/last observed value
        before = REF < t_obs.min()
        np.testing.assert_allclose(mean[i, before],
                                   np.broadcast_to(linear[i, doy == t_obs.min()][0],
                                                   (before.sum(), 10)), rtol=1e-5)


def test_interp_linear_missing_band():
    t = np.array([[0.0, 10.0, 20.0]])
    v = np.array([[[1.0, np.nan], [np.nan, np.nan], [3.0, np.nan]]])
    out = interp_linear(t, v, np.array([[5.0, 10.0, 30.0]]))
    np.testing.assert_allclose(out[0, :, 0], [1.5, 2.0, 3.0])
    assert np.isnan(out[0, :, 1]).all()
