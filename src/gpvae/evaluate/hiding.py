"""The gap-filling hiding protocol (contracts.md section 5): which clear dates to hide.

One sensor's observations are hidden (``sensor``; default the first optical or index sensor
of the pixel dataset, e.g. S2), on any span: dates are days since each sample's time origin.

Per test sample (its own random stream ``default_rng([seed, sample index])``, so the choice
does not depend on which other samples are processed):

1. one contiguous gap of length L ~ U(gap_days) days starting at a randomly chosen observed
   date (among those at least L days before the last observed date, else the first one):
   every observed date in [start, start + L) is hidden;
2. then ``round(random_fraction * n)`` more of the n observed dates, uniformly among those not
   in the gap.

Only observed dates (some band not NaN) are ever hidden, and at least one observed date is
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
from gpvae.data.dataset import dataset_info, sample_origin
from gpvae.data.hiding import hide_series
from gpvae.errors import InputError
from gpvae.io.atomic import atomic_path
from gpvae.io.pixels import open_pixels

log = logging.getLogger(__name__)

#: Samples read from disk at once.
BLOCK = 2048


def gapfill_sensor(pixels: Path, sensor: str | None = None) -> str:
    """The sensor gap filling is about: ``sensor`` if given (checked), else the pixel
    dataset's first optical or index sensor (e.g. S2)."""
    info = dataset_info(pixels)
    if sensor is None:
        sensor = info.first_of_kind()
        if sensor is None:
            raise InputError(f"no optical or index sensor among {info.sensors} to gap-fill",
                             file=pixels, field="gapfill.sensor",
                             fix="name the sensor to evaluate in gapfill.sensor")
    if sensor not in info.sensors:
        raise InputError(f"the pixel dataset has no sensor {sensor} (it has {info.sensors})",
                         file=pixels, field="gapfill.sensor",
                         fix=f"choose gapfill.sensor among {info.sensors}")
    return sensor


def make_hidden(pixels: Path, out: Path, *, random_fraction: float = 0.2,
                gap_days: tuple[float, float] = (30, 60), seed: int = 0, split: str = "test",
                max_samples: int | None = None, sensor: str | None = None) -> Path:
    """Write ``hidden.nc``: ``hidden_<sensor>(sample, time_<sensor>)`` uint8 (1 = hidden;
    ``sensor`` see :func:`gapfill_sensor`) over the samples of ``split`` (at most
    ``max_samples``, a seeded random subset), with per-sample ``gap_start_day`` (days since
    the sample's time origin) and ``gap_length_days``."""
    lo, hi = (float(g) for g in gap_days)
    if not 0.0 <= random_fraction < 1.0 or not 0.0 < lo <= hi:
        raise InputError(f"bad hiding settings random_fraction={random_fraction}, "
                         f"gap_days={gap_days}", field="gapfill",
                         fix="use 0 <= random_fraction < 1 and 0 < gap_days[0] <= gap_days[1]")
    s = gapfill_sensor(pixels, sensor)
    with open_pixels(pixels) as ds:
        idx = np.flatnonzero(ds["split"].values.astype(str) == split)
        if idx.size == 0:
            raise InputError(f"no sample in split {split!r}", file=pixels, field="split",
                             fix="check the sampling stage's split fractions")
        if max_samples is not None and idx.size > max_samples:
            idx = np.sort(np.random.default_rng(seed).choice(idx, max_samples, replace=False))
        days = to_days(ds[f"time_{s}"].values)
        origin = sample_origin(ds, idx)
        hidden = np.zeros((idx.size, days.size), dtype=np.uint8)
        gap_start = np.full(idx.size, np.nan)
        gap_length = np.zeros(idx.size)
        num_observed = 0
        blocks = range(0, idx.size, BLOCK)
        for b0 in tqdm(blocks, desc="hiding", unit="block", disable=not sys.stderr.isatty()):
            sel = idx[b0:b0 + BLOCK]
            observed = (~np.isnan(ds[f"values_{s}"].isel(sample=sel).values)).any(-1)
            num_observed += int(observed.sum())
            for j, (i, o) in enumerate(zip(sel, observed, strict=True)):
                k = b0 + j
                rng = np.random.default_rng([seed, int(i)])
                h, start, length = hide_series(days - origin[k], o, rng,
                                               random_fraction=random_fraction,
                                               gap_days=(lo, hi))
                hidden[k], gap_start[k], gap_length[k] = h, start, length
        out_ds = xr.Dataset(
            {f"hidden_{s}": (("sample", f"time_{s}"), hidden,
                             {"long_name": f"1 = clear {s} observation hidden from every "
                                           "model"}),
             "gap_start_day": ("sample", gap_start,
                               {"description": "days since the sample's time origin"}),
             "gap_length_days": ("sample", gap_length,
                                 {"description": "gap length in days (0: nothing hidden)"})},
            coords={"sample": idx.astype(np.int64), f"time_{s}": ds[f"time_{s}"].values},
            attrs={"sensor": s, "seed": int(seed), "random_fraction": float(random_fraction),
                   "gap_days_min": lo, "gap_days_max": hi, "split": split,
                   "pixels": str(pixels),
                   "protocol": "one contiguous gap at an observed date + random fraction of "
                               "the observed dates; only observed dates hidden; >= 1 kept"})
    log.info("hidden %d of %d observed %s dates over %d %s samples", int(hidden.sum()),
             num_observed, s, idx.size, split)
    with atomic_path(out) as tmp:
        out_ds.to_netcdf(tmp, engine="netcdf4")
    return Path(out)


def open_hidden(path: Path) -> xr.DataArray:
    """The ``hidden_<sensor>`` mask of a ``hidden.nc`` (loaded), with its attributes (the
    ``sensor`` attribute names the sensor)."""
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            sensor = str(ds.attrs.get("sensor", "S2"))
            hidden = ds[f"hidden_{sensor}"].load()
            hidden.attrs.update(ds.attrs)
            hidden.attrs["sensor"] = sensor
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"cannot read the hiding mask ({err})", file=path,
                         field="hidden_<sensor>",
                         fix="re-run make_hidden (gapfill stage)") from err
    return hidden
