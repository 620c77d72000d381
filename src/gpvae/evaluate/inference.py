"""Run a trained model on samples of the pixel dataset: batches, latents, predictions.

Shared by the embedding, gap-filling and tile stages. Inputs are read lazily per batch and
normalised with the checkpoint's statistics; entries flagged in a hiding mask (of the sensor it
names) are removed before compaction, so they never reach the model.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from gpvae.data.batch import Batch
from gpvae.data.dataset import PixelDataset
from gpvae.data.normalise import Normalisation
from gpvae.device import fixed_rng
from gpvae.errors import InputError

log = logging.getLogger(__name__)

#: Upper bound on batch x query x latent-sample elements decoded at once (memory cap).
MAX_DECODE_ELEMENTS = 2 ** 21
#: ln(10) / 10: dB -> natural-log scale of linear backscatter.
DB_TO_LN = float(np.log(10.0) / 10.0)


def hidden_sensor(hidden: xr.DataArray) -> str:
    """The sensor a hiding mask ``hidden_<sensor>(sample, time_<sensor>)`` is about."""
    return str(hidden.attrs.get("sensor") or str(hidden.dims[1]).removeprefix("time_"))


def hidden_for(hidden: xr.DataArray, indices: np.ndarray, num_times: int, *,
               file: object = None) -> np.ndarray:
    """The (len(indices), num_times) bool hiding mask of samples ``indices`` (False for samples
    absent from ``hidden``)."""
    sensor = hidden_sensor(hidden)
    dims = ("sample", f"time_{sensor}")
    if hidden.dims != dims or hidden.sizes[dims[1]] != num_times:
        raise InputError(f"hidden mask has dims {dict(hidden.sizes)}, expected (sample, "
                         f"{dims[1]}={num_times})", file=file, field=f"hidden_{sensor}",
                         fix="recompute hidden.nc from this pixel dataset (make_hidden)")
    return hidden.reindex(sample=np.asarray(indices), fill_value=0).values.astype(bool)


def iterate_pixels(pixels: Path, meta: dict, indices: np.ndarray, *, batch_size: int = 512,
                   hidden: xr.DataArray | None = None) -> Iterator[tuple[np.ndarray, Batch]]:
    """Yield (sample indices, normalised Batch) over ``indices`` in order; entries of the
    hidden sensor where ``hidden`` (sample, time_<sensor>) is 1 are set missing before
    compaction (never seen)."""
    norm: Normalisation = meta["normalisation"]
    indices = np.asarray(indices, dtype=np.int64)
    with PixelDataset(pixels, meta["sensor_bands"], norm) as ds:
        if meta.get("data_summary") is not None:
            ds.use_summary(meta["data_summary"])
        hide, hidden_s = None, None if hidden is None else hidden_sensor(hidden)
        if hidden_s in ds.sensor_bands:
            hide = hidden_for(hidden, indices, ds.times[hidden_s].size, file=pixels)
        starts = range(0, indices.size, batch_size)
        for start in tqdm(starts, desc="batches", unit="batch", disable=not sys.stderr.isatty()):
            idx = indices[start:start + batch_size]
            h = None if hide is None else {hidden_s: hide[start:start + batch_size]}
            yield idx, ds.batch(idx, h)


def model_device(model: torch.nn.Module) -> torch.device:
    """Device of the model's parameters (CPU for a parameter-free model)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def has_observation(batch: Batch) -> np.ndarray:
    """(B,) bool: the sample has at least one observed band on some date of some sensor."""
    out = torch.zeros(batch.batch_size, dtype=torch.bool, device=batch.device)
    for sb in batch.sensors.values():
        out |= (sb.m & sb.obs.unsqueeze(-1)).flatten(1).any(1)
    return out.cpu().numpy()


def latent_moments(model: torch.nn.Module, batch: Batch, ref_days: np.ndarray
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and variance (B, R, L) of the latent at ``ref_days`` (days since each
    sample's time origin, the batch frame), as tensors on the model's device."""
    device = model_device(model)
    t = torch.as_tensor(np.asarray(ref_days, dtype=np.float32), device=device)
    t = t.unsqueeze(0).expand(batch.batch_size, -1)
    with torch.no_grad():
        return model.latent(batch.to(device), t)


def latent_arrays(batch: Batch, moments: tuple[torch.Tensor, torch.Tensor]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Latent moments as float32 arrays, NaN for samples with no observation at all."""
    mean = moments[0].float().cpu().numpy().copy()
    var = moments[1].float().cpu().numpy().copy()
    empty = ~has_observation(batch)
    mean[empty], var[empty] = np.nan, np.nan
    return mean, var


def latent_at(model: torch.nn.Module, batch: Batch, ref_days: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and variance (B, R, L) of the latent at ``ref_days`` (days since each
    sample's time origin, the batch frame); NaN for samples with no observation at all."""
    return latent_arrays(batch, latent_moments(model, batch, ref_days))


def lognormal_moments(mean_db: np.ndarray, std_db: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of 10^(X/10) for X ~ N(mean_db, std_db²): with a = ln10/10,
    E = exp(a m + a² s² / 2), Var = (exp(a² s²) - 1) E²."""
    a2s2 = (DB_TO_LN * std_db) ** 2
    mean = np.exp(DB_TO_LN * mean_db + 0.5 * a2s2)
    return mean, mean * np.sqrt(np.expm1(a2s2))


def observations_at(model: torch.nn.Module, batch: Batch, sensor: str, t_days: torch.Tensor,
                    normalisation: Normalisation, *, num_samples: int = 32, seed: int = 0,
                    latent: tuple[torch.Tensor, torch.Tensor] | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Predictive mean and std (B, Q, C) of ``sensor`` at ``t_days`` (B, Q, batch frame) in
    physical units, observation noise included. ``latent``: the latent moments (B, Q, L) at
    ``t_days`` when already computed (:func:`latent_moments`), so they are not recomputed.

    Identity-transformed sensors: the normalised moments scaled back (physical units). dB
    sensors (SAR): the Gaussian predictive in dB mapped to the lognormal mean and std of linear
    backscatter (:func:`lognormal_moments`). Monte-Carlo decoding uses a fixed seed
    (repeatable); queries are decoded in chunks of at most :data:`MAX_DECODE_ELEMENTS`
    elements.
    """
    device = model_device(model)
    batch = batch.to(device)
    t_days = torch.as_tensor(t_days, dtype=torch.float32, device=device)
    b, q = t_days.shape
    chunk = max(1, MAX_DECODE_ELEMENTS // max(b * max(num_samples, 1), 1))
    means, stds = [], []
    with torch.no_grad(), fixed_rng(seed, device):
        for q0 in range(0, q, chunk):
            tq = t_days[:, q0:q0 + chunk]
            if latent is None:
                m, s = model.reconstruct(batch, sensor, tq, num_samples)
            else:
                m, s = model.predict_observations(sensor, latent[0][:, q0:q0 + chunk],
                                                  latent[1][:, q0:q0 + chunk], tq, batch,
                                                  num_samples)
            means.append(m.double().cpu().numpy())
            stds.append(s.double().cpu().numpy())
    mean, std = normalisation.denormalise(sensor, np.concatenate(means, 1),
                                          np.concatenate(stds, 1))
    if normalisation.sensors[sensor].transform == "db":
        mean, std = lognormal_moments(mean, std)
    return mean, std


#: How each model family reads its latent at a reference date (the ``method`` attribute of
#: embeddings and tile products); ``{...}`` fields come from the model's resolved config.
LATENT_METHODS: dict[str, str] = {
    "gpvae": "Gaussian-process posterior mean and variance of the latent trajectory at each "
             "reference date, given every observation of the span ({prior_text}, {kernel} "
             "kernel)",
    "banded_gpvae": "banded-precision Gaussian-process posterior on a {grid_step_days:g}-day "
                    "grid (Fortuin et al. 2020), conditioned to each reference date",
    "iid_vae": "posterior of the observed date nearest each reference date (one latent per "
               "observation, N(0, I) prior)",
    "hivae": "moments of the posterior mixture at the observed date nearest each reference "
             "date (per-date latent, Gaussian-mixture prior)",
    "seq_vae": "one global latent per pixel and span (attention over all its dates), the same "
               "at every reference date",
}
#: The ``prior_text`` of :data:`LATENT_METHODS` per GP approximation.
PRIOR_TEXTS: dict[str, str] = {
    "exact": "exact prior: Cholesky on the pixel's dates",
    "sparse": "sparse prior: {num_inducing} inducing dates",
    "markov": "Markov prior: Kalman filter and RTS smoother",
}


def latent_method(model: torch.nn.Module) -> str:
    """How ``model`` reads the latent at a date, from its type and resolved config
    (:data:`LATENT_METHODS`), e.g. ``gpvae/markov: Gaussian-process posterior ...``."""
    cfg = dict(getattr(model, "config", None) or {})
    kind = str(cfg.get("type", type(model).__name__))
    prior = str(cfg.get("prior", ""))
    cfg["prior_text"] = PRIOR_TEXTS.get(prior, f"{prior} prior").format(**cfg)
    text = LATENT_METHODS.get(kind, "latent posterior at the reference dates").format(**cfg)
    return f"{kind}/{prior}: {text}" if kind == "gpvae" else f"{kind}: {text}"
