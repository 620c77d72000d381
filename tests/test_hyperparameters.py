"""Kernel hyperparameters that learn: series drawn from GPs with length scales of 15 and 90
days (irregular dates, noise) -> training with the default recipe recovers each within 25 %."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpvae.io.pixels import write_pixels
from gpvae.models.build import load_model
from gpvae.models.kernels import make_kernel
from gpvae.train.loop import train_model

N, YEAR = 240, 2021


def gp_pixels(path, lengthscale: float, seed: int = 0):
    """NDVI-like series 0.45 + 0.12 f(t) + noise, f ~ GP(0, Matern32(lengthscale)), each
    series observed on ~30 random dates of one year (MOD13Q1 NDVI, a built-in index band)."""
    rng = np.random.default_rng(seed)
    days = np.arange(0.0, 365.0, 3.0)
    k = make_kernel("matern32", 1, lengthscale=lengthscale, dtype=torch.float64)
    with torch.no_grad():
        cov = k(torch.tensor(days)[:, None]).to_dense()[0].numpy()
    f = rng.standard_normal((N, days.size)) @ np.linalg.cholesky(cov + 1e-9 * np.eye(
        days.size)).T
    x = np.clip(0.45 + 0.12 * f + 0.01 * rng.standard_normal(f.shape), -0.2, 1.0)
    x[rng.random(x.shape) > 0.25] = np.nan
    times = np.datetime64(f"{YEAR}-01-01") + (days * 86400).astype("timedelta64[s]")
    split = np.where(np.arange(N) % 5 < 3, "train", np.where(np.arange(N) % 5 == 3, "val",
                                                             "test"))
    samples = {"x": np.zeros(N), "y": np.zeros(N), "row": np.zeros(N), "col": np.zeros(N),
               "tile": np.full(N, "T31TCJ"), "parcel_id": np.arange(N), "label": np.zeros(N),
               "split": split, "region": np.full(N, "r"), "year": np.full(N, YEAR)}
    return write_pixels(path, values={"MOD13Q1": x[..., None]}, times={"MOD13Q1": times},
                        bands={"MOD13Q1": ["NDVI"]}, samples=samples, class_names=["c"])


@pytest.mark.slow
@pytest.mark.parametrize("lengthscale", [15.0, 90.0])
def test_training_recovers_the_length_scale(lengthscale, tmp_path):
    pixels = gp_pixels(tmp_path / "px.nc", lengthscale)
    cfg = {"type": "gpvae", "prior": "markov", "latent_dim": 1, "decoder_layers": 0,
           "bias": 0.0, "date_effects": False, "seasonal_harmonics": 0,
           "train": {"steps": 1000, "seed": 0}}  # everything else: the defaults
    best = train_model(pixels, "m", cfg, tmp_path / "m", device="cpu")
    model, _ = load_model(best, device="cpu")
    learned = float(model.prior.kernel.base_kernel.lengthscale.reshape(-1)[0])
    assert abs(learned - lengthscale) / lengthscale < 0.25, learned
