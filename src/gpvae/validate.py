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
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from gpvae.errors import InputError
from gpvae.io.bands import SENSOR_BANDS

#: Model names that are baselines of the gap-filling and classification stages.
RESERVED_MODELS = ("linear", "gp", "raw_linear")


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

    def absorb(self, err: InputError) -> None:
        """Record an InputError raised by a reader's own checks."""
        what = str(err).split(" | ")[0]
        self.problems.append(Problem(what, err.field or "", err.fix or "", err.file))


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


# --------------------------------------------------------------------------- checks


def check_inputs(cfg: dict, f: Findings, tiles: list[str]) -> None:
    """Products (S2 + parcels per tile) or a table; every input path present."""
    inputs = cfg["inputs"]
    table = inputs.get("table")
    if not table and not (inputs.get("S2") and inputs.get("parcels") and tiles):
        f.add("the inputs are incomplete", "inputs",
              "give either inputs.table, or tiles + inputs.S2 + inputs.parcels (see "
              "config/examples/)")
        return
    if table:
        if not Path(table["path"]).is_file():
            f.add("sample table not found", "inputs.table.path",
                  "point inputs.table.path at a .parquet or .csv file", table["path"])
        return
    for key in ("S2", "S1", "parcels"):
        section = inputs.get(key)
        if not section:
            continue
        for tile in tiles:
            path = tile_path(section["path"], tile)
            if not (_is_url(path) or _produced_by_scene(cfg, path) or Path(path).exists()):
                f.add(f"input of tile {tile} not found", f"inputs.{key}.path",
                      f"check the path ('{{tile}}' is replaced by the tile name) and the "
                      f"tiles list {tiles}", path)
    for key in ("S2", "S1"):
        section = inputs.get(key) or {}
        if section.get("format") == "generic" and not section.get("bands"):
            f.add("the generic reader needs a band mapping", f"inputs.{key}.bands",
                  "add bands: {B04: <variable name>, ...} (canonical band -> variable)")
    s1 = inputs.get("S1") or {}
    if s1.get("format") in ("openeo", "generic") and len(s1.get("orbits") or []) != 1:
        f.add(f"an {s1['format']} S1 cube holds one orbit direction, orbits lists "
              f"{s1.get('orbits')}", "inputs.S1.orbits",
              "set orbits to the cube's one direction, [ASC] or [DES]")
    unknown = sorted(set(inputs.get("regions") or {}) - set(tiles))
    if unknown:
        f.add(f"regions names tiles {unknown} that are not in tiles {tiles}",
              "inputs.regions", "use tile names of `tiles` as keys (or remove them)")


def cube_variables(path: str) -> list[str] | None:
    """Variable names of a netCDF file (metadata only); None when it is not one."""
    import netCDF4

    try:
        with netCDF4.Dataset(path) as nc:
            return list(nc.variables)
    except (OSError, RuntimeError, ValueError):
        return None  # not netCDF (zarr, or broken: the extract stage says which)


def check_generic_cubes(cfg: dict, f: Findings, tiles: list[str]) -> None:
    """The variables a generic reader is told to read exist in each tile's netCDF cube."""
    for key in ("S2", "S1"):
        section = cfg["inputs"].get(key) or {}
        if section.get("format") != "generic" or not section.get("bands"):
            continue
        wanted = {f"bands.{b}": v for b, v in section["bands"].items()}
        wanted["time_var"] = section.get("time_var", "time")
        if section.get("mask"):
            wanted["mask.variable"] = section["mask"].get("variable")
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


def provided_bands(cfg: dict, sensor: str, table_bands: dict[str, list[str]] | None
                   ) -> list[str] | None:
    """Bands the inputs deliver for ``sensor`` (None when only the data can tell)."""
    if table_bands is not None:
        return table_bands.get(sensor)
    inputs = cfg["inputs"]
    section = (inputs.get("S2") if sensor == "S2" else inputs.get("S1")) or {}
    if section.get("format") == "generic":  # no mapping: reported by check_inputs
        mapping = section.get("bands")
        return [b for b in SENSOR_BANDS.get(sensor, []) if b in mapping] if mapping else None
    chosen = cfg.get("extract", {}).get("bands") if sensor == "S2" else None
    return list(chosen or SENSOR_BANDS.get(sensor, []))


def check_models(cfg: dict, f: Findings, sensors: list[str],
                 table_bands: dict[str, list[str]] | None) -> None:
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
        asked = model.get("sensors") or ["S2"]
        for s in asked:
            if s not in sensors:
                f.add(f"model {name} reads sensor {s}, which the inputs do not provide "
                      f"(they give {', '.join(sensors)})", f"models.{name}.sensors",
                      f"remove {s} from models.{name}.sensors, or add it to the inputs "
                      "(inputs.S1.orbits, or the table's columns.bands)")
        for s, bands in (model.get("bands") or {}).items():
            if s not in asked:
                f.add(f"bands are given for sensor {s}, which model {name} does not read",
                      f"models.{name}.bands.{s}", f"add {s} to models.{name}.sensors or "
                      "remove the entry")
                continue
            have = provided_bands(cfg, s, table_bands) if s in sensors else None
            if have is None:
                continue
            missing = [b for b in bands if b not in have]
            if missing:
                f.add(f"model {name} asks for {s} bands {missing}, the inputs provide "
                      f"{have}", f"models.{name}.bands.{s}",
                      "ask for provided bands (or add them: extract.bands, the generic "
                      "band mapping or the table's columns)")
        lo, hi = model.get("time_range", [-30, 400])
        if lo >= hi:
            f.add(f"time_range {[lo, hi]} is empty", f"models.{name}.time_range",
                  "give [first day, last day] with first < last")
    unknown = sorted(set(cfg.get("predict", {}).get("models") or []) - set(models))
    if unknown:
        f.add(f"predict.models names unknown models {unknown}", "predict.models",
              f"use names among {sorted(models)} (or null for all)")


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
    """Ordered date range, AOI, reference days and gap lengths."""
    e = cfg.get("extract", {})
    start, end = _date(e.get("start"), "extract.start", f), _date(e.get("end"), "extract.end", f)
    if start is not None and end is not None and start > end:
        f.add(f"start date {start} is after end date {end}", "extract.start/end",
              "swap them (start <= end)")
    aoi = e.get("aoi")
    if aoi and not (aoi[0] < aoi[2] and aoi[1] < aoi[3]):
        f.add(f"AOI {aoi} is not [xmin, ymin, xmax, ymax]", "extract.aoi",
              "give xmin < xmax and ymin < ymax, in the tile CRS")
    emb = cfg.get("embed", {})
    if emb.get("ref_start_day", 0) > emb.get("ref_end_day", 365):
        f.add(f"ref_start_day {emb['ref_start_day']} is after ref_end_day "
              f"{emb['ref_end_day']}", "embed.ref_start_day", "give start <= end")
    gaps = cfg.get("gapfill", {}).get("gap_days", [30, 60])
    if gaps[0] > gaps[1]:
        f.add(f"gap_days {gaps} is not [shortest, longest]", "gapfill.gap_days",
              "give the shorter length first")


def check_protocols(cfg: dict, f: Findings, tiles: list[str], sensors: list[str],
                    table_bands: dict[str, list[str]] | None) -> None:
    """Protocols that cannot run on these inputs (warnings: they are skipped); what the
    report is asked to show (problems)."""
    if not cfg.get("models"):
        return
    protocols = cfg.get("downstream", {}).get("protocols", [])
    regions = {(cfg["inputs"].get("regions") or {}).get(t, t) for t in tiles}
    if "region" in protocols and tiles and len(regions) < 2:
        f.warnings.append(f"protocol region needs two regions, the tiles make one "
                          f"({sorted(regions)}): it will be skipped. Fix: add a tile or "
                          "map tiles to regions (inputs.regions), or drop it from "
                          "downstream.protocols")
    years = cfg["sample"].get("years") or (cfg.get("scene") or {}).get("years")
    if "year" in protocols and years and len(set(years)) < 2:
        f.warnings.append(f"protocol year needs two years, there is one ({years}): it will "
                          "be skipped. Fix: sample two years, or drop it from "
                          "downstream.protocols")
    report = cfg.get("report") or {}
    band = report.get("example_band", "B08")
    have = provided_bands(cfg, "S2", table_bands) if "S2" in sensors else None
    if have is not None and band not in have:
        f.add(f"report.example_band {band} is not an S2 band of the inputs ({have})",
              "report.example_band", f"use one of {have}")
    if report.get("confusion_protocol", "parcel") not in protocols:
        f.add(f"report.confusion_protocol {report.get('confusion_protocol')!r} is not run",
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
    if cfg.get("models") and len(parcels_per_class) < 2:
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


def _table_columns(table: dict) -> Iterable[tuple[str, str]]:
    """(role, column) of the per-sample roles a table config maps."""
    cols = table["columns"]
    required = ["x", "y", "label"] + (["sample_id", "time"] if table["layout"] == "long" else [])
    for role in required + ["tile", "parcel_id", "region", "year", "split"]:
        if role in required or cols.get(role) is not None:
            yield role, cols.get(role)


def table_bands(table: dict, header: list[str]) -> dict[str, list[str]]:
    """Bands of each sensor a table provides (wide: the header matched by the patterns)."""
    import re

    out = {}
    for sensor, spec in (table["columns"].get("bands") or {}).items():
        if isinstance(spec, dict):
            out[sensor] = [b for b in SENSOR_BANDS.get(sensor, []) if b in spec]
            continue
        try:
            rx = re.compile(str(spec))
        except re.error:
            out[sensor] = []
            continue
        found = {m["band"] for m in map(rx.fullmatch, header) if m and "band" in m.groupdict()}
        out[sensor] = [b for b in SENSOR_BANDS.get(sensor, []) if b in found]
    return out


def check_table(cfg: dict, f: Findings) -> dict[str, list[str]] | None:
    """A table's header (mapped columns, band patterns) and label / parcel / split columns;
    returns the bands per sensor it provides (None when it cannot be read)."""
    from gpvae.io import table_cells
    from gpvae.io.tables import read_table

    table = cfg["inputs"].get("table")
    if not table or not Path(table["path"]).is_file():
        return None
    src = Path(table["path"])
    before = len(f.problems)
    try:
        header = [str(c) for c in read_table(src, header_only=True).columns]
    except InputError as err:
        f.absorb(err)
        return None
    roles = dict(_table_columns(table))
    for role, name in roles.items():
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
    bands = table_bands(table, header)
    for sensor, found in bands.items():
        if sensor in SENSOR_BANDS and not found:
            f.add(f"no column of the table gives a {sensor} band", f"inputs.table.columns."
                  f"bands.{sensor}", "check the pattern (named groups band and t) or the "
                  "band -> column mapping against the table's columns", src)
    if len(f.problems) > before:
        return bands
    names = {r: roles[r] for r in ("label", "parcel_id", "sample_id", "split") if roles.get(r)}
    try:
        df = read_table(src, columns=sorted(set(names.values())))
        labels = table_cells.required(df[names["label"]], file=src, column=names["label"],
                                      role="label").astype(str).to_numpy()
        if "split" in names:
            table_cells.splits(df[names["split"]], file=src, column=names["split"])
    except InputError as err:
        f.absorb(err)
        return bands
    group = names.get("parcel_id") or names.get("sample_id")  # else: one parcel per row
    units = df[group].to_numpy() if group else np.arange(len(df))
    per_class = pd.DataFrame({"c": labels, "u": units}).groupby("c")["u"].nunique()
    if "split" not in names:
        check_classes(cfg, f, {str(c): int(n) for c, n in per_class.items()}, src,
                      f"inputs.table.columns.label ({names['label']})")
    return bands


def input_sensors(cfg: dict) -> list[str]:
    """Sensors the inputs provide: a table's sensors, else S2 and the S1 orbit directions."""
    table = cfg["inputs"].get("table")
    if table:
        return list(table["columns"].get("bands", {}) or ["S2"])
    return ["S2"] + [f"S1_{o}" for o in (cfg["inputs"].get("S1") or {}).get("orbits", [])]


def check_config_file(path: str | Path) -> list[str]:
    """A config file as the workflow would check it at start-up (YAML, schema, start-up
    checks, paths relative to the current folder); returns the warnings."""
    from gpvae.config import load_config

    cfg = load_config(path)
    tiles = [] if cfg["inputs"].get("table") else cfg["tiles"]
    return startup_checks(cfg, sensors=input_sensors(cfg), tiles=tiles, source=str(path))


def startup_checks(cfg: dict, *, sensors: list[str], tiles: list[str],
                   source: str = "config") -> list[str]:
    """Check a validated config (schema defaults filled) against its inputs' metadata.

    Raises one InputError naming every problem (file, field, fix each); returns warnings.
    ``sensors``: the sensors the inputs provide; ``tiles``: the tiles to process.
    """
    f = Findings()
    check_inputs(cfg, f, tiles)
    check_generic_cubes(cfg, f, tiles)
    check_split(cfg, f)
    check_ranges(cfg, f)
    tb = check_table(cfg, f)
    check_models(cfg, f, sensors, tb)
    check_protocols(cfg, f, tiles, sensors, tb)
    check_parcels(cfg, f, tiles)
    for p in f.problems:
        p.file = p.file or source
    if len(f.problems) == 1:
        raise f.problems[0].error()
    if f.problems:
        lines = "\n  - ".join(str(p.error()) for p in f.problems)
        raise InputError(f"{len(f.problems)} problems in the configuration:\n  - {lines}")
    return f.warnings
