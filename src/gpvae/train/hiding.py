"""Training-time hiding of sites: what makes a GP-VAE learn to fill gaps.

Each step, per series and sensor, a random share U(0, ``max_fraction``) of the observed dates
and, with probability ``gap_probability``, every observed date in one window of U(0,
``max_gap_days``) days lose their sites: q(z) is the posterior given the other dates while
the likelihood still scores every observation. The ELBO stays a lower bound on log p(x) (it
holds for any q), and its reconstruction term now rewards predicting dates the encoder did
not see, from the pixel's other dates, the other sensors, the season and the date effects
(the masked-training idea of denoising autoencoders and neural processes). At least one date
of every series keeps its site.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gpvae.models.batch import Batch


@dataclass(frozen=True)
class SiteHiding:
    """Distribution of the dates hidden from the encoder at each training step."""

    max_fraction: float = 0.3
    max_gap_days: float = 90.0
    gap_probability: float = 0.5

    def draw(self, t: Tensor, obs: Tensor, generator: torch.Generator) -> Tensor:
        """(B, N) bool: dates to hide among ``obs`` for dates t (B, N) (CPU generator)."""
        b, n = t.shape
        t, obs = t.detach().cpu().float(), obs.cpu()

        def u(*shape: int) -> Tensor:
            return torch.rand(*shape, generator=generator)

        hide = (u(b, n) < u(b, 1) * self.max_fraction) & obs
        inf = torch.full_like(t, float("inf"))
        first = torch.where(obs, t, inf).min(1, keepdim=True).values
        last = torch.where(obs, t, -inf).max(1, keepdim=True).values
        first = torch.where(torch.isfinite(first), first, torch.zeros_like(first))
        last = torch.where(torch.isfinite(last), last, torch.zeros_like(last))
        length = u(b, 1) * self.max_gap_days
        start = first - length + u(b, 1) * (last - first + length)
        window = (t >= start) & (t < start + length) & (u(b, 1) < self.gap_probability)
        hide = hide | (window & obs)
        # keep the first observed date of a series that would lose every site
        lost = ~(obs & ~hide).any(1)
        keep = torch.zeros_like(hide)
        keep[torch.arange(b), obs.float().argmax(1)] = True
        return hide & ~(keep & lost[:, None])

    def hide(self, batch: Batch, sensors: list[str], generator: torch.Generator
             ) -> dict[str, Tensor]:
        """Sensor -> (B, N_s) bool hiding masks on the batch's device."""
        out = {}
        for s in sensors:
            sb = batch.sensors[s]
            obs = sb.obs & sb.m.any(-1)
            out[s] = self.draw(sb.t, obs, generator).to(sb.t.device)
        return out


def step_generator(seed: int, step: int) -> torch.Generator:
    """A CPU generator that depends on (seed, step) only (resumable without its state)."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(step))
