"""Sample tables: already-extracted pixel / point time series (parquet or CSV) to pixels.nc.

Skips extract / mask / sample. Two layouts:

- ``wide``: one row per sample, one column per (band, time step), matched per sensor by a
  regular expression with named groups ``band`` and ``t`` (time step index), e.g.
  WorldCereal ``OPTICAL-(?P<band>B\\w+)-ts(?P<t>\\d+)-\\d+m``. Time of step t =
  ``time_origin`` (a date or a column of dates) + t * ``time_step`` (``1M`` months, ``10D``
  days).
- ``long``: one row per (sample, date): a ``time`` column and, per sensor, band -> column.

``columns`` maps the roles to column names: ``bands`` (per sensor of the registry: the regex
(wide) or {band: column} (long); any band name the sensor declares: B04, SR_B4, NDVI, VV...),
``sample_id`` and ``time`` (long layout), and the optional ``x``, ``y``, ``label``,
``group``, ``tile``, ``parcel_id``, ``region``, ``year``, ``split`` (the table stage,
gpvae.preprocess.table, uses them). ``encoding`` per sensor: ``scale``, ``offset`` (default:
the sensor's product scale for integer columns, none for float columns), ``nodata`` (list),
and for SAR sensors ``sar_units`` (``linear`` | ``db`` | ``db_uint16``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from gpvae.errors import InputError
from gpvae.io.failures import reading
from gpvae.io.radiometry import REFLECTANCE, check_reflectance
from gpvae.io.sar import sar_to_linear
from gpvae.io.sensors import Sensor, SensorRegistry, builtin_sensors
from gpvae.io.table_cells import (
    dates,
    integers,
    is_csv,
    numbers,
    required,
    separator_hint,
    splits,
    where,
)

log = logging.getLogger(__name__)

LAYOUTS = ("wide", "long")


def read_table(src: Path, columns: list[str] | None = None, *,
               header_only: bool = False) -> pd.DataFrame:
    """A parquet or CSV table (only ``columns`` when given; no rows with ``header_only``)."""
    src = Path(src)
    if not src.is_file():
        raise InputError("sample table not found", file=src, field="inputs.table.path",
                         fix="point inputs.table.path at a .parquet or .csv file")
    parquet = src.suffix.lower() in (".parquet", ".pq")
    if not parquet and not is_csv(src):
        raise InputError(f"unknown table format {src.suffix!r}", file=src,
                         field="inputs.table.path", fix="give a .parquet or .csv file")
    with reading(src, what="parquet table" if parquet else "CSV table",
                 field="inputs.table.path"):
        if header_only:
            df = (pd.DataFrame(columns=pq.read_schema(src).names) if parquet
                  else pd.read_csv(src, nrows=0))
        else:
            df = (pd.read_parquet(src, columns=columns) if parquet
                  else pd.read_csv(src, usecols=columns))
    if df.empty and not header_only:
        raise InputError(f"the table has no rows (columns: {list(map(str, df.columns))[:10]})",
                         file=src, field="inputs.table.path",
                         fix="export the samples into the table (a header alone is empty)")
    return df


def column(df: pd.DataFrame, columns: dict, role: str, *, file: object,
           required: bool = True) -> pd.Series | None:
    """The table column playing ``role`` (name from ``columns``), or None when optional."""
    name = columns.get(role)
    if name is None:
        if required:
            raise InputError(f"no column given for {role!r}", file=file,
                             field=f"columns.{role}", fix=f"map {role} to a column name")
        return None
    if name not in df.columns:
        raise InputError(f"column {name!r} ({role}) not in the table", file=file,
                         field=f"columns.{role}",
                         fix=f"{separator_hint(df.columns)}columns there: "
                             f"{', '.join(map(str, df.columns[:20]))}...")
    return df[name]


def step_times(origin: np.ndarray, steps: np.ndarray, time_step: str) -> np.ndarray:
    """origin + step * time_step (``<n>M`` calendar months or ``<n>D`` days), datetime64[ns].
    """
    m = re.fullmatch(r"(\d*)\s*([MD])", str(time_step).strip().upper())
    if m is None:
        raise InputError(f"time step {time_step!r} unknown", field="time_step",
                         fix="write e.g. 1M (months) or 10D (days)")
    n = int(m[1] or 1) * np.asarray(steps, dtype=np.int64)
    origin = np.asarray(origin).astype("datetime64[ns]")
    if m[2] == "D":
        return origin + n.astype("timedelta64[D]")
    month = origin.astype("datetime64[M]") + n.astype("timedelta64[M]")
    return (month + (origin - origin.astype("datetime64[M]"))).astype("datetime64[ns]")


def decode_values(raw: np.ndarray, sensor: Sensor, encoding: dict | None, *,
                  file: object = None, field: str | None = None) -> np.ndarray:
    """Physical values (reflectance, index, linear sigma0) of raw table values; NaN = missing.

    Unset ``scale`` / ``offset``: the sensor's product scale for integer columns (raw DN),
    none for float columns (already physical)."""
    enc = dict(encoding or {})
    integer = np.issubdtype(np.asarray(raw).dtype, np.integer)
    v = numbers(raw, file=file, column=str(field))
    nodata = np.atleast_1d(enc.get("nodata", []))
    if nodata.size:
        v = np.where(np.isin(v, nodata), np.nan, v)
    scale = enc.get("scale", sensor.scale if integer else 1.0)
    offset = enc.get("offset", sensor.offset if integer else 0.0)
    v = v * float(scale) + float(offset)
    if sensor.is_sar:
        return sar_to_linear(v, enc.get("sar_units", "linear"), file=file, field=field)
    return v.astype(np.float32)


def wide_series(df: pd.DataFrame, sensor: Sensor, pattern: str, *, file: object
                ) -> tuple[np.ndarray, dict[str, dict[int, str]]]:
    """Columns of a sensor in a wide table: (step indices, band -> {step: column})."""
    field = f"columns.bands.{sensor.name}"
    try:
        rx = re.compile(pattern)
    except re.error as err:
        raise InputError(f"bad column pattern {pattern!r} ({err})", file=file, field=field,
                         fix="give a regex with named groups band and t") from err
    found: dict[str, dict[int, str]] = {}
    for name in map(str, df.columns):
        m = rx.fullmatch(name)
        if m:
            found.setdefault(m["band"], {})[int(m["t"])] = name
    if not found:
        raise InputError(f"no column matches the {sensor.name} pattern {pattern!r}",
                         file=file, field=field,
                         fix="check the regex (named groups band and t) against the columns")
    sensor.check_bands(found, file=file, field=field)
    steps = np.array(sorted({t for cols in found.values() for t in cols}))
    return steps, found


def group_columns(columns: dict) -> list[str]:
    """The column(s) of the ``group`` role (a name or a list of names; none when unset)."""
    group = columns.get("group")
    return [] if group is None else [group] if isinstance(group, str) else list(group)


def checked_roles(df: pd.DataFrame, columns: dict, *, file: object) -> pd.DataFrame:
    """The table with its per-sample role columns parsed strictly (InputError naming row and
    column of a bad cell): ids, tile, region and group on every row, x/y numbers on every row
    (when mapped: they are optional), year whole numbers, split names. Labels are optional (a
    sample without one stays unlabelled), but the rows of one sample must agree: some rows of
    a sample with a label and others without is an error naming those rows.
    """
    df = df.copy()

    def present(role: str) -> Callable[[pd.Series, str], object]:
        return lambda s, c: required(s, file=file, column=c, role=role)

    def coordinate(s: pd.Series, c: str) -> np.ndarray:
        return numbers(required(s, file=file, column=c, role="coordinate"), file=file,
                       column=c)

    column(df, columns, "label", file=file, required=False)  # mapped: it must exist
    parsers = {role: present(role) for role in ("sample_id", "parcel_id", "tile", "region")}
    parsers |= {"x": coordinate, "y": coordinate,
                "year": lambda s, c: integers(s, file=file, column=c, role="year"),
                "split": lambda s, c: splits(s, file=file, column=c)}
    for role, parse in parsers.items():
        series = column(df, columns, role, file=file, required=False)
        if series is not None:
            df[columns[role]] = np.asarray(parse(series, columns[role]))
    for name in group_columns(columns):
        series = column(df, {**columns, "group": name}, "group", file=file)
        required(series, file=file, column=name, role="group")
    _check_sample_labels(df, columns, file=file)
    return df


def _check_sample_labels(df: pd.DataFrame, columns: dict, *, file: object) -> None:
    """Rows without a label whose sample has a label on other rows (long layout)."""
    label = column(df, columns, "label", file=file, required=False)
    sid = column(df, columns, "sample_id", file=file, required=False)
    if label is None or sid is None:
        return
    empty = (label.isna() | label.astype(str).str.strip().eq("")).to_numpy()
    mixed = np.flatnonzero(empty & sid.isin(set(sid[~empty])).to_numpy())
    if mixed.size:
        name = columns["label"]
        raise InputError(f"{mixed.size} row(s) have no label in column {name!r}: "
                         f"{where(mixed, file)}, while other rows of the same sample have one",
                         file=file, field=name,
                         fix="give every row of a sample its label (a sample with no label "
                             "on any row stays unlabelled), or remove those rows")


def time_origins(rows: pd.DataFrame, time_origin: str, *, file: object) -> np.ndarray:
    """Date of step 0 of each row: a column of dates, or one date for all rows."""
    if time_origin in rows.columns:
        return dates(rows[time_origin], file=file, column=time_origin)
    try:
        origin = pd.Timestamp(str(time_origin))
    except ValueError as err:
        raise InputError(f"time_origin {time_origin!r} is neither a column nor a date",
                         file=file, field="inputs.table.time_origin",
                         fix="give the date of step 0 (YYYY-MM-DD) or the name of a column "
                             "of dates") from err
    return np.full(len(rows), np.datetime64(origin.tz_localize(None), "ns"))


def checked_optical(values: np.ndarray, sensor: Sensor, name: str, *, file: object
                    ) -> np.ndarray:
    """``values`` of a sensor (``name`` in the table); an optical (surface reflectance) one's
    after checking they look like reflectance."""
    if sensor.radiometry == REFLECTANCE:
        check_reflectance(values, reader="table", file=file,
                          field=f"inputs.table.encoding.{name}.scale", what=name)
    return values


def _sensors(band_map: dict, registry: SensorRegistry, file: object) -> dict[str, Sensor]:
    if not band_map:
        raise InputError("no sensor columns given", file=file, field="columns.bands",
                         fix="map each sensor (e.g. S2, S1_DES, MOD13Q1) to its columns")
    out = {}
    for name in band_map:
        try:
            out[name] = registry[name]
        except InputError as err:
            raise InputError(str(err).split(" | ")[0], file=file,
                             field=f"columns.bands.{name}", fix=err.fix) from err
    return out


def one_row_per_date(df: pd.DataFrame, codes: np.ndarray, when: np.ndarray,
                     band_columns: list[str], *, columns: dict, file: object) -> None:
    """A long table holds each (sample, date) once: rows repeating one with other values
    (a sample_id shared by several pixels, points or seasons) would overwrite each other."""
    key = pd.DataFrame({"sample": codes, "date": when})
    repeated = np.flatnonzero(key.duplicated(keep=False).to_numpy())
    if not repeated.size:
        return
    values = df.iloc[repeated][band_columns].reset_index(drop=True)
    values = values.astype(str).agg("|".join, axis=1) if band_columns else pd.Series(
        "", index=values.index)
    groups = key.iloc[repeated].reset_index(drop=True).assign(values=values)
    differ = groups.groupby(["sample", "date"])["values"].transform("nunique") > 1
    if not differ.any():
        return  # exact copies of a row: the values agree
    first = groups[differ.to_numpy()].iloc[0]
    rows = repeated[((groups["sample"] == first["sample"])
                     & (groups["date"] == first["date"])).to_numpy()]
    sid_col, time_col = columns["sample_id"], columns["time"]
    raise InputError(
        f"{int(differ.sum())} rows repeat a ({sid_col}, {time_col}) pair with other values, "
        f"e.g. {sid_col} {str(df[sid_col].iloc[rows[0]])!r} on "
        f"{str(np.datetime64(first['date'], 'D'))} at {where(rows, file)}", file=file,
        field=f"columns.sample_id ({sid_col})",
        fix=f"map sample_id to a column that names one series (one pixel or point, one "
            f"season): is {sid_col!r} a parcel or point id shared by several series? Else "
            f"drop the repeated rows")


def table_arrays(df: pd.DataFrame, *, layout: str, columns: dict, encoding: dict,
                 time_origin: str | None, time_step: str, file: object,
                 registry: SensorRegistry | None = None
                 ) -> tuple[pd.DataFrame, dict, dict, dict]:
    """Per-sample rows and, per sensor, values (sample, time, band), times, bands.

    ``registry``: the sensors (default: the built-ins); bands come in each sensor's order."""
    band_map = columns.get("bands") or {}
    sensors = _sensors(band_map, registry or builtin_sensors(), file)
    values, times, bands = {}, {}, {}
    if layout == "wide":
        rows = df.reset_index(drop=True)
        if time_origin is None:
            raise InputError("a wide table needs time_origin", file=file, field="time_origin",
                             fix="give the date of step 0 or the column holding it")
        origin = time_origins(rows, time_origin, file=file)
        for name, pattern in band_map.items():
            sensor = sensors[name]
            steps, found = wide_series(rows, sensor, pattern, file=file)
            bands[name] = sensor.ordered(found)
            when = step_times(origin[:, None], steps[None, :], time_step)  # (sample, step)
            times[name] = np.unique(when)
            pos = np.searchsorted(times[name], when)
            out = np.full((len(rows), len(times[name]), len(bands[name])), np.nan, np.float32)
            for k, band in enumerate(bands[name]):
                for j, t in enumerate(steps):
                    if t in found[band]:
                        col = found[band][t]
                        out[np.arange(len(rows)), pos[:, j], k] = decode_values(
                            rows[col].to_numpy(), sensor, encoding.get(name), file=file,
                            field=col)
            values[name] = checked_optical(out, sensor, name, file=file)
        return rows, values, times, bands
    sid = column(df, columns, "sample_id", file=file)
    when = dates(column(df, columns, "time", file=file), file=file, column=columns["time"])
    codes, uniques = pd.factorize(sid, sort=False)
    band_columns = [c for cols in band_map.values() if isinstance(cols, dict)
                    for c in cols.values() if c in df.columns]
    one_row_per_date(df, codes, when, band_columns, columns=columns, file=file)
    rows = df.groupby(codes, sort=True).first().reset_index(drop=True)
    for name, cols in band_map.items():
        sensor = sensors[name]
        if not isinstance(cols, dict):
            raise InputError(f"long layout: columns.bands.{name} must map bands to columns",
                             file=file, field=f"columns.bands.{name}",
                             fix=f"e.g. {{{sensor.band_names[0]}: <column>}}")
        sensor.check_bands(cols, file=file, field=f"columns.bands.{name}")
        bands[name] = sensor.ordered(cols)
        times[name] = np.unique(when)
        pos = np.searchsorted(times[name], when)
        out = np.full((len(uniques), len(times[name]), len(bands[name])), np.nan, np.float32)
        for k, band in enumerate(bands[name]):
            col = cols[band]
            if col not in df.columns:
                raise InputError(f"column {col!r} ({name} {band}) not in the table",
                                 file=file, field=f"columns.bands.{name}.{band}",
                                 fix="map the band to an existing column")
            out[codes, pos, k] = decode_values(df[col].to_numpy(), sensor,
                                               encoding.get(name), file=file, field=col)
        values[name] = checked_optical(out, sensor, name, file=file)
    return rows, values, times, bands
