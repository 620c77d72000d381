"""Acquisition calendars: Sentinel-2 (S2A/S2B, ~5 days) and Sentinel-1 (S1A, 12 days/orbit)."""

from __future__ import annotations

import dataclasses

import numpy as np

from gpvae.scene.config import SceneConfig
from gpvae.scene.seeding import rng_for

DAY = np.timedelta64(1, "D")


@dataclasses.dataclass(frozen=True)
class Acquisitions:
    """Dates of one sensor series with per-date platform, orbit direction and relative orbit."""

    times: np.ndarray            # datetime64[ns], increasing
    platform: np.ndarray         # str
    orbit_direction: np.ndarray  # str ("" for S2)
    relative_orbit: np.ndarray   # int16

    def __len__(self) -> int:
        return len(self.times)

    @property
    def days(self) -> np.ndarray:
        """Calendar days (datetime64[D]) of the acquisitions."""
        return self.times.astype("datetime64[D]")


def _calendar_days(years: tuple[int, ...], offset: int, step: int) -> np.ndarray:
    """Days first_jan + offset + k*step that fall in one of ``years``."""
    start = np.datetime64(f"{years[0]}-01-01")
    end = np.datetime64(f"{years[-1] + 1}-01-01")
    days = np.arange(start + offset * DAY, end, step * DAY)
    year_of = days.astype("datetime64[Y]").astype(int) + 1970
    return days[np.isin(year_of, years)]


def s2_acquisitions(cfg: SceneConfig, tile: str) -> Acquisitions:
    """S2 dates: revisit ``s2_revisit_days`` from a per-tile offset, S2A/S2B alternating,
    ``s2_missing_fraction`` dropped, overpass ~10:30-11:00 UTC (fixed per tile, seconds jitter)."""
    rng = rng_for(cfg.seed, tile, "s2_dates")
    days = _calendar_days(cfg.years, int(rng.integers(cfg.s2_revisit_days)), cfg.s2_revisit_days)
    platform = np.where((np.arange(len(days)) + int(rng.integers(2))) % 2 == 0,
                        "SENTINEL2A", "SENTINEL2B")
    n_drop = int(round(cfg.s2_missing_fraction * len(days)))
    keep = np.sort(rng.permutation(len(days))[n_drop:])
    days, platform = days[keep], platform[keep]
    clock_s = rng.uniform(10.5 * 3600, 11.0 * 3600) + rng.uniform(-20, 20, len(days))
    times = (days.astype("datetime64[ns]")
             + np.round(clock_s * 1e3).astype("timedelta64[ms]")).astype("datetime64[ns]")
    return Acquisitions(times=times, platform=platform.astype(str),
                        orbit_direction=np.full(len(days), "", dtype=str),
                        relative_orbit=np.zeros(len(days), np.int16))


def s1_acquisitions(cfg: SceneConfig, tile: str, direction: str,
                    s2_days: np.ndarray) -> Acquisitions:
    """S1A dates of one orbit direction: a ``s1_revisit_days`` repeat (ASC ~17:45 UTC, DES
    ~06:00 UTC), shifted by one day where they would fall on a Sentinel-2 date of the tile."""
    rng = rng_for(cfg.seed, tile, "s1_dates")
    base = int(rng.integers(cfg.s1_revisit_days))
    half = cfg.s1_revisit_days // 2
    offset = base if direction == "ASC" else (base + half + int(rng.integers(0, 2)))
    days = _calendar_days(cfg.years, offset % cfg.s1_revisit_days, cfg.s1_revisit_days)
    clash = np.isin(days, np.asarray(s2_days).astype("datetime64[D]"))
    days = days + clash.astype(int) * DAY
    days = days[np.isin(days.astype("datetime64[Y]").astype(int) + 1970, cfg.years)]
    hour = 17.75 if direction == "ASC" else 6.0
    drng = rng_for(cfg.seed, tile, "s1_clock", direction)
    clock_s = hour * 3600 + drng.uniform(-600, 600) + drng.uniform(-5, 5, len(days))
    times = (days.astype("datetime64[ns]")
             + np.round(clock_s).astype("timedelta64[s]")).astype("datetime64[ns]")
    orbit = cfg.tiles[tile].s1_relative_orbits[direction]
    return Acquisitions(times=times, platform=np.full(len(days), "s1a"),
                        orbit_direction=np.full(len(days), direction),
                        relative_orbit=np.full(len(days), orbit, np.int16))
