"""The gap-filling hiding protocol (contracts.md section 5): which clear S2 dates to hide.

Per test sample (its own random stream ``default_rng([seed, sample index])``, so the choice
does not depend on which other samples are processed):

1. one contiguous gap of length L ~ U(gap_days) days starting at a randomly chosen observed
   date (among those at least L days before the last observed date, else the first one):
   every observed date in [start, start + L) is hidden;
2. then ``round(random_fraction * n)`` more of the n observed dates, uniformly among those not
   in the gap.

Only observed dates (some S2 band not NaN) are ever hidden, and at least one observed date is
always kept; a series with fewer than 2 observed dates is left untouched.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from gpvae import to_days
from gpvae.data.dataset import year_origin
from gpvae.errors import InputError
from gpvae.io.atomic import atomic_path
from gpvae.io.pixels import open_pixels

log = logging.getLogger(__name__)

#: Samples read from disk at once.
BLOCK = 2048


def hide_series(t: np.ndarray, observed: np.ndarray, rng: np.random.Generator, *,
                random_fraction: float, gap_days: tuple[float, float]
                ) -> tuple[np.ndarray, float, float]:
    """Hiding mask (T,) of one series with dates ``t`` (increasing) and ``observed`` (T,) bool,
    plus the gap's start day and length (NaN, 0 when nothing is hidden)."""
    hide = np.zeros(t.shape, dtype=bool)
    obs = np.flatnonzero(observed)
    if obs.size < 2:
        return hide, float("nan"), 0.0
    length = float(rng.uniform(*gap_days))
    t_obs = t[obs]
    starts = obs[t_obs <= t_obs[-1] - length]
    start = t[rng.choice(starts)] if starts.size else t_obs[0]
    gap = obs[(t_obs >= start) & (t_obs < start + length)]
    if gap.size >= obs.size:  # keep at least one observation: drop the gap's last date
        gap = gap[:-1]
    hide[gap] = True
    rest = np.setdiff1d(obs, gap)
    k = min(int(round(random_fraction * obs.size)), rest.size - 1)
    if k > 0:
        hide[rng.choice(rest, size=k, replace=False)] = True
    return hide, float(start), length


def make_hidden(pixels: Path, out: Path, *, random_fraction: float = 0.2,
                gap_days: tuple[float, float] = (30, 60), seed: int = 0, split: str = "test",
                max_samples: int | None = None) -> Path:
    """Write ``hidden.nc``: ``hidden_S2(sample, time_S2)`` uint8 (1 = hidden) over the samples
    of ``split`` (at most ``max_samples``, a seeded random subset), with per-sample
    ``gap_start_day`` (days since Jan 1 of the sample's year) and ``gap_length_days``."""
    lo, hi = (float(g) for g in gap_days)
    if not 0.0 <= random_fraction < 1.0 or not 0.0 < lo <= hi:
        raise InputError(f"bad hiding settings random_fraction={random_fraction}, "
                         f"gap_days={gap_days}", field="gapfill",
                         fix="use 0 <= random_fraction < 1 and 0 < gap_days[0] <= gap_days[1]")
    with open_pixels(pixels) as ds:
        if "values_S2" not in ds:
            raise InputError("pixel dataset has no S2 values to hide", file=pixels,
                             field="values_S2", fix="sample S2 to evaluate gap filling")
        idx = np.flatnonzero(ds["split"].values.astype(str) == split)
        if idx.size == 0:
            raise InputError(f"no sample in split {split!r}", file=pixels, field="split",
                             fix="check the sampling stage's split fractions")
        if max_samples is not None and idx.size > max_samples:
            idx = np.sort(np.random.default_rng(seed).choice(idx, max_samples, replace=False))
        days = to_days(ds["time_S2"].values)
        origin = year_origin(ds["year"].values[idx])
        hidden = np.zeros((idx.size, days.size), dtype=np.uint8)
        gap_start = np.full(idx.size, np.nan)
        gap_length = np.zeros(idx.size)
        num_observed = 0
        blocks = range(0, idx.size, BLOCK)
        for b0 in tqdm(blocks, desc="hiding", unit="block", disable=not sys.stderr.isatty()):
            sel = idx[b0:b0 + BLOCK]
            observed = (~np.isnan(ds["values_S2"].isel(sample=sel).values)).any(-1)
            num_observed += int(observed.sum())
            for j, (i, o) in enumerate(zip(sel, observed, strict=True)):
                k = b0 + j
                rng = np.random.default_rng([seed, int(i)])
                h, start, length = hide_series(days - origin[k], o, rng,
                                               random_fraction=random_fraction,
                                               gap_days=(lo, hi))
                hidden[k], gap_start[k], gap_length[k] = h, start, length
        out_ds = xr.Dataset(
            {"hidden_S2": (("sample", "time_S2"), hidden,
                           {"long_name": "1 = clear S2 observation hidden from every model"}),
             "gap_start_day": ("sample", gap_start,
                               {"description": "days since Jan 1 of the sample's year"}),
             "gap_length_days": ("sample", gap_length,
                                 {"description": "gap length in days (0: nothing hidden)"})},
            coords={"sample": idx.astype(np.int64), "time_S2": ds["time_S2"].values},
            attrs={"seed": int(seed), "random_fraction": float(random_fraction),
                   "gap_days_min": lo, "gap_days_max": hi, "split": split,
                   "pixels": str(pixels),
                   "protocol": "one contiguous gap at an observed date + random fraction of "
                               "the observed dates; only observed dates hidden; >= 1 kept"})
    log.info("hidden %d of %d observed S2 dates over %d %s samples", int(hidden.sum()),
             num_observed, idx.size, split)
    with atomic_path(out) as tmp:
        out_ds.to_netcdf(tmp, engine="netcdf4")
    return Path(out)


def open_hidden(path: Path) -> xr.DataArray:
    """The ``hidden_S2`` mask of a ``hidden.nc`` (loaded), with its attributes."""
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            hidden = ds["hidden_S2"].load()
            hidden.attrs.update(ds.attrs)
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"cannot read the hiding mask ({err})", file=path, field="hidden_S2",
                         fix="re-run make_hidden (gapfill stage)") from err
    return hidden
