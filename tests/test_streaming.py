"""New acquisitions without recomputation (gpvae.models.priors.streaming): an update of the
filter state equals the smoother over all dates, for every state-space kernel and for a
trained-shape GP-VAE on real batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures_pixels import write_pixels

from gpvae.data.dataset import PixelDataset
from gpvae.evaluate.stream_tile import check_streamable, update_pixels
from gpvae.models.build import build_model
from gpvae.models.kernels import make_kernel
from gpvae.models.priors.markov import MarkovGPPrior
from gpvae.models.priors.streaming import empty_state, products, stream_update


def _problem(kernel: str, seed: int = 0):
    torch.manual_seed(seed)
    k = make_kernel(kernel, 3, lengthscale=25.0, outputscale=1.0, period=365.25, bias=1.0)
    prior = MarkovGPPrior(k, num_harmonics=2).double()  # quasi_periodic: a small state
    b, n, r = 5, 40, 23
    t = torch.sort(torch.rand(b, n, dtype=torch.float64) * 365, 1).values
    mask = torch.rand(b, n) > 0.3
    mask[4] = False  # a pixel that never observes anything
    sm = torch.randn(b, n, 3, dtype=torch.float64)
    sv = torch.rand(b, n, 3, dtype=torch.float64) * 0.5 + 0.05
    ref = torch.linspace(0, 365, r, dtype=torch.float64).expand(b, r)
    return prior, t, mask, sm, sv, ref


@pytest.mark.parametrize("kernel", ["matern12", "matern32", "matern52", "quasi_periodic"])
def test_chained_updates_equal_the_smoother_over_all_dates(kernel):
    prior, t, mask, sm, sv, ref = _problem(kernel)
    with torch.no_grad():
        full_mean, full_var = prior.predict(t, mask, sm, sv, ref)
        state = empty_state(prior, t.shape[0], ref.shape[1])
        first, _ = stream_update(prior, state, ref, t, mask, sm, sv)
        # three batches of new acquisitions: before day 100, 100-250, after
        cuts = [t < 100, (t >= 100) & (t < 250), t >= 250]
        for part in cuts:
            state, late = stream_update(prior, state, ref, t, mask & part, sm, sv)
            assert late == 0
        for s in (first, state):
            mean, var = products(prior, s)
            torch.testing.assert_close(mean, full_mean, atol=1e-9, rtol=1e-9)
            torch.testing.assert_close(var, full_var, atol=1e-9, rtol=1e-9)
    # the past was revised: without the last batch, the reference dates before day 250 differ
    partial, _ = stream_update(prior, empty_state(prior, t.shape[0], ref.shape[1]), ref, t,
                               mask & (t < 250), sm, sv)
    early = ref[0] < 240
    assert (products(prior, partial)[0][:3, early] - full_mean[:3, early]).abs().max() > 1e-3


def test_state_records_the_last_date_and_the_past():
    prior, t, mask, sm, sv, ref = _problem("matern32")
    with torch.no_grad():
        state, _ = stream_update(prior, empty_state(prior, t.shape[0], ref.shape[1]), ref, t,
                                 mask & (t < 200), sm, sv)
    last = torch.where(mask & (t < 200), t, torch.full_like(t, -1)).max(1).values
    assert torch.allclose(state.t_last[:4], last[:4]) and torch.isnan(state.t_last[4])
    assert torch.equal(state.past[:4], ref[:4] < state.t_last[:4, None])
    assert not state.past[4].any()
    assert (state.gain[~state.past] == 0).all() and (state.gain[state.past] != 0).any()


def test_acquisitions_before_the_last_date_are_left_out():
    prior, t, mask, sm, sv, ref = _problem("matern32")
    with torch.no_grad():
        old, _ = stream_update(prior, empty_state(prior, t.shape[0], ref.shape[1]), ref, t,
                               mask & (t >= 200), sm, sv)
        new, late = stream_update(prior, old, ref, t, mask & (t < 200), sm, sv)
    assert late == int((mask[:4] & (t[:4] < 200)).sum())  # pixel 4 has no last date yet
    assert torch.equal(new.ref_mean[:4], old.ref_mean[:4])


@pytest.fixture(scope="module")
def pixels(tmp_path_factory):
    return write_pixels(tmp_path_factory.mktemp("px") / "pixels.nc", n_samples=12, seed=3)


def test_model_update_equals_the_model_posterior_over_all_dates(pixels):
    """A GP-VAE (markov, date effects off): the state of the dates before 1 July updated with
    those after equals model.latent on all dates (float32 model, float64 filter)."""
    bands = {"S2": ["B04", "B08"], "S1_ASC": ["VV", "VH"]}
    with PixelDataset(pixels, bands) as ds:
        ds.normalisation = ds.compute_normalisation("train")
        idx = np.arange(len(ds))
        cut = {s: ds.times[s] - ds.origin[0] < 181 for s in bands}
        full = ds.batch(idx)
        old = ds.batch(idx, hidden={s: np.broadcast_to(~c, (idx.size, c.size)) for s, c in
                                    cut.items()})
        new = ds.batch(idx, hidden={s: np.broadcast_to(c, (idx.size, c.size)) for s, c in
                                    cut.items()})
    torch.manual_seed(0)
    model = build_model({"type": "gpvae", "prior": "markov", "latent_dim": 3, "hidden": 8,
                         "date_effects": False}, bands).eval()
    prior = check_streamable(model)
    ref = np.arange(0.0, 366.0, 10.0)
    with torch.no_grad():
        want = model.latent(full, torch.as_tensor(ref, dtype=torch.float32).expand(12, -1))
    state = empty_state(prior, 12, ref.size)
    state, _ = update_pixels(model, prior, old, state, ref)
    state, late = update_pixels(model, prior, new, state, ref)
    mean, var = products(prior, state)
    assert late == 0
    np.testing.assert_allclose(mean.numpy(), want[0].numpy(), atol=2e-4, rtol=1e-3)
    np.testing.assert_allclose(var.numpy(), want[1].numpy(), atol=2e-4, rtol=1e-3)


def test_only_markov_models_stream():
    from gpvae.errors import InputError

    model = build_model({"type": "gpvae", "prior": "exact", "latent_dim": 2, "hidden": 4},
                        {"S2": ["B04"]})
    with pytest.raises(InputError, match="markov"):
        check_streamable(model)
