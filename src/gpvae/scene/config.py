"""Demo scene configuration: defaults, typed dataclasses and validation naming the bad key."""

from __future__ import annotations

import copy
import dataclasses
import re
from typing import Any

from gpvae.errors import InputError

#: Land-cover classes of the demo scene, in label order.
CLASSES: tuple[str, ...] = (
    "winter_cereal", "rapeseed", "maize", "sunflower", "soybean", "grassland",
    "deciduous_forest", "urban", "water",
)

#: Default `scene:` section (JSON-serialisable). Keys are documented in :class:`SceneConfig`.
DEFAULT_SCENE: dict = {
    "seed": 42,
    "years": [2022, 2023],
    "size_px": 128,
    "tiles": {
        "T31TCJ": {
            "epsg": 32631,
            "origin": [330000.0, 4840000.0],
            "phenology_shift_days": -6.0,
            "class_weights": {
                "winter_cereal": 0.18, "rapeseed": 0.05, "maize": 0.15, "sunflower": 0.15,
                "soybean": 0.10, "grassland": 0.14, "deciduous_forest": 0.10, "urban": 0.08,
                "water": 0.05,
            },
            "s1_relative_orbits": {"ASC": 30, "DES": 110},
        },
        "T31UDQ": {
            "epsg": 32631,
            "origin": [440000.0, 5420000.0],
            "phenology_shift_days": 6.0,
            "class_weights": {
                "winter_cereal": 0.30, "rapeseed": 0.14, "maize": 0.10, "sunflower": 0.03,
                "soybean": 0.03, "grassland": 0.12, "deciduous_forest": 0.14, "urban": 0.09,
                "water": 0.05,
            },
            "s1_relative_orbits": {"ASC": 132, "DES": 8},
        },
    },
    "parcels_per_km2": 40.0,
    "min_parcels": 12,
    "s2_revisit_days": 5,
    "s2_missing_fraction": 0.1,
    "s2_partial_swath_fraction": 0.08,
    "s1_revisit_days": 12,
    "cloud_cover_mean": 0.45,
    "noise_s2": 0.007,
    "s1_enl": 4.5,
    "mask_miss_fraction": 0.3,
    "haze_mean": 0.08,
}

_TILE_NAME = re.compile(r"^T?\d{2}[A-Z]{3}$")


@dataclasses.dataclass(frozen=True)
class TileConfig:
    """One simulated tile.

    epsg: UTM EPSG code of the tile grid. origin: (x_min, y_max) of the 10 m grid in metres
    (multiples of 10). phenology_shift_days: days added to every crop/forest date of this tile
    (positive = later green-up). class_weights: relative share of parcels per class (missing
    classes get 0). s1_relative_orbits: Sentinel-1 relative orbit per direction (ASC, DES).
    """

    epsg: int
    origin: tuple[float, float]
    phenology_shift_days: float
    class_weights: dict[str, float]
    s1_relative_orbits: dict[str, int]

    @property
    def crs(self) -> str:
        """CRS string, e.g. ``EPSG:32631``."""
        return f"EPSG:{self.epsg}"


@dataclasses.dataclass(frozen=True)
class SceneConfig:
    """Demo scene settings (the `scene:` section of the pipeline config).

    seed: master seed; everything is deterministic given it. years: calendar years simulated
    (one continuous series per tile). size_px: tile size in 10 m pixels (even; 20 m grid is
    size/2). tiles: tile name -> :class:`TileConfig`. parcels_per_km2: parcel density (~2.5 ha
    fields at 40). min_parcels: lower bound on parcels per tile so small test tiles still hold
    every class. s2_revisit_days: Sentinel-2 revisit (S2A/S2B alternate). s2_missing_fraction:
    share of S2 acquisitions dropped (ground segment gaps). s2_partial_swath_fraction: share of
    S2 dates cut by the swath edge (EDG = 1, nodata). s1_revisit_days: repeat cycle per orbit
    direction (S1A only from 2022). cloud_cover_mean: mean cloud cover over the year (more in
    winter). noise_s2: additive reflectance noise std. s1_enl: equivalent number of looks (Gamma
    speckle shape). mask_miss_fraction: share of thin cloud pixels (the faintest edges) the CLM
    mask does not flag. haze_mean: mean opacity of the scene-wide thin haze that the mask never
    flags, present on 50 % of the dates, drawn per date and tile (0 = no haze).
    """

    seed: int
    years: tuple[int, ...]
    size_px: int
    tiles: dict[str, TileConfig]
    parcels_per_km2: float
    min_parcels: int
    s2_revisit_days: int
    s2_missing_fraction: float
    s2_partial_swath_fraction: float
    s1_revisit_days: int
    cloud_cover_mean: float
    noise_s2: float
    s1_enl: float
    mask_miss_fraction: float
    haze_mean: float


def _bad(key: str, what: str, fix: str) -> InputError:
    """InputError naming a config key."""
    return InputError(f"invalid scene config: {key} {what}", file="config (scene section)",
                      field=key, fix=fix)


def _number(value: Any, key: str, *, integer: bool = False, lo: float | None = None,
            hi: float | None = None) -> float | int:
    """Check a number (bool rejected) and its bounds."""
    kind = "an integer" if integer else "a number"
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok:
        raise _bad(key, f"must be {kind}, got {value!r} ({type(value).__name__})",
                   f"set {key} to {kind}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise _bad(key, f"= {value} is out of range [{lo}, {hi}]",
                   f"set {key} within [{lo}, {hi}]")
    return int(value) if integer else float(value)


def _mapping(value: Any, key: str) -> dict:
    """Check a mapping."""
    if not isinstance(value, dict):
        raise _bad(key, f"must be a mapping, got {type(value).__name__}", f"write {key} as a "
                   "mapping of keys to values")
    return value


def _check_keys(d: dict, allowed: dict | tuple, key: str) -> None:
    """Unknown keys are errors naming the full key."""
    for k in d:
        if k not in allowed:
            raise _bad(f"{key}.{k}", "is not a known key",
                       f"remove it or use one of {sorted(allowed)}")


def _tile_config(name: str, d: Any, key: str) -> TileConfig:
    """Validate one tile entry, filling defaults from the default tile of the same name."""
    d = _mapping(d, key)
    base = copy.deepcopy(DEFAULT_SCENE["tiles"].get(name, {
        "phenology_shift_days": 0.0, "class_weights": {c: 1.0 for c in CLASSES},
        "s1_relative_orbits": {"ASC": 30, "DES": 110}}))
    _check_keys(d, ("epsg", "origin", "phenology_shift_days", "class_weights",
                    "s1_relative_orbits"), key)
    base.update(d)
    for required in ("epsg", "origin"):
        if required not in base:
            raise _bad(f"{key}.{required}", "is required for a tile without defaults",
                       f"set {key}.{required}")
    epsg = _number(base["epsg"], f"{key}.epsg", integer=True, lo=1024, hi=32767)
    origin = base["origin"]
    if not isinstance(origin, list | tuple) or len(origin) != 2:
        raise _bad(f"{key}.origin", f"must be [x_min, y_max], got {origin!r}",
                   "give two numbers in metres")
    origin = tuple(_number(v, f"{key}.origin[{i}]") for i, v in enumerate(origin))
    if any(v % 10 for v in origin):
        raise _bad(f"{key}.origin", f"= {list(origin)} is not on the 10 m grid",
                   "use multiples of 10 m")
    weights = _mapping(base["class_weights"], f"{key}.class_weights")
    _check_keys(weights, CLASSES, f"{key}.class_weights")
    weights = {c: _number(weights.get(c, 0.0), f"{key}.class_weights.{c}", lo=0.0)
               for c in CLASSES}
    if sum(weights.values()) <= 0:
        raise _bad(f"{key}.class_weights", "are all zero", "give at least one class a weight")
    orbits = _mapping(base["s1_relative_orbits"], f"{key}.s1_relative_orbits")
    _check_keys(orbits, ("ASC", "DES"), f"{key}.s1_relative_orbits")
    orbits = {o: _number(orbits.get(o, 1), f"{key}.s1_relative_orbits.{o}", integer=True,
                         lo=1, hi=175) for o in ("ASC", "DES")}
    return TileConfig(epsg=epsg, origin=origin,
                      phenology_shift_days=_number(base["phenology_shift_days"],
                                                   f"{key}.phenology_shift_days", lo=-60, hi=60),
                      class_weights=weights, s1_relative_orbits=orbits)


def scene_config(d: dict | None) -> SceneConfig:
    """Fill defaults into a `scene:` mapping and validate it (InputError names the bad key)."""
    d = {} if d is None else _mapping(d, "scene")
    _check_keys(d, DEFAULT_SCENE, "scene")
    merged = {**copy.deepcopy(DEFAULT_SCENE), **d}
    years = merged["years"]
    if not isinstance(years, list | tuple) or not years:
        raise _bad("scene.years", f"must be a non-empty list of years, got {years!r}",
                   "e.g. years: [2022, 2023]")
    years = tuple(sorted({_number(y, f"scene.years[{i}]", integer=True, lo=2015, hi=2100)
                          for i, y in enumerate(years)}))
    size = _number(merged["size_px"], "scene.size_px", integer=True, lo=16, hi=4096)
    if size % 2:
        raise _bad("scene.size_px", f"= {size} is odd", "use an even size (20 m grid = size/2)")
    tiles = _mapping(merged["tiles"], "scene.tiles")
    if not tiles:
        raise _bad("scene.tiles", "is empty", "give at least one tile")
    for name in tiles:
        if not isinstance(name, str) or not _TILE_NAME.match(name):
            raise _bad(f"scene.tiles.{name}", "is not an MGRS tile name", "e.g. T31TCJ")
    return SceneConfig(
        seed=_number(merged["seed"], "scene.seed", integer=True, lo=0),
        years=years, size_px=size,
        tiles={n: _tile_config(n, t, f"scene.tiles.{n}") for n, t in tiles.items()},
        parcels_per_km2=_number(merged["parcels_per_km2"], "scene.parcels_per_km2",
                                lo=0.1, hi=10000),
        min_parcels=_number(merged["min_parcels"], "scene.min_parcels", integer=True, lo=1),
        s2_revisit_days=_number(merged["s2_revisit_days"], "scene.s2_revisit_days",
                                integer=True, lo=1, hi=60),
        s2_missing_fraction=_number(merged["s2_missing_fraction"], "scene.s2_missing_fraction",
                                    lo=0.0, hi=0.9),
        s2_partial_swath_fraction=_number(merged["s2_partial_swath_fraction"],
                                          "scene.s2_partial_swath_fraction", lo=0.0, hi=1.0),
        s1_revisit_days=_number(merged["s1_revisit_days"], "scene.s1_revisit_days",
                                integer=True, lo=2, hi=60),
        cloud_cover_mean=_number(merged["cloud_cover_mean"], "scene.cloud_cover_mean",
                                 lo=0.0, hi=0.95),
        noise_s2=_number(merged["noise_s2"], "scene.noise_s2", lo=0.0, hi=0.2),
        s1_enl=_number(merged["s1_enl"], "scene.s1_enl", lo=0.5, hi=1000),
        mask_miss_fraction=_number(merged["mask_miss_fraction"], "scene.mask_miss_fraction",
                                   lo=0.0, hi=1.0),
        haze_mean=_number(merged["haze_mean"], "scene.haze_mean", lo=0.0, hi=0.25),
    )
