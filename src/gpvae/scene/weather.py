"""Regional weather shared by all parcels of a tile: rain events and surface soil moisture
(bucket with exponential drying), which darken soils (S2) and brighten backscatter (S1)."""

from __future__ import annotations

import dataclasses

import numpy as np

import gpvae
from gpvae.scene.config import SceneConfig
from gpvae.scene.seeding import rng_for

#: Residual and saturated volumetric soil moisture (m3/m3) of the surface layer.
M_RES, M_SAT = 0.06, 0.42


def seasonal(doy: np.ndarray, winter: float, summer: float) -> np.ndarray:
    """Cosine seasonal cycle: ``winter`` in mid-January, ``summer`` in mid-July."""
    c = np.cos(2 * np.pi * (np.asarray(doy, float) - 15.0) / 365.25)
    return summer + (winter - summer) * (1 + c) / 2


@dataclasses.dataclass(frozen=True)
class Weather:
    """Daily rain (mm) and soil moisture on days ``day0 + k`` (days since gpvae.EPOCH)."""

    day0: float
    rain_mm: np.ndarray
    moisture: np.ndarray

    def moisture_at(self, t: np.ndarray) -> np.ndarray:
        """Soil moisture at times ``t`` (days since EPOCH), linearly interpolated."""
        k = np.arange(len(self.moisture)) + self.day0
        return np.interp(np.asarray(t, float), k, self.moisture)

    def rain_at(self, t: np.ndarray, window: float = 1.0) -> np.ndarray:
        """Rain (mm) over the ``window`` days ending at ``t`` (days since EPOCH)."""
        csum = np.concatenate([[0.0], np.cumsum(self.rain_mm)])
        k = np.arange(len(csum)) + self.day0
        t = np.asarray(t, float)
        return np.interp(t + 1, k, csum) - np.interp(t + 1 - window, k, csum)


def simulate_weather(cfg: SceneConfig, tile: str) -> Weather:
    """Rain as a seasonal Bernoulli-exponential process (wetter winters, rarer but heavier
    summer storms); moisture m' = -(m - M_RES)/tau + rain infiltration, tau ~4 d summer, ~16 d
    winter (one spin-up month before the first year)."""
    rng = rng_for(cfg.seed, tile, "weather")
    start = np.datetime64(f"{cfg.years[0]}-01-01") - np.timedelta64(31, "D")
    end = np.datetime64(f"{cfg.years[-1] + 1}-01-02")
    days = np.arange(start, end, np.timedelta64(1, "D"))
    doy = (days - days.astype("datetime64[Y]")).astype(int) + 1
    wet = rng.random(len(days)) < seasonal(doy, 0.42, 0.18)
    rain = np.where(wet, rng.exponential(seasonal(doy, 6.0, 11.0)), 0.0)
    tau = seasonal(doy, 16.0, 4.0)
    m = np.empty(len(days))
    cur = 0.25
    for i in range(len(days)):
        cur = M_RES + (cur - M_RES) * np.exp(-1.0 / tau[i])
        cur += rain[i] * 0.012 * (M_SAT - cur) / (M_SAT - M_RES)
        m[i] = cur
    day0 = float(gpvae.to_days(np.array([start]))[0])
    return Weather(day0=day0, rain_mm=rain, moisture=m)
