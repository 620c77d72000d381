"""Training loop: metrics, early stopping, exact resume, checkpoint safety (gpvae.train.loop)."""

from __future__ import annotations

import copy
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures_pixels import write_pixels
from torch import nn

import gpvae.models.build
from gpvae.data.checkpoint import read_checkpoint
from gpvae.errors import InputError
from gpvae.models.build import load_model
from gpvae.models.vae import ElboTerms
from gpvae.train.loop import train_model

TIMING = ["seconds"]


class PerDateLinearVAE(nn.Module):
    """Stand-in model: per-date linear Gaussian VAE, N(0, I) prior (Kingma & Welling 2014)."""

    def __init__(self, sensor_bands: dict[str, list[str]], latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.enc = nn.ModuleDict({s: nn.Linear(len(b), 2 * latent_dim)
                                  for s, b in sensor_bands.items()})
        self.dec = nn.ModuleDict({s: nn.Linear(latent_dim, len(b))
                                  for s, b in sensor_bands.items()})
        self.log_noise = nn.ParameterDict({s: nn.Parameter(torch.zeros(len(b)))
                                           for s, b in sensor_bands.items()})

    def elbo(self, batch, num_samples: int = 1) -> ElboTerms:
        recon = kl = 0.0
        for s, sb in batch.sensors.items():
            mu, logv = self.enc[s](sb.x).chunk(2, dim=-1)
            eps = torch.randn((num_samples, *mu.shape), device=mu.device, dtype=mu.dtype)
            xhat = self.dec[s](mu + torch.exp(0.5 * logv) * eps)
            noise = torch.exp(2 * self.log_noise[s])
            ll = -0.5 * ((sb.x - xhat) ** 2 / noise + torch.log(2 * math.pi * noise))
            recon = recon + (ll.mean(0) * sb.m).sum((1, 2))
            kl = kl + (0.5 * (logv.exp() + mu**2 - 1 - logv).sum(-1) * sb.obs).sum(1)
        return ElboTerms(recon - kl, recon, kl)

    def latent(self, batch, t_query):
        shape = (*t_query.shape, self.latent_dim)
        return t_query.new_zeros(shape), t_query.new_ones(shape)

    def reconstruct(self, batch, sensor, t_query, num_samples: int = 32):
        mean, var = self.latent(batch, t_query)
        return self.dec[sensor](mean), torch.exp(self.log_noise[sensor]).expand(
            *t_query.shape, -1)

    def hyperparameters(self) -> dict[str, float]:
        return {f"noise_std_{s}": float(p.detach().exp().mean()) for s, p in self.log_noise.items()}


def _build_standin(cfg, sensor_bands, name=None, *, span=None, data=None):
    return PerDateLinearVAE(sensor_bands, cfg["latent_dim"])


@pytest.fixture
def standin(monkeypatch):
    monkeypatch.setattr(gpvae.models.build, "build_model", _build_standin)


@pytest.fixture(scope="module")
def pixels(tmp_path_factory) -> Path:
    return write_pixels(tmp_path_factory.mktemp("px") / "pixels.nc", n_samples=48,
                        years=(2021, 2022), seed=1)


def _cfg(**train) -> dict:
    return {"type": "gpvae", "prior": "exact", "sensors": ["S2", "S1_ASC", "S1_DES"],
            "latent_dim": 3, "hidden": 16,
            "train": {"epochs": 4, "batch_size": 8, "lr": 0.02, "patience": 0, "seed": 0,
                      **train}}


def _metrics(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "metrics.csv").drop(columns=TIMING)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["model_state"]


def test_metrics_rows_finite_and_val_improves(standin, pixels, tmp_path):
    best = train_model(pixels, "m", _cfg(epochs=8), tmp_path / "m")
    assert best == tmp_path / "m" / "best.pt" and best.exists()
    df = pd.read_csv(tmp_path / "m" / "metrics.csv")
    assert len(df) == 16
    assert df.groupby("split").epoch.apply(list).to_dict() == {
        "train": list(range(1, 9)), "val": list(range(1, 9))}
    for col in ["step", "elbo", "recon", "kl", "seconds", "lr", "noise_std_S2"]:
        assert df[col].notna().all() and df[col].map(math.isfinite).all(), col
    assert (df.kl >= 0).all()
    val = df[df.split == "val"]
    assert val.elbo.iloc[-1] > val.elbo.iloc[0] + 1.0
    assert val.gap_mae.map(math.isfinite).all() and (val.gap_mae > 0).all()
    # best.pt holds the validation with the lowest held-out gap-filling error
    ck = read_checkpoint(best)
    assert ck["best_step"] == int(val.step.iloc[val.gap_mae.to_numpy().argmin()])
    assert (tmp_path / "m" / "normalisation.json").exists()


def test_early_stopping(standin, pixels, tmp_path):
    # lr so small that parameters do not move: the val score never improves after the first
    train_model(pixels, "m", _cfg(epochs=20, lr=1e-12, patience=2), tmp_path / "m")
    df = pd.read_csv(tmp_path / "m" / "metrics.csv")
    assert df.epoch.max() == 3
    state = read_checkpoint(tmp_path / "m" / "checkpoint.pt")
    per_epoch = int(state["step"] / state["epoch"])
    assert state["stopped"] and state["bad_validations"] == 2
    assert state["best_step"] == per_epoch
    # resuming a stopped run does not train further
    train_model(pixels, "m", _cfg(epochs=20, lr=1e-12, patience=2), tmp_path / "m")
    assert pd.read_csv(tmp_path / "m" / "metrics.csv").epoch.max() == 3


def test_resume_after_kill_reproduces_uninterrupted_run(standin, pixels, tmp_path):
    cfg = _cfg(epochs=4, num_samples=2)
    train_model(pixels, "m", cfg, tmp_path / "straight")
    train_model(pixels, "m", cfg, tmp_path / "killed", max_epochs=2)
    assert read_checkpoint(tmp_path / "killed" / "checkpoint.pt")["epoch"] == 2
    train_model(pixels, "m", cfg, tmp_path / "killed")
    a, b = (_weights(tmp_path / d / "checkpoint.pt") for d in ("straight", "killed"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    pd.testing.assert_frame_equal(_metrics(tmp_path / "straight"), _metrics(tmp_path / "killed"))
    a, b = (_weights(tmp_path / d / "best.pt") for d in ("straight", "killed"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_metrics_other_seed_differs(standin, pixels, tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        train_model(pixels, "m", _cfg(epochs=2, seed=seed), tmp_path / name)
    pd.testing.assert_frame_equal(_metrics(tmp_path / "a"), _metrics(tmp_path / "b"))
    assert not _metrics(tmp_path / "a").equals(_metrics(tmp_path / "c"))


def test_corrupted_checkpoint_is_an_input_error_and_kept(standin, pixels, tmp_path):
    out = tmp_path / "m"
    train_model(pixels, "m", _cfg(epochs=1), out)
    ckpt = out / "checkpoint.pt"
    for garbage in (b"not a checkpoint at all", ckpt.read_bytes()[:2000]):
        ckpt.write_bytes(garbage)
        with pytest.raises(InputError, match="checkpoint.pt"):
            train_model(pixels, "m", _cfg(epochs=2), out)
        assert ckpt.read_bytes() == garbage
    # without resume, training starts over and replaces the bad file
    train_model(pixels, "m", _cfg(epochs=1), out, resume=False)
    assert read_checkpoint(ckpt)["epoch"] == 1


def test_mismatched_config_on_resume(standin, pixels, tmp_path):
    out = tmp_path / "m"
    train_model(pixels, "m", _cfg(epochs=1), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    other = _cfg(epochs=1)
    other["latent_dim"] = 5
    with pytest.raises(InputError, match="different model config") as err:
        train_model(pixels, "m", other, out)
    assert "checkpoint.pt" in str(err.value)
    with pytest.raises(InputError, match="model_name"):
        train_model(pixels, "other_name", _cfg(epochs=1), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_missing_sensor_in_dataset(standin, tmp_path):
    path = write_pixels(tmp_path / "s2.nc", n_samples=8, sensors=("S2",))
    with pytest.raises(InputError, match="no sensor S1_ASC") as err:
        train_model(path, "m", _cfg(), tmp_path / "m")
    assert "s2.nc" in str(err.value)
    assert not (tmp_path / "m" / "checkpoint.pt").exists()


def test_bad_train_settings(standin, pixels, tmp_path):
    with pytest.raises(InputError, match="train.batch_size"):
        train_model(pixels, "m", _cfg(batch_size=0), tmp_path / "m")
    with pytest.raises(InputError, match="learning_rate"):
        train_model(pixels, "m", _cfg(learning_rate=0.1), tmp_path / "m")


def test_workers_give_identical_results(standin, pixels, tmp_path):
    train_model(pixels, "m", _cfg(epochs=1, num_workers=1), tmp_path / "w")
    train_model(pixels, "m", _cfg(epochs=1), tmp_path / "s")
    pd.testing.assert_frame_equal(_metrics(tmp_path / "w"), _metrics(tmp_path / "s"))


def test_load_model_roundtrip(standin, pixels, tmp_path):
    best = train_model(pixels, "m", _cfg(epochs=2), tmp_path / "m")
    moved = tmp_path / "elsewhere" / "best.pt"
    moved.parent.mkdir()
    shutil.copy(best, moved)
    model, meta = load_model(moved, device="cpu")
    assert meta["model_name"] == "m" and meta["model_cfg"] == _cfg(epochs=2)
    assert meta["sensor_bands"]["S1_ASC"] == ["VV", "VH"]
    assert set(meta["normalisation"].sensors) == {"S2", "S1_ASC", "S1_DES"}
    saved = read_checkpoint(best)["model_state"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k])
    assert not model.training


def _gp_cfg(prior: str) -> dict:
    return {"type": "gpvae", "prior": prior, "kernel": "matern32", "sensors": ["S2", "S1_ASC"],
            "latent_dim": 2, "hidden": 16,
            "train": {"epochs": 2, "batch_size": 12, "lr": 0.01, "seed": 0}}


def test_real_gpvae_trains_two_epochs(pixels, tmp_path):
    cfg = _gp_cfg("exact")
    best = train_model(pixels, "gp", copy.deepcopy(cfg), tmp_path / "gp")
    df = pd.read_csv(tmp_path / "gp" / "metrics.csv")
    assert len(df) == 4
    assert df[["elbo", "recon", "kl"]].map(math.isfinite).all().all()
    model, meta = load_model(best, device="cpu")
    assert meta["model_cfg"] == cfg
    hyper = model.hyperparameters()
    assert set(hyper) <= set(df.columns)
    assert any("lengthscale" in k for k in hyper)
    for k, v in hyper.items():  # best.pt = the best validation; its values are logged
        assert v == pytest.approx(df[(df.step == meta["best_step"])][k].iloc[0], rel=1e-6)


def test_real_gpvae_resume_reproduces(pixels, tmp_path):
    cfg = _gp_cfg("markov")
    train_model(pixels, "gp", cfg, tmp_path / "straight")
    train_model(pixels, "gp", cfg, tmp_path / "killed", max_epochs=1)
    train_model(pixels, "gp", cfg, tmp_path / "killed")
    a, b = (_weights(tmp_path / d / "checkpoint.pt") for d in ("straight", "killed"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    pd.testing.assert_frame_equal(_metrics(tmp_path / "straight"), _metrics(tmp_path / "killed"))


def test_run_id_ignores_resource_settings_only():
    """in_memory_mb / num_workers change speed, not results: same run id; lr: another run."""
    from gpvae.train.loop import run_id

    cfg = {"type": "gpvae", "prior": "markov", "train": {"epochs": 2, "lr": 0.01}}
    base = run_id("m", cfg)
    fast = copy.deepcopy(cfg)
    fast["train"].update(in_memory_mb=0, num_workers=2)
    assert run_id("m", fast) == base
    other = copy.deepcopy(cfg)
    other["train"]["lr"] = 0.02
    assert run_id("m", other) != base
    assert cfg["train"] == {"epochs": 2, "lr": 0.01}  # the caller's config is not modified


def test_held_out_domain_is_never_trained_on(pixels, tmp_path):
    """exclude=(year, 2021): no 2021 sample in training, validation, normalisation or the
    date effects; another run folder than the full model's."""
    from gpvae.data.dataset import PixelDataset
    from gpvae.data.summary import KEY_STRIDE
    from gpvae.train.loop import run_id

    cfg = _gp_cfg("markov")
    cfg["train"] = {"steps": 4, "batch_size": 12, "validate_every": 2}
    best = train_model(pixels, "gp", cfg, tmp_path / "m", exclude=("year", 2021))
    state = read_checkpoint(best)
    with PixelDataset(pixels, {"S2": ["B04"]}) as ds:
        train = ds.indices("train")
        keep = train[ds.years[train] != 2021]
        days_2021 = ds.times["S2"][(ds.times["S2"] >= 7671) & (ds.times["S2"] < 8036)]
    assert state["normalisation"]["meta"]["num_samples"] == keep.size < train.size
    days = np.asarray(state["data_summary"]["date_keys"]["S2"]) % KEY_STRIDE
    assert not np.isin(days, np.floor(days_2021)).any()
    assert state["excluded"] == ["year", "2021"] or state["excluded"] == ("year", "2021")
    assert run_id("gp", cfg, pixels, ("year", 2021)) != run_id("gp", cfg, pixels)
