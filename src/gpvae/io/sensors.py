"""The sensor registry: every sensor and band is declared once, as data.

A :class:`Sensor` is a name, a kind (``optical`` surface reflectance, ``sar`` backscatter,
``index`` spectral indices), a native resolution, its bands (physical unit, plausible physical
range used by the sanity checks, optional own resolution), the value transform applied before
standardisation (``identity`` or ``db``), the scale / offset of raw integer product values and
colour composites (band triples, true colour first). The built-ins (S2, S1_ASC, S1_DES,
LANDSAT, MOD13Q1, MOD09) are declared in ``gpvae/schema/sensors.yaml``; the config's
``sensors:`` section declares new sensors or extends a built-in (more bands, another scale) in
the same format (``definitions.sensor`` of the config schema). Every stage reads this
registry; cubes and pixel datasets record the definitions of the sensors they hold
(attributes ``sensor_definition`` / ``sensor_definitions``) and checkpoints carry them, so
later stages need no config.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import yaml

from gpvae.config import validate_section
from gpvae.errors import InputError

#: The built-in sensor declarations.
BUILTIN_FILE = Path(__file__).resolve().parents[1] / "schema" / "sensors.yaml"
#: Sensor kinds; the cube's ``radiometry`` attribute of each.
KINDS = {"optical": "surface_reflectance", "sar": "sigma0_linear", "index": "index"}
#: Unit of a band declared without one, per sensor kind.
DEFAULT_UNIT = {"optical": "reflectance", "sar": "sigma0_linear", "index": "1"}


@dataclasses.dataclass(frozen=True)
class Band:
    """One band: name, physical unit, plausible physical range (None = open), resolution."""

    name: str
    unit: str
    range: tuple[float | None, float | None] = (None, None)
    resolution_m: float | None = None  # None: the sensor's

    def to_dict(self) -> dict:
        out: dict = {"unit": self.unit, "range": list(self.range)}
        if self.resolution_m is not None:
            out["resolution_m"] = self.resolution_m
        return out


@dataclasses.dataclass(frozen=True)
class Sensor:
    """A sensor of the registry (see the module docstring)."""

    name: str
    kind: str
    resolution_m: float
    bands: tuple[Band, ...]
    transform: str = "identity"
    scale: float = 1.0
    offset: float = 0.0
    composites: tuple[tuple[str, str, str], ...] = ()
    description: str = ""

    @property
    def band_names(self) -> list[str]:
        """Band names in declaration order (the order of cubes and pixel datasets)."""
        return [b.name for b in self.bands]

    @property
    def radiometry(self) -> str:
        """The cube's ``radiometry`` attribute for this sensor."""
        return KINDS[self.kind]

    @property
    def is_sar(self) -> bool:
        return self.kind == "sar"

    def band(self, name: str) -> Band:
        """The band called ``name`` (InputError naming the sensor and the fix if unknown)."""
        self.check_bands([name])
        return self.bands[self.band_names.index(name)]

    def band_resolution(self, name: str) -> float:
        """Native resolution of a band, metres."""
        band = self.band(name)
        return self.resolution_m if band.resolution_m is None else band.resolution_m

    def check_bands(self, names: Iterable[str], *, file: object = None,
                    field: str | None = None) -> None:
        """InputError when a name is not a band of this sensor (naming sensor, band, fix)."""
        unknown = [str(n) for n in names if str(n) not in self.band_names]
        if unknown:
            raise InputError(f"band {unknown[0]!r} is not a band of sensor {self.name} (its "
                             f"bands: {', '.join(self.band_names)})", file=file,
                             field=field or f"sensors.{self.name}.bands",
                             fix=f"declare it under sensors.{self.name}.bands in the config "
                             "(docs/sensors.md), or use one of the sensor's bands")

    def composite(self, bands: Iterable[str]) -> tuple[str, str, str] | None:
        """The first colour composite whose three bands are all in ``bands``."""
        have = set(bands)
        return next((c for c in self.composites if set(c) <= have), None)

    def ordered(self, names: Iterable[str]) -> list[str]:
        """``names`` (checked) in the sensor's band order."""
        names = list(names)
        self.check_bands(names)
        return [b for b in self.band_names if b in names]

    def to_dict(self) -> dict:
        """The declaration of this sensor (the config's ``sensors.<name>`` format)."""
        out = {"description": self.description, "kind": self.kind,
               "resolution_m": self.resolution_m, "transform": self.transform,
               "scale": self.scale, "offset": self.offset,
               "bands": {b.name: b.to_dict() for b in self.bands}}
        if self.composites:
            out["composites"] = [list(c) for c in self.composites]
        return out


def _bands(decl: dict, kind: str) -> list[Band]:
    bands = decl.get("bands") or {}
    if isinstance(bands, list):
        bands = {b: None for b in bands}
    out = []
    for name, spec in bands.items():
        spec = spec or {}
        lo, hi = spec.get("range", [None, None])
        out.append(Band(str(name), str(spec.get("unit", DEFAULT_UNIT[kind])),
                        (None if lo is None else float(lo), None if hi is None else float(hi)),
                        None if spec.get("resolution_m") is None
                        else float(spec["resolution_m"])))
    return out


def make_sensor(name: str, decl: dict, base: Sensor | None = None, *,
                source: object = None) -> Sensor:
    """A :class:`Sensor` from a declaration; with ``base``, the declaration extends it (its
    bands are added, other keys replace the base's)."""
    field = f"sensors.{name}"
    validate_section(copy.deepcopy(decl), "#/definitions/sensor", field=field, source=source)
    merged = {} if base is None else base.to_dict()
    kind = decl.get("kind", merged.get("kind"))
    missing = [k for k in ("kind", "resolution_m", "bands") if k not in decl and k not in merged]
    if missing:
        raise InputError(f"sensor {name} is not a built-in and its declaration lacks "
                         f"{missing}", file=source, field=f"{field}.{missing[0]}",
                         fix="give kind (optical|sar|index), resolution_m and bands")
    bands = (_bands(merged, kind) if base is not None else []) + _bands(decl, kind)
    names = [b.name for b in bands]
    twice = sorted({b for b in names if names.count(b) > 1})
    if twice:
        raise InputError(f"sensor {name} declares band {twice[0]!r} twice", file=source,
                         field=f"{field}.bands", fix="declare each band once")
    composites = decl.get("composites", merged.get("composites")) or []
    sensor = Sensor(
        name=name, kind=kind, bands=tuple(bands),
        resolution_m=float(decl.get("resolution_m", merged.get("resolution_m"))),
        transform=decl.get("transform", merged.get("transform",
                                                   "db" if kind == "sar" else "identity")),
        scale=float(decl.get("scale", merged.get("scale", 1.0))),
        offset=float(decl.get("offset", merged.get("offset", 0.0))),
        composites=tuple(tuple(c) for c in composites),
        description=str(decl.get("description", merged.get("description", ""))))
    for c in sensor.composites:
        sensor.check_bands(c, file=source, field=f"{field}.composites")
    return sensor


class SensorRegistry(Mapping[str, Sensor]):
    """Sensors by name; looking up an unknown name is an InputError naming the fix."""

    def __init__(self, sensors: Mapping[str, Sensor]) -> None:
        self._sensors = dict(sensors)

    def __getitem__(self, name: str) -> Sensor:
        if name not in self._sensors:
            raise InputError(f"unknown sensor {name!r} (known: {', '.join(self._sensors)})",
                             field=f"sensors.{name}",
                             fix=f"declare it under sensors.{name} in the config (kind, "
                             "resolution_m, bands; docs/sensors.md) or use a known sensor")
        return self._sensors[name]

    def __contains__(self, name: object) -> bool:
        return name in self._sensors

    def get(self, name: str, default: Sensor | None = None) -> Sensor | None:
        return self._sensors.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._sensors)

    def __len__(self) -> int:
        return len(self._sensors)

    def declarations(self, names: Iterable[str] | None = None) -> dict[str, dict]:
        """Declarations of ``names`` (default: all), e.g. for a file attribute."""
        return {n: self[n].to_dict() for n in (self._sensors if names is None else names)}

    def to_json(self, names: Iterable[str] | None = None) -> str:
        return json.dumps(self.declarations(names))  # band order matters: keys not sorted


@functools.cache
def _builtin_declarations() -> dict:
    return yaml.safe_load(BUILTIN_FILE.read_text())


@functools.cache
def builtin_sensors() -> SensorRegistry:
    """The built-in sensors."""
    return SensorRegistry({n: make_sensor(n, copy.deepcopy(d), source=BUILTIN_FILE)
                           for n, d in _builtin_declarations().items()})


def builtin(name: str) -> Sensor:
    """One built-in sensor."""
    return builtin_sensors()[name]


def sensor_registry(declarations: Mapping[str, dict] | Iterable[tuple[str, dict]] | None = None,
                    *, source: object = "config") -> SensorRegistry:
    """The built-ins plus the config's ``sensors:`` declarations (a mapping, or (name,
    declaration) pairs). A declaration named like a built-in extends it. Two declarations of
    one name (names are compared ignoring case: they name files) are an InputError."""
    pairs = list(declarations.items() if isinstance(declarations, Mapping)
                 else declarations or [])
    sensors = dict(builtin_sensors())
    seen: dict[str, str] = {}
    for name, decl in pairs:
        name = str(name)
        key = name.lower()
        clash = seen.get(key) or next((b for b in sensors if b.lower() == key and b != name),
                                      None)
        if clash is not None:
            raise InputError(f"two sensors declare the name {name!r} (also {clash!r}; names "
                             "are compared ignoring case, they name files)", file=source,
                             field=f"sensors.{name}",
                             fix="give each sensor its own name; to add bands to a built-in, "
                             "declare it once under its exact name")
        seen[key] = name
        sensors[name] = make_sensor(name, decl or {}, sensors.get(name), source=source)
    return SensorRegistry(sensors)


def registry_from_json(text: str | None, *, source: object = None) -> SensorRegistry:
    """Built-ins plus the definitions recorded in a file attribute (recorded ones win, so a
    file written with a user sensor reads back without the config)."""
    recorded = json.loads(text) if text else {}
    sensors = dict(builtin_sensors())
    for name, decl in recorded.items():
        sensors[name] = make_sensor(name, decl, source=source)
    return SensorRegistry(sensors)


#: Derived views of the built-in Sentinel sensors for their product readers and the demo.
S2_BANDS: list[str] = builtin("S2").band_names
S2_10M: frozenset[str] = frozenset(b for b in S2_BANDS if builtin("S2").band_resolution(b) == 10)
S1_BANDS: list[str] = builtin("S1_ASC").band_names
