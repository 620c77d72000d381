"""Start-up checks: what a configuration asks for against what its inputs provide.

Run when the Snakefile is read (workflow/rules/common.smk), after the schema, before any
job: everything that can be checked cheaply from the config and the inputs' metadata
(file existence, the parcels' attribute table, a table's header and label columns, netCDF
variable names), so a wrong field or fraction stops in a second, not after extract and mask
ran. Problems are collected and raised together as one :class:`InputError`; warnings (a
class that will miss val/test, a protocol that will be skipped, no model) are returned.
docs/validation.md lists what is checked when.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from gpvae.errors import InputError
from gpvae.io.readers import FORMATS
from gpvae.io.sensors import Sensor, SensorRegistry, sensor_registry

#: Model names that are baselines of the gap-filling and classification stages.
RESERVED_MODELS = ("linear", "gp", "whittaker", "scene_mean", "scene_offset", "raw_linear")
#: Keys of ``inputs`` that are not sensors; every other key names a sensor of the registry
#: (``S1`` stands for S1_<orbit> per orbit direction).
INPUT_KEYS = ("parcels", "truth", "regions", "table")


@dataclasses.dataclass
class Problem:
    """One thing wrong: what, the config key (or file field), the fix, the file if any."""

    what: str
    field: str
    fix: str
    file: object = None

    def error(self) -> InputError:
        return InputError(self.what, file=self.file, field=self.field, fix=self.fix)


@dataclasses.dataclass
class Findings:
    problems: list[Problem] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)

    def add(self, what: str, field: str, fix: str, file: object = None) -> None:
        self.problems.append(Problem(what, field, fix, file))

    def absorb(self, err: InputError, field: str | None = None) -> None:
        """Record an InputError raised by a reader's or the registry's own checks
        (``field``: the config key to name instead of the error's own field)."""
        what = str(err).split(" | ")[0]
        self.problems.append(Problem(what, field or err.field or "", err.fix or "", err.file))


def tile_path(template: str, tile: str) -> str:
    return str(template).replace("{tile}", tile)


def _is_url(path: str) -> bool:
    return str(path).startswith(("http://", "https://"))


def _produced_by_scene(cfg: dict, path: str) -> bool:
    """Whether the demo's `scene` rule writes ``path`` (it does not exist before it runs)."""
    if "scene" not in cfg:
        return False
    out = Path(str((cfg.get("scene") or {}).get("out_dir", "resources/demo")))
    return Path(path) == out or out in Path(path).parents


def sensor_inputs(cfg: dict) -> dict[str, dict]:
    """The sensor entries of ``inputs`` (key -> section): S2, S1 and any registry sensor."""
    return {k: v for k, v in (cfg["inputs"] or {}).items() if k not in INPUT_KEYS and v}


def input_key(cfg: dict, sensor: str) -> str:
    """The ``inputs`` key of a sensor (``S1`` for S1_ASC / S1_DES read through it)."""
    inputs = cfg["inputs"]
    if sensor not in inputs and sensor.startswith("S1_") and inputs.get("S1"):
        return "S1"
    return sensor


def _article(name: str) -> str:
    """'an' before a sensor name spelled letter by letter with a vowel sound (an S2)."""
    return "an" if name[:1].upper() in "AEFHILMNORSX" else "a"


# --------------------------------------------------------------------------- checks


def check_sensors(cfg: dict, f: Findings, registry: SensorRegistry) -> None:
    """Every sensor the inputs name is in the registry (built-in or declared under
    ``sensors:``); bands named for it in the generic mapping or extract.bands are its own."""
    table = cfg["inputs"].get("table")
    if table:
        for name in (table["columns"].get("bands") or {}):
            if name not in registry:
                f.absorb(_unknown(registry, name), f"inputs.table.columns.bands.{name}")
        return
    for key, section in sensor_inputs(cfg).items():
        names = [f"S1_{o}" for o in section.get("orbits", [])] if key == "S1" else [key]
        for name in names:
            if name not in registry:
                f.absorb(_unknown(registry, name), f"inputs.{key}")
                continue
            mapping = section.get("bands")
            if section.get("format") in ("generic", None) and mapping:
                _check_bands(registry[name], mapping, f"inputs.{key}.bands", f)
    for name, bands in _extract_bands(cfg).items():
        if name in registry:
            _check_bands(registry[name], bands, "extract.bands" if isinstance(
                cfg["extract"].get("bands"), list) else f"extract.bands.{name}", f)


def _unknown(registry: SensorRegistry, name: str) -> InputError:
    try:
        registry[name]
    except InputError as err:
        return err
    raise AssertionError(name)  # pragma: no cover (only called for unknown names)


def _check_bands(sensor: Sensor, names: object, field: str, f: Findings) -> None:
    try:
        sensor.check_bands(names, field=field)
    except InputError as err:
        f.absorb(err, field)


def _extract_bands(cfg: dict) -> dict[str, list[str]]:
    """extract.bands per sensor (a list is the S2 bands)."""
    bands = cfg.get("extract", {}).get("bands")
    if isinstance(bands, list):
        return {"S2": bands}
    return dict(bands or {})


def check_inputs(cfg: dict, f: Findings, tiles: list[str], sensors: list[str],
                 registry: SensorRegistry) -> None:
    """Products (sensor inputs + parcels per tile) or a table; every input path present."""
    inputs = cfg["inputs"]
    table = inputs.get("table")
    if not table and not (sensors and inputs.get("parcels") and tiles):
        f.add("the inputs are incomplete", "inputs",
              "give either inputs.table, or tiles + one sensor input (inputs.S2, inputs.S1, "
              "inputs.<sensor>) + inputs.parcels (see config/examples/)")
        return
    if table:
        if not Path(table["path"]).is_file():
            f.add("sample table not found", "inputs.table.path",
                  "point inputs.table.path at a .parquet or .csv file", table["path"])
        return
    for key, section in [*sensor_inputs(cfg).items(), ("parcels", inputs.get("parcels"))]:
        if not section or not isinstance(section, dict) or "path" not in section:
            continue
        for tile in tiles:
            path = tile_path(section["path"], tile)
            if not (_is_url(path) or _produced_by_scene(cfg, path) or Path(path).exists()):
                f.add(f"input of tile {tile} not found", f"inputs.{key}.path",
                      f"check the path ('{{tile}}' is replaced by the tile name) and the "
                      f"tiles list {tiles}", path)
    for key, section in sensor_inputs(cfg).items():
        if section.get("format", "generic") == "generic" and not section.get("bands"):
            name = key if key != "S1" else next(iter(sensors_of(key, section)), key)
            known = registry.get(name)
            its = f"; its bands: {', '.join(known.band_names)}" if known else ""
            f.add("the generic reader needs a band mapping", f"inputs.{key}.bands",
                  f"add bands: {{<band>: <variable name>, ...}} (band of {name} -> variable"
                  f"{its})")
    for key, section in sensor_inputs(cfg).items():
        allowed = FORMATS.get(section.get("format", "generic"))
        for name in sensors_of(key, section):
            if allowed is not None and name not in allowed:
                f.add(f"format {section['format']} reads {', '.join(allowed)}, not {name}",
                      f"inputs.{key}.format", f"read {name} with format generic or openeo, "
                      f"or give the {section['format']} products as inputs.{allowed[0]}")
    s1 = inputs.get("S1") or {}
    if s1.get("format") in ("openeo", "generic") and len(s1.get("orbits") or []) != 1:
        f.add(f"an {s1['format']} S1 cube holds one orbit direction, orbits lists "
              f"{s1.get('orbits')}", "inputs.S1.orbits",
              "set orbits to the cube's one direction, [ASC] or [DES]")
    unknown = sorted(set(inputs.get("regions") or {}) - set(tiles))
    if unknown:
        f.add(f"regions names tiles {unknown} that are not in tiles {tiles}",
              "inputs.regions", "use tile names of `tiles` as keys (or remove them)")


def sensors_of(key: str, section: dict) -> list[str]:
    """The sensors one ``inputs`` entry provides (S1: one per orbit direction)."""
    return [f"S1_{o}" for o in section.get("orbits", [])] if key == "S1" else [key]


def cube_variables(path: str) -> list[str] | None:
    """Variable names of a netCDF file (metadata only); None when it is not one."""
    import netCDF4

    try:
        with netCDF4.Dataset(path) as nc:
            return list(nc.variables)
    except (OSError, RuntimeError, ValueError):
        return None  # not netCDF (zarr, or broken: the extract stage says which)


def _mask_variables(mask: object) -> dict[str, str]:
    """field -> variable of a generic mask rule, or of each rule of a list."""
    if isinstance(mask, dict):
        return {"mask.variable": mask.get("variable")}
    if isinstance(mask, list):
        return {f"mask.{i}.variable": m.get("variable") for i, m in enumerate(mask)
                if isinstance(m, dict)}
    return {}


def check_generic_cubes(cfg: dict, f: Findings, tiles: list[str]) -> None:
    """The variables a generic reader is told to read exist in each tile's netCDF cube."""
    for key, section in sensor_inputs(cfg).items():
        if section.get("format") != "generic" or not section.get("bands"):
            continue
        wanted = {f"bands.{b}": v for b, v in section["bands"].items()}
        wanted["time_var"] = section.get("time_var", "time")
        wanted |= _mask_variables(section.get("mask"))
        for tile in tiles:
            path = tile_path(section["path"], tile)
            names = cube_variables(path) if Path(path).is_file() else None
            if names is None:
                continue
            for field, var in wanted.items():
                if var not in names:
                    f.add(f"variable {var!r} is not in the cube (variables: "
                          f"{sorted(names)[:20]})", f"inputs.{key}.{field}",
                          "name a variable of the cube", path)


def provided_bands(cfg: dict, sensor: str, table_bands: dict[str, list[str]] | None,
                   registry: SensorRegistry) -> list[str] | None:
    """Bands the inputs deliver for ``sensor`` (None when only the data can tell)."""
    if table_bands is not None:
        return table_bands.get(sensor)
    known = registry.get(sensor)
    if known is None:
        return None  # reported by check_sensors
    section = cfg["inputs"].get(input_key(cfg, sensor)) or {}
    if section.get("format") == "generic":  # no mapping: reported by check_inputs
        mapping = section.get("bands")
        return [b for b in known.band_names if b in mapping] if mapping else None
    chosen = _extract_bands(cfg).get(sensor)
    return [b for b in known.band_names if b in chosen] if chosen else known.band_names


def gapfill_sensor(cfg: dict, sensors: list[str], registry: SensorRegistry) -> str | None:
    """The sensor gap filling hides and predicts: gapfill.sensor, else the first optical or
    index sensor of the inputs (None: SAR only)."""
    return cfg.get("gapfill", {}).get("sensor") or next(
        (s for s in sensors if s in registry and registry[s].kind != "sar"), None)


def check_models(cfg: dict, f: Findings, sensors: list[str],
                 table_bands: dict[str, list[str]] | None, registry: SensorRegistry) -> None:
    """Model names, and the sensors and bands each model asks for vs the inputs'."""
    models = cfg.get("models") or {}
    if not models:
        f.warnings.append("models is empty: only the data stages run (no training, "
                          "evaluation, maps or report). Fix: add models (see "
                          "config/config.yaml)")
    for name in sorted(set(models) & set(RESERVED_MODELS)):
        f.add(f"model name {name!r} is reserved for a baseline", f"models.{name}",
              "rename the model")
    for name, model in models.items():
        asked = model.get("sensors") or sensors
        for s in asked:
            if s not in sensors:
                f.add(f"model {name} reads sensor {s}, which the inputs do not provide "
                      f"(they give {', '.join(sensors) or 'none'})", f"models.{name}.sensors",
                      f"remove {s} from models.{name}.sensors, or add it to the inputs "
                      "(inputs.S1.orbits, inputs.<sensor>, or the table's columns.bands)")
        for s, bands in (model.get("bands") or {}).items():
            if s not in asked:
                f.add(f"bands are given for sensor {s}, which model {name} does not read",
                      f"models.{name}.bands.{s}", f"add {s} to models.{name}.sensors or "
                      "remove the entry")
                continue
            if s in registry:
                before = len(f.problems)
                _check_bands(registry[s], bands, f"models.{name}.bands.{s}", f)
                if len(f.problems) > before:
                    continue
            have = provided_bands(cfg, s, table_bands, registry) if s in sensors else None
            if have is None:
                continue
            missing = [b for b in bands if b not in have]
            if missing:
                f.add(f"model {name} asks for {s} bands {missing}, the inputs provide "
                      f"{have}", f"models.{name}.bands.{s}",
                      "ask for provided bands (or add them: extract.bands, the generic "
                      "band mapping or the table's columns)")
        time_range = model.get("time_range")
        if time_range is not None and time_range[0] >= time_range[1]:
            f.add(f"time_range {list(time_range)} is empty", f"models.{name}.time_range",
                  "give [first day, last day] with first < last (or null: the data's span)")
    unknown = sorted(set(cfg.get("predict", {}).get("models") or []) - set(models))
    if unknown:
        f.add(f"predict.models names unknown models {unknown}", "predict.models",
              f"use names among {sorted(models)} (or null for all)")
    for key in ("gapfill.sensor", "embed.raw_sensor"):
        section, option = key.split(".")
        chosen = (cfg.get(section) or {}).get(option)
        if chosen is None:
            continue
        if chosen not in sensors:
            f.add(f"{key} {chosen} is not a sensor of the inputs ({', '.join(sensors)})", key,
                  "name a sensor the inputs provide (or null: the first optical or index one)")
        elif chosen in registry and registry[chosen].kind == "sar":
            f.add(f"{key} {chosen} is a SAR sensor: gap filling and the raw reference work "
                  "on an optical or index sensor", key,
                  "name an optical or index sensor (or null: the first one of the inputs)")


def check_split(cfg: dict, f: Findings) -> None:
    """Fractions >= 0 that sum to 1; the splits the later stages need are not empty."""
    split = cfg["sample"]["split"]
    total = sum(float(v) for v in split.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        f.add(f"split fractions {split} sum to {total:g}, not 1", "sample.split",
              "e.g. {train: 0.6, val: 0.2, test: 0.2}")
    if cfg.get("models"):
        for name, need in (("train", "training"), ("val", "early stopping of training"),
                           ("test", "gap filling and classification scores")):
            if float(split.get(name, 0)) <= 0:
                f.add(f"split fraction {name} is 0, but {need} needs {name} samples",
                      f"sample.split.{name}", f"give {name} a fraction > 0")


def _date(value: object, key: str, f: Findings) -> np.datetime64 | None:
    if value is None:
        return None
    try:
        return np.datetime64(str(value), "D")
    except ValueError:
        f.add(f"{value!r} is not a date", key, "write dates as YYYY-MM-DD")
        return None


def check_ranges(cfg: dict, f: Findings) -> None:
    """Ordered date range, AOI, sample span, reference days and gap lengths."""
    from gpvae.data.span import Span

    e = cfg.get("extract", {})
    start, end = _date(e.get("start"), "extract.start", f), _date(e.get("end"), "extract.end", f)
    if start is not None and end is not None and start > end:
        f.add(f"start date {start} is after end date {end}", "extract.start/end",
              "swap them (start <= end)")
    aoi = e.get("aoi")
    if aoi and not (aoi[0] < aoi[2] and aoi[1] < aoi[3]):
        f.add(f"AOI {aoi} is not [xmin, ymin, xmax, ymax]", "extract.aoi",
              "give xmin < xmax and ymin < ymax, in the tile CRS")
    try:
        Span.from_config(cfg["sample"])
    except InputError as err:
        f.absorb(err)
    emb = cfg.get("embed", {})
    ref_end = emb.get("ref_end_day")  # null: the data's span
    if ref_end is not None and emb.get("ref_start_day", 0) > ref_end:
        f.add(f"ref_start_day {emb['ref_start_day']} is after ref_end_day {ref_end}",
              "embed.ref_start_day", "give start <= end (or ref_end_day: null, the span)")
    gaps = cfg.get("gapfill", {}).get("gap_days", [30, 60])
    if gaps[0] > gaps[1]:
        f.add(f"gap_days {gaps} is not [shortest, longest]", "gapfill.gap_days",
              "give the shorter length first")


def check_init_from(cfg: dict, f: Findings) -> None:
    """``models.<name>.init_from``: another GP-VAE of ``models``, no cycle, the same
    settings but for the sensors (:data:`gpvae.config.INIT_FROM_FREE_KEYS`), every sensor of
    the trained model kept and one more."""
    from gpvae.config import INIT_FROM_FREE_KEYS as FREE_KEYS
    from gpvae.config import defaults

    models = cfg.get("models") or {}
    base_defaults = defaults("#/definitions/model")
    for name, model in models.items():
        base_name = model.get("init_from")
        if not base_name:
            continue
        field = f"models.{name}.init_from"
        if base_name not in models or base_name == name:
            f.add(f"init_from names {base_name!r}, not another model of models",
                  field, f"name one of {sorted(set(models) - {name})}")
            continue
        seen, cur = {name}, base_name
        while cur and cur not in seen:  # chains are fine, cycles are not
            seen.add(cur)
            cur = (models.get(cur) or {}).get("init_from")
        if cur:
            f.add(f"init_from of {name} leads back to {cur} (a cycle)", field,
                  "make one model of the chain train from scratch")
            continue
        new, old = {**base_defaults, **model}, {**base_defaults, **models[base_name]}
        for key in sorted(set(new) | set(old)):
            if key not in FREE_KEYS and new.get(key) != old.get(key):
                f.add(f"model {name} adds sensors to {base_name} but its {key} "
                      f"({new.get(key)!r}) differs from {base_name}'s ({old.get(key)!r})",
                      f"models.{name}.{key}", f"give {key} the value of {base_name} (or "
                      "drop init_from to train from scratch)")
        if new["type"] != "gpvae":
            f.add(f"init_from needs GP-VAEs (model {name} is {new['type']})", field,
                  "use init_from with type: gpvae models")
        old_s, new_s = old.get("sensors"), new.get("sensors")
        if not old_s or not new_s or not set(old_s) < set(new_s):
            f.add(f"model {name} must read every sensor of {base_name} ({old_s or 'all'}) "
                  f"and at least one more (it reads {new_s or 'all'})",
                  f"models.{name}.sensors", f"list {base_name}'s sensors plus the new ones")


def check_update(cfg: dict, f: Findings, sensors: list[str]) -> None:
    """``update``: markov GP-VAEs of ``models``, a start date after ``extract.end``, known
    sensors."""
    up = cfg.get("update") or {}
    names = up.get("models") or []
    if not names:
        return
    models = cfg.get("models") or {}
    for name in names:
        model = models.get(name)
        if model is None:
            f.add(f"update.models names unknown model {name!r}", "update.models",
                  f"use names among {sorted(models)}")
        elif (model.get("type", "gpvae"), model.get("prior", "markov")) != ("gpvae", "markov"):
            f.add(f"model {name} is not a markov GP-VAE: only the markov prior updates with "
                  "new acquisitions", "update.models",
                  "list GP-VAEs with prior: markov (or recompute the maps)")
    start = _date(up.get("start"), "update.start", f)
    end = _date(cfg.get("extract", {}).get("end"), "extract.end", f)
    if start is None:
        f.add("update.models is set but update.start is not", "update.start",
              "give the first day of the new acquisitions (YYYY-MM-DD)")
    elif end is None or end >= start:
        f.add(f"the base cubes must end before the new acquisitions (extract.end "
              f"{cfg.get('extract', {}).get('end')}, update.start {up.get('start')})",
              "extract.end", "set extract.end before update.start")
    for s in up.get("sensors") or []:
        if s not in sensors:
            f.add(f"update.sensors names {s}, not a sensor of the inputs ({sensors})",
                  "update.sensors", "name sensors of the inputs")
    if not (cfg.get("predict") or {}).get("enabled", True):
        f.warnings.append("update.models is set but predict.enabled is false: no tile "
                          "product to update. Fix: enable predict")


def _ordered(box: object) -> bool:
    return box[0] < box[2] and box[1] < box[3]


def _overlap(a: Sequence[float], b: Sequence[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def check_predict(cfg: dict, f: Findings, tiles: list[str]) -> None:
    """The tile maps (predict section): AOI windows ordered, per-tile AOIs of configured tiles
    and inside ``extract.aoi``; products that the GeoTIFFs need; written dates inside the
    reference dates."""
    from gpvae.io.product import check_products

    p = cfg.get("predict") or {}
    if not p.get("enabled", True) or cfg["inputs"].get("table") or not cfg.get("models"):
        return
    aoi = p.get("aoi")
    boxes = aoi if isinstance(aoi, dict) else ({t: aoi for t in tiles} if aoi else {})
    unknown = sorted(set(boxes) - set(tiles))
    if unknown:
        f.add(f"predict.aoi names tiles {unknown} that are not configured ({tiles})",
              "predict.aoi", "key the per-tile AOIs by names in `tiles` (a tile not listed "
              "is mapped whole)")
    extract_aoi = (cfg.get("extract") or {}).get("aoi")
    for tile, box in sorted(boxes.items()):
        field = "predict.aoi" if not isinstance(aoi, dict) else f"predict.aoi.{tile}"
        if not _ordered(box):
            f.add(f"AOI {list(box)} is not [xmin, ymin, xmax, ymax]", field,
                  "give xmin < xmax and ymin < ymax, in the tile CRS")
        elif extract_aoi and _ordered(extract_aoi) and not _overlap(box, extract_aoi):
            f.add(f"AOI {list(box)} of the map is outside extract.aoi {list(extract_aoi)}: "
                  "the cubes hold nothing there", field,
                  "give a window inside extract.aoi (same CRS), or null to map the cubes whole")
    try:
        check_products(p.get("products"), p.get("geotiffs"))
    except InputError as err:
        f.absorb(err)
    dates = p.get("dates")
    if dates:
        emb = cfg.get("embed", {})
        lo, hi = float(emb.get("ref_start_day", 0)), emb.get("ref_end_day")
        bad = [d for d in dates if d < lo or (hi is not None and d > float(hi))]
        if bad:
            span = f"[{lo:g}, {float(hi):g}]" if hi is not None else f">= {lo:g}"
            f.add(f"predict.dates {bad} are outside the reference dates (embed.ref_start_day "
                  f"/ ref_end_day: {span})", "predict.dates",
                  "give days since the span start within the reference dates (the nearest "
                  "reference date is written), or null for all")


def classifies(cfg: dict) -> bool:
    """Whether classification runs: it needs labels (a table without a label column has
    none) and models."""
    table = cfg["inputs"].get("table")
    return bool(cfg.get("models")) and not (table and not table["columns"].get("label"))


def check_protocols(cfg: dict, f: Findings, tiles: list[str], sensors: list[str],
                    table_bands: dict[str, list[str]] | None, registry: SensorRegistry
                    ) -> None:
    """Protocols that cannot run on these inputs (warnings: they are skipped); what the
    report is asked to show (problems)."""
    if not cfg.get("models"):
        return
    protocols = cfg.get("downstream", {}).get("protocols", [])
    regions = {(cfg["inputs"].get("regions") or {}).get(t, t) for t in tiles}
    if classifies(cfg) and "region" in protocols and tiles and len(regions) < 2:
        f.warnings.append(f"protocol region needs two regions, the tiles make one "
                          f"({sorted(regions)}): it will be skipped. Fix: add a tile or "
                          "map tiles to regions (inputs.regions), or drop it from "
                          "downstream.protocols")
    years = cfg["sample"].get("years") or (cfg.get("scene") or {}).get("years")
    if classifies(cfg) and "year" in protocols and years and len(set(years)) < 2:
        f.warnings.append(f"protocol year needs two years, there is one ({years}): it will "
                          "be skipped. Fix: sample two years, or drop it from "
                          "downstream.protocols")
    report = cfg.get("report") or {}
    band = report.get("example_band")  # null: the gap-filled sensor's first band
    sensor = gapfill_sensor(cfg, sensors, registry)
    have = (provided_bands(cfg, sensor, table_bands, registry)
            if band is not None and sensor in sensors else None)
    if have is not None and band not in have:
        f.add(f"report.example_band {band} is not {_article(sensor)} {sensor} band of the "
              f"inputs ({have})", "report.example_band",
              f"use one of {have} (bands of the gap-filled sensor {sensor}), or null")
    confusion = report.get("confusion_protocol", "parcel")
    if classifies(cfg) and confusion not in protocols:
        f.add(f"report.confusion_protocol {confusion!r} is not run",
              "report.confusion_protocol", f"use one of downstream.protocols {protocols}")


def check_classes(cfg: dict, f: Findings, parcels_per_class: dict[str, int],
                  source: object, classes_field: str) -> None:
    """sample.classes against the classes the inputs hold; classes the split will leave out
    of val/test (warnings); splits that would be empty or a single class (problems)."""
    from gpvae.preprocess.split import allocate
    from gpvae.preprocess.split_check import describe_gaps, empty_splits, expected_gaps

    wanted = cfg["sample"].get("classes")
    if wanted:
        absent = [c for c in wanted if c not in parcels_per_class]
        if absent:
            f.add(f"sample.classes lists classes the inputs do not hold: {absent} (classes "
                  f"there: {sorted(parcels_per_class)[:20]})", "sample.classes",
                  f"correct the spelling (values of {classes_field}) or remove them", source)
            return
        parcels_per_class = {c: n for c, n in parcels_per_class.items() if c in wanted}
    if not parcels_per_class:
        return
    split = cfg["sample"]["split"]
    if not math.isclose(sum(float(v) for v in split.values()), 1.0, abs_tol=1e-6):
        return  # reported by check_split
    gaps = expected_gaps(parcels_per_class, split)
    f.warnings.extend(describe_gaps(gaps, parcels_per_class))
    sizes = dict.fromkeys(split, 0)
    for n in parcels_per_class.values():
        for name, count in zip(split, allocate(n, [float(v) for v in split.values()]),
                               strict=True):
            sizes[name] += count
    empty = empty_splits(sizes, split)
    if empty and cfg.get("models"):
        f.add(f"split {'/'.join(empty)} would get no parcel ({sizes} parcels per split)",
              "sample.split", "add parcels (a class needs one parcel per split), or fewer "
              "splits", source)
    if classifies(cfg) and len(parcels_per_class) < 2:
        f.add(f"one class only ({sorted(parcels_per_class)}): classification needs two",
              "sample.classes", "add parcels of other classes", source)


def check_parcels(cfg: dict, f: Findings, tiles: list[str]) -> None:
    """Fields, classes and parcel counts from each parcel file's attribute table."""
    from gpvae.io.parcels import parcel_attributes

    p = cfg["inputs"].get("parcels")
    if not p or cfg["inputs"].get("table"):
        return
    counts: dict[str, set] = {}
    files = []
    for path in dict.fromkeys(tile_path(p["path"], t) for t in tiles):
        if not Path(path).is_file():
            continue  # reported by check_inputs, or written by the scene rule
        try:
            attrs = parcel_attributes(Path(path), id_field=p["id_field"],
                                      class_field=p["class_field"])
        except InputError as err:
            f.absorb(err)
            continue
        files.append(path)
        for cls, ids in attrs.groupby("class")["parcel_id"]:
            counts.setdefault(str(cls), set()).update(ids.tolist())
    if files:
        check_classes(cfg, f, {c: len(ids) for c, ids in counts.items()}, ", ".join(files),
                      f"inputs.parcels.class_field ({p['class_field']})")


def _group_columns(columns: dict) -> list[str]:
    group = columns.get("group")
    return [] if group is None else [group] if isinstance(group, str) else list(group)


def _table_columns(table: dict) -> Iterable[tuple[str, str | None]]:
    """(role, column) of the per-sample roles a table config maps (required ones even when
    unmapped: None); ``group`` once per column."""
    cols = table["columns"]
    required = ["sample_id", "time"] if table["layout"] == "long" else []
    for role in required + ["x", "y", "label", "tile", "parcel_id", "region", "year", "split"]:
        if role in required or cols.get(role) is not None:
            yield role, cols.get(role)
    for name in _group_columns(cols):
        yield "group", name


def table_bands(table: dict, header: list[str], registry: SensorRegistry, f: Findings,
                src: object) -> dict[str, list[str]]:
    """Bands of each sensor a table provides (wide: the header matched by the patterns;
    long: the band -> column map, its columns checked against the header)."""
    import re

    out = {}
    for name, spec in (table["columns"].get("bands") or {}).items():
        sensor = registry.get(name)
        if sensor is None:
            continue  # reported by check_sensors
        field = f"inputs.table.columns.bands.{name}"
        if isinstance(spec, dict):
            _check_bands(sensor, spec, field, f)
            for band, col in spec.items():
                if col not in header:
                    f.add(f"column {col!r} ({name} {band}) is not in the table", f"{field}.{band}",
                          "map the band to a column of the table", src)
            out[name] = [b for b in sensor.band_names if b in spec and spec[b] in header]
            continue
        try:
            rx = re.compile(str(spec))
        except re.error as err:
            f.add(f"bad column pattern {spec!r} ({err})", field,
                  "give a regex with named groups band and t", src)
            out[name] = []
            continue
        found = {m["band"] for m in map(rx.fullmatch, header) if m and "band" in m.groupdict()}
        _check_bands(sensor, sorted(found), field, f)
        out[name] = [b for b in sensor.band_names if b in found]
    return out


def check_table_encoding(table: dict, f: Findings) -> None:
    """A table's ``encoding`` names sensors of ``columns.bands`` (another would be ignored)."""
    sensors = list(table["columns"].get("bands") or {})
    for name in table.get("encoding") or {}:
        if name not in sensors:
            f.add(f"encoding of {name}, which is not a sensor of the table (columns.bands: "
                  f"{sensors}): it would never be used", f"inputs.table.encoding.{name}",
                  f"rename it to the sensor it describes (one of {sensors})")


def check_crs(cfg: dict, f: Findings) -> None:
    """Every CRS the config gives (a table's ``xy_crs``, a sensor input's ``crs``) is one
    pyproj knows."""
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    given = {f"inputs.{key}.crs": section.get("crs")
             for key, section in sensor_inputs(cfg).items()}
    given["inputs.table.xy_crs"] = (cfg["inputs"].get("table") or {}).get("xy_crs")
    for field, crs in given.items():
        if not crs:
            continue
        try:
            CRS.from_user_input(crs)
        except CRSError as err:
            f.add(f"{field.rsplit('.', 1)[1]} {crs!r} is not a CRS "
                  f"({str(err).splitlines()[0]})", field,
                  "give an EPSG code, e.g. EPSG:4326 (longitude / latitude degrees) or the "
                  "UTM zone's EPSG:326NN")


def check_table(cfg: dict, f: Findings, registry: SensorRegistry
                ) -> dict[str, list[str]] | None:
    """A table's header (mapped columns, band patterns) and label / group / split columns;
    returns the bands per sensor it provides (None when it cannot be read)."""
    from gpvae.io import table_cells
    from gpvae.io.tables import read_table

    table = cfg["inputs"].get("table")
    if not table:
        return None
    check_table_encoding(table, f)
    if not Path(table["path"]).is_file():
        return None
    src = Path(table["path"])
    before = len(f.problems)
    try:
        header = [str(c) for c in read_table(src, header_only=True).columns]
    except InputError as err:
        f.absorb(err)
        return None
    roles = list(_table_columns(table))
    for role, name in roles:
        if name is None:
            f.add(f"no column given for {role!r}", f"inputs.table.columns.{role}",
                  f"map {role} to a column of the table", src)
        elif name not in header:
            f.add(f"column {name!r} ({role}) is not in the table (columns: {header[:15]}"
                  f"{'...' if len(header) > 15 else ''})", f"inputs.table.columns.{role}",
                  f"{table_cells.separator_hint(header)}use a column name of the table", src)
    origin = table.get("time_origin")
    if table["layout"] == "wide" and origin is not None and origin not in header:
        _date(origin, "inputs.table.time_origin", f)
    if not table["columns"].get("bands"):
        f.add("no sensor columns given", "inputs.table.columns.bands",
              "map each sensor (e.g. S2, S1_DES, MOD13Q1) to its columns", src)
    bands = table_bands(table, header, registry, f, src)
    for sensor, found in bands.items():
        if not found:
            f.add(f"no column of the table gives a {sensor} band", f"inputs.table.columns."
                  f"bands.{sensor}", "check the pattern (named groups band and t) or the "
                  "band -> column mapping against the table's columns", src)
    if len(f.problems) > before:
        return bands
    names = dict(r for r in roles if r[0] in ("label", "parcel_id", "sample_id", "split"))
    groups = _group_columns(table["columns"])
    if "label" not in names:
        return bands  # unlabelled: no classes to check
    try:
        df = read_table(src, columns=sorted(set(names.values()) | set(groups)))
        if "split" in names:
            table_cells.splits(df[names["split"]], file=src, column=names["split"])
    except InputError as err:
        f.absorb(err)
        return bands
    text = df[names["label"]].astype(str).str.strip()
    labelled = (df[names["label"]].notna() & (text != "")).to_numpy()
    if groups:
        units = pd.MultiIndex.from_frame(df[groups].astype(str)).to_numpy()
    else:
        group = names.get("parcel_id") or names.get("sample_id")  # else: one parcel per row
        units = df[group].to_numpy() if group else np.arange(len(df))
    per_class = (pd.DataFrame({"c": text.to_numpy()[labelled], "u": units[labelled]})
                 .groupby("c")["u"].nunique())
    if "split" not in names:
        check_classes(cfg, f, {str(c): int(n) for c, n in per_class.items()}, src,
                      f"inputs.table.columns.label ({names['label']})")
    return bands


def input_sensors(cfg: dict) -> list[str]:
    """Sensors the inputs provide: a table's sensors (columns.bands), else every sensor
    entry of the inputs in config order (S1 -> S1_<orbit> per orbit direction)."""
    table = cfg["inputs"].get("table")
    if table:
        return list(table["columns"].get("bands") or {})
    return [s for key, section in sensor_inputs(cfg).items() for s in sensors_of(key, section)]


def check_config_file(path: str | Path) -> list[str]:
    """A config file as the workflow would check it at start-up (YAML, schema, sensor
    registry, start-up checks, paths relative to the current folder); returns the warnings."""
    from gpvae.config import load_config

    cfg = load_config(path)
    registry = sensor_registry(cfg["sensors"], source=str(path))
    tiles = [] if cfg["inputs"].get("table") else cfg["tiles"]
    return startup_checks(cfg, sensors=input_sensors(cfg), tiles=tiles, source=str(path),
                          registry=registry)


def startup_checks(cfg: dict, *, sensors: list[str], tiles: list[str],
                   source: str = "config", registry: SensorRegistry | None = None
                   ) -> list[str]:
    """Check a validated config (schema defaults filled) against its inputs' metadata and
    the sensor registry (default: the built-ins plus the config's ``sensors:``).

    Raises one InputError naming every problem (file, field, fix each); returns warnings.
    ``sensors``: the sensors the inputs provide; ``tiles``: the tiles to process.
    """
    registry = registry if registry is not None else sensor_registry(cfg.get("sensors"),
                                                                     source=source)
    f = Findings()
    check_sensors(cfg, f, registry)
    check_inputs(cfg, f, tiles, sensors, registry)
    check_generic_cubes(cfg, f, tiles)
    check_split(cfg, f)
    check_ranges(cfg, f)
    check_crs(cfg, f)
    check_predict(cfg, f, tiles)
    tb = check_table(cfg, f, registry)
    check_models(cfg, f, sensors, tb, registry)
    check_init_from(cfg, f)
    check_update(cfg, f, sensors)
    check_protocols(cfg, f, tiles, sensors, tb, registry)
    check_parcels(cfg, f, tiles)
    for p in f.problems:
        p.file = p.file or source
    if len(f.problems) == 1:
        raise f.problems[0].error()
    if f.problems:
        lines = "\n  - ".join(str(p.error()) for p in f.problems)
        raise InputError(f"{len(f.problems)} problems in the configuration:\n  - {lines}")
    return f.warnings
