"""Phenology: per-parcel cover fractions (green, senescent, flowers, soil) over time.

Crops follow a double-logistic canopy (Beck et al. 2006; Zhang et al. 2003) on the day of the
harvest year, with an autumn establishment phase for winter crops, harvest, stubble, volunteer
regrowth and winter cover crops; grassland has mowing drops, forest a leaf-on season, urban and
water are constant. Every date gets per-tile, per-year and per-parcel shifts.
"""

from __future__ import annotations

import dataclasses

import numpy as np

import gpvae

#: Mean crop calendars, days relative to 1 January of the harvest year (negative = autumn
#: before). kind: crop | grass | forest | static. biomass: canopy water content (kg/m2) of a
#: full green cover, used by the S1 water-cloud model.
CALENDARS: dict[str, dict[str, float | str]] = {
    "winter_cereal": dict(kind="crop", g_early=0.25, t_emerg=-45, r_e=10, t_sos=78, r_up=10,
                          g_max=0.92, t_sen=163, r_down=7, t_harv=195, stubble=0.35,
                          g_vol=0.15, t_till=250, cover=0.0, biomass=3.0, flower=0.0),
    "rapeseed": dict(kind="crop", g_early=0.55, t_emerg=-110, r_e=8, t_sos=62, r_up=8,
                     g_max=0.92, t_sen=158, r_down=6, t_harv=186, stubble=0.3, g_vol=0.3,
                     t_till=228, cover=0.0, biomass=3.5, flower=0.4, t_flower=106),
    "maize": dict(kind="crop", g_early=0.0, t_emerg=0, r_e=10, t_sos=170, r_up=9, g_max=0.95,
                  t_sen=258, r_down=9, t_harv=285, stubble=0.25, g_vol=0.0, t_till=330,
                  cover=0.35, biomass=5.0, flower=0.0),
    "sunflower": dict(kind="crop", g_early=0.0, t_emerg=0, r_e=10, t_sos=152, r_up=8,
                      g_max=0.85, t_sen=212, r_down=7, t_harv=255, stubble=0.2, g_vol=0.0,
                      t_till=300, cover=0.3, biomass=3.5, flower=0.0),
    "soybean": dict(kind="crop", g_early=0.0, t_emerg=0, r_e=10, t_sos=180, r_up=8, g_max=0.9,
                    t_sen=252, r_down=6, t_harv=276, stubble=0.15, g_vol=0.0, t_till=320,
                    cover=0.3, biomass=2.5, flower=0.0),
    "grassland": dict(kind="grass", g_min=0.45, g_amp=0.4, t_up=80, r_up=12, t_down=300,
                      r_down=20, biomass=1.2),
    "deciduous_forest": dict(kind="forest", g_min=0.08, g_amp=0.75, t_up=108, r_up=6,
                             t_down=292, r_down=9, biomass=2.0),
    "urban": dict(kind="static", biomass=0.3),
    "water": dict(kind="static", biomass=0.0),
}
#: Mean dates of grassland cuts (day of year); a parcel has 1-3 of them.
MOWING_DOY = (135.0, 185.0, 245.0)
_TIMINGS = ("t_emerg", "t_sos", "t_sen", "t_harv", "t_till", "t_flower", "t_up", "t_down")


def logistic(x: np.ndarray) -> np.ndarray:
    """Logistic function 1 / (1 + exp(-x)), overflow-safe."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, float)))


def double_logistic(t: np.ndarray, t_up: np.ndarray, r_up: np.ndarray, t_down: np.ndarray,
                    r_down: np.ndarray) -> np.ndarray:
    """Season bump L((t - t_up)/r_up) - L((t - t_down)/r_down) (Beck et al. 2006)."""
    return logistic((t - t_up) / r_up) - logistic((t - t_down) / r_down)


@dataclasses.dataclass(frozen=True)
class Fractions:
    """Cover fractions (parcels, times) of the spectral endmembers; they sum to 1."""

    green: np.ndarray
    dry: np.ndarray
    flower: np.ndarray
    soil: np.ndarray
    urban: np.ndarray
    water: np.ndarray


@dataclasses.dataclass(frozen=True)
class ParcelPhenology:
    """Per-parcel, per-season phenology parameters.

    ``classes`` (P,) class names (or ``road`` for the road/gap pseudo-parcel); ``seasons`` (S,)
    harvest years; ``params`` name -> (P, S) arrays; ``static`` name -> (P,) arrays (urban and
    water shares, static green/dry fractions, forest/grass vigour).
    """

    classes: np.ndarray
    seasons: np.ndarray
    params: dict[str, np.ndarray]
    static: dict[str, np.ndarray]

    def season_time(self, t: np.ndarray) -> np.ndarray:
        """(1, S, T) days since 1 January of each season's (harvest) year."""
        jan1 = gpvae.to_days(np.array([f"{y}-01-01" for y in self.seasons],
                                      dtype="datetime64[ns]"))
        return np.asarray(t, float)[None, None, :] - jan1[None, :, None]


def draw_phenology(classes: np.ndarray, years: tuple[int, ...], tile_shift: float,
                   year_shift: dict[int, float], rng: np.random.Generator) -> ParcelPhenology:
    """Draw per-parcel parameters around :data:`CALENDARS`: sowing jitter (sd 7 d) carried
    into later stages, senescence jitter, rates x U(0.8, 1.25), peak x U(0.85, 1.05), random
    volunteer regrowth and cover crops; plus the tile and per-year shifts."""
    classes = np.asarray(classes, dtype=str)
    n = len(classes)
    seasons = np.arange(years[0], years[-1] + 2)
    ns = len(seasons)
    shift = tile_shift + np.array([year_shift.get(int(y), 0.0) for y in seasons])[None, :]
    keys = sorted({k for cal in CALENDARS.values() for k in cal if k != "kind"})
    params = {k: np.full((n, ns), 10.0 if k.startswith("r_") else 0.0) for k in keys}
    for c, cal in CALENDARS.items():
        sel = classes == c
        for k, v in cal.items():
            if k != "kind":
                params[k][sel] = float(v)
    road = classes == "road"
    for k, v in CALENDARS["grassland"].items():
        if k != "kind":
            params[k][road] = float(v)
    sow = rng.normal(0.0, 7.0, (n, ns))
    sen = 0.5 * sow + rng.normal(0.0, 5.0, (n, ns))
    grow = params["t_harv"] - params["t_sen"]
    for k in ("t_emerg", "t_sos", "t_up"):
        params[k] = params[k] + shift + sow
    for k in ("t_sen", "t_down", "t_flower", "t_till"):
        params[k] = params[k] + shift + sen
    params["t_flower"] += rng.normal(0.0, 3.0, (n, ns))
    params["t_harv"] = params["t_sen"] + grow * rng.uniform(0.85, 1.15, (n, ns))
    for k in ("r_up", "r_down", "r_e"):
        params[k] = params[k] * rng.uniform(0.8, 1.25, (n, ns))
    params["g_max"] = np.minimum(params["g_max"] * rng.uniform(0.85, 1.05, (n, ns)), 0.97)
    params["g_early"] *= rng.uniform(0.6, 1.4, (n, ns))
    params["g_vol"] *= rng.uniform(0.0, 2.0, (n, ns)) * (rng.random((n, ns)) < 0.6)
    params["cover"] = (rng.random((n, ns)) < params["cover"]) * rng.uniform(0.2, 0.5, (n, ns))
    params["flower"] *= rng.uniform(0.7, 1.2, (n, ns))
    params["g_amp"] *= rng.uniform(0.8, 1.1, (n, ns))
    n_cuts = rng.choice([1, 2, 3], size=(n, ns), p=[0.3, 0.45, 0.25])
    for i, doy in enumerate(MOWING_DOY):
        params[f"cut{i}"] = doy + shift + rng.normal(0.0, 8.0, (n, ns))
        active = (n_cuts > i) & ((classes == "grassland")[:, None])
        params[f"cut_depth{i}"] = active * rng.uniform(0.4, 0.7, (n, ns))
    static = {
        "urban": np.select([classes == "urban", road], [rng.uniform(0.5, 0.8, n),
                                                         rng.uniform(0.25, 0.5, n)], 0.0),
        "water": np.where(classes == "water", 1.0, 0.0),
        "g_static": rng.uniform(0.3, 0.6, n),
        "vigour": rng.uniform(0.85, 1.1, n),
    }
    return ParcelPhenology(classes=classes, seasons=seasons, params=params, static=static)


def _crop(tau: np.ndarray, p: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """Green, dry and flower fractions of one crop season (arrays (P, S, T))."""
    harvested = logistic((tau - p["t_harv"]) / 1.5)
    canopy = (p["g_early"] * logistic((tau - p["t_emerg"]) / p["r_e"])
              + (p["g_max"] - p["g_early"]) * logistic((tau - p["t_sos"]) / p["r_up"]))
    senesced = logistic((tau - p["t_sen"]) / p["r_down"])
    green = canopy * (1 - senesced) * (1 - harvested)
    after = np.maximum(tau - p["t_harv"], 0.0)
    green = green + p["g_vol"] * logistic((after - 25.0) / 7.0) * (
        1 - logistic((tau - p["t_till"]) / 3.0))
    t_cc = p["t_harv"] - 365.0 + 20.0
    green = green + p["cover"] * double_logistic(tau, t_cc, 12.0, 45.0, 4.0)
    dry = (0.85 * canopy * senesced * (1 - harvested)
           + p["stubble"] * harvested * np.exp(-after / 45.0))
    flower = p["flower"] * np.exp(-0.5 * ((tau - p["t_flower"]) / 8.0) ** 2)
    return green, dry, flower


def _grass(tau: np.ndarray, p: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """Green (seasonal part, before mowing), dry and a multiplicative mowing factor."""
    green = p["g_amp"] * double_logistic(tau, p["t_up"], p["r_up"], p["t_down"], p["r_down"])
    factor = np.ones_like(tau)
    for i in range(len(MOWING_DOY)):
        since = tau - p[f"cut{i}"]
        factor = factor * (1 - p[f"cut_depth{i}"] * logistic(since / 0.7)
                           * np.exp(-np.maximum(since, 0.0) / 18.0))
    dry = 0.15 * double_logistic(tau, 190.0, 10.0, 250.0, 15.0)
    return green, dry, factor


def cover_fractions(ph: ParcelPhenology, t: np.ndarray) -> Fractions:
    """Cover fractions of every parcel at times ``t`` (days since gpvae.EPOCH)."""
    tau = ph.season_time(t)
    p = {k: v[:, :, None] for k, v in ph.params.items()}
    cls = ph.classes[:, None]
    nt = tau.shape[-1]
    g_crop, d_crop, f_crop = (a.sum(axis=1) for a in _crop(tau, p))
    g_seas, d_grass, mow = _grass(tau, p)
    g_seas, d_grass, mow = g_seas.sum(axis=1), d_grass.sum(axis=1), mow.prod(axis=1)
    kind = np.array([CALENDARS[c]["kind"] if c in CALENDARS else "grass" for c in ph.classes])
    g_min = np.array([float(CALENDARS[c].get("g_min", 0.45)) if c in CALENDARS else 0.45
                      for c in ph.classes])[:, None]
    vig = ph.static["vigour"][:, None]
    g_grass = np.minimum((g_min + g_seas) * vig, 0.95) * mow
    d_grass = d_grass + 0.4 * (np.minimum((g_min + g_seas) * vig, 0.95) - g_grass)
    g_forest = np.minimum((g_min + g_seas) * vig, 0.95)
    d_forest = np.maximum(0.85 - g_forest, 0.05)
    g_static = np.broadcast_to(ph.static["g_static"][:, None], (len(cls), nt))
    k = kind[:, None]
    green = np.select([k == "crop", k == "grass", k == "forest"], [g_crop, g_grass, g_forest],
                      g_static)
    dry = np.select([k == "crop", k == "grass", k == "forest"], [d_crop, d_grass, d_forest],
                    0.1 * g_static)
    flower = np.where(k == "crop", np.clip(f_crop, 0.0, 0.6), 0.0)
    green = np.clip(green, 0.0, 0.97)
    dry = np.clip(dry, 0.0, 0.98 - green)
    veg = 1.0 - flower
    green, dry = green * veg, dry * veg
    soil = np.clip(1.0 - green - dry - flower, 0.0, 1.0)
    urban = ph.static["urban"][:, None] * np.ones((1, nt))
    water = ph.static["water"][:, None] * np.ones((1, nt))
    rest = 1.0 - urban - water
    return Fractions(green=green * rest, dry=dry * rest, flower=flower * rest, soil=soil * rest,
                     urban=urban, water=water)


def vegetation_water_content(ph: ParcelPhenology, fr: Fractions) -> np.ndarray:
    """Canopy water content (kg/m2) of the vegetated part, driving the S1 water-cloud model:
    biomass x (green + 0.3 dry + 0.5 flowers); forests add ~3 kg/m2 of woody volume."""
    biomass = np.array([float(CALENDARS.get(c, CALENDARS["grassland"])["biomass"])
                        for c in ph.classes])[:, None]
    wood = np.where(ph.classes == "deciduous_forest", 3.0, 0.0)[:, None]
    vegetated = np.maximum(1.0 - fr.urban - fr.water, 1e-6)
    return biomass * (fr.green + 0.3 * fr.dry + 0.5 * fr.flower) / vegetated + wood

