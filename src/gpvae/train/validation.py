"""The validation score that stops training: gap filling of held-out validation observations.

Validation series (at most ``max_series``, a seeded subset of the ``val`` split) get the
gap-filling protocol of the evaluation (``gpvae.data.hiding.hide_series``: one contiguous gap
plus a random share of the dates, on the target sensor); the model sees them with those
observations removed and is scored by the mean absolute error of its predictive mean there,
in standardised units averaged over bands (``gap_mae``). The ELBO of the same series (with
the held-out entries removed) is logged beside it, and the number of active latent units
(Burda et al. 2016: dimensions whose posterior mean varies across series, variance > 0.01).
A model without an optical or index sensor is scored by its negative validation ELBO.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from gpvae.data.dataset import PixelDataset
from gpvae.data.hiding import hide_series
from gpvae.device import autocast, fixed_rng

#: Posterior-mean variance across series above which a latent dimension counts as active.
ACTIVE_THRESHOLD = 0.01
#: Dates at which the latent is read for the active-unit count, spread over the span.
ACTIVE_DATES = 8


class ValidationGapfill:
    """Held-out observations of validation series and the model's score on them."""

    def __init__(self, dataset: PixelDataset, indices: np.ndarray, sensor: str | None, *,
                 max_series: int = 1024, seed: int = 0, batch_size: int = 256,
                 random_fraction: float = 0.2, gap_days: tuple[float, float] = (30.0, 60.0),
                 span_days: float = 365.0) -> None:
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size > max_series:
            idx = np.sort(np.random.default_rng(seed).choice(idx, max_series, replace=False))
        self.dataset, self.indices, self.sensor = dataset, idx, sensor
        self.seed, self.batch_size = int(seed), int(batch_size)
        self.span_days = float(span_days)
        self.hidden: np.ndarray | None = None
        if sensor is None:
            return
        days = dataset.times[sensor]
        hidden = np.zeros((idx.size, days.size), dtype=bool)
        for start in range(0, idx.size, 4096):
            sel = idx[start:start + 4096]
            observed = ~np.isnan(dataset.read(sensor, sel)).all(-1)
            for j, i in enumerate(sel):
                rng = np.random.default_rng([self.seed, int(i)])
                hidden[start + j] = hide_series(days - dataset.origin[i], observed[j], rng,
                                                random_fraction=random_fraction,
                                                gap_days=gap_days)[0]
        self.hidden = hidden

    @property
    def num_hidden(self) -> int:
        return 0 if self.hidden is None else int(self.hidden.sum())

    def score(self, model: torch.nn.Module, device: torch.device, *, num_samples: int = 1,
              mixed_precision: bool = False) -> dict[str, float]:
        """``elbo``, ``recon``, ``kl`` (per series), ``gap_mae`` (NaN without a target) and
        ``active_units`` of ``model`` on the validation series (common random numbers)."""
        model.eval()
        sums = {"elbo": 0.0, "recon": 0.0, "kl": 0.0}
        abs_err, count, means = 0.0, 0, []
        norm = self.dataset.normalisation
        q = torch.linspace(0.0, self.span_days, ACTIVE_DATES)
        with torch.no_grad(), fixed_rng(self.seed + 1_000_003, device):
            for start in range(0, self.indices.size, self.batch_size):
                sel = self.indices[start:start + self.batch_size]
                hide = None if self.hidden is None else self.hidden[start:start + sel.size]
                batch = self.dataset.batch(sel, None if hide is None else {self.sensor: hide})
                batch = batch.to(device)
                with autocast(device, mixed_precision):
                    terms = model.elbo(batch, num_samples=num_samples)
                for key in sums:
                    sums[key] += float(getattr(terms, key).float().sum())
                mean, _ = model.latent(batch, q.to(device).expand(sel.size, -1))
                means.append(mean.float().cpu())
                if hide is None or not hide.any():
                    continue
                cols = np.flatnonzero(hide.any(0))
                days = self.dataset.times[self.sensor][cols]
                tq = torch.as_tensor(days[None, :] - self.dataset.origin[sel][:, None],
                                     dtype=torch.float32, device=device)
                pred, _ = model.reconstruct(batch, self.sensor, tq, num_samples=8)
                target = norm.normalise(self.sensor, self.dataset.read(self.sensor, sel)[:, cols])
                keep = hide[:, cols, None] & ~np.isnan(target)
                err = np.abs(pred.double().cpu().numpy() - target)[keep]
                abs_err += float(err.sum())
                count += int(err.size)
        n = max(self.indices.size, 1)
        out = {key: value / n for key, value in sums.items()}
        out["gap_mae"] = abs_err / count if count else math.nan
        spread = torch.cat(means).var(0).mean(0) if means else torch.zeros(0)
        out["active_units"] = float((spread > ACTIVE_THRESHOLD).sum())
        return out

    def criterion(self, scores: dict[str, float]) -> float:
        """What early stopping minimises: ``gap_mae``, else the negative ELBO."""
        gap = scores.get("gap_mae", math.nan)
        return gap if math.isfinite(gap) else -scores["elbo"]
