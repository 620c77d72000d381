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
from pathlib import Path

import numpy as np
import pandas as pd

from gpvae.errors import InputError
from gpvae.io.sar import sar_to_linear
from gpvae.io.sensors import Sensor, SensorRegistry, builtin_sensors

log = logging.getLogger(__name__)

LAYOUTS = ("wide", "long")


def read_table(src: Path) -> pd.DataFrame:
    """A parquet or CSV table."""
    src = Path(src)
    if not src.is_file():
        raise InputError("sample table not found", file=src, field="inputs.table.path",
                         fix="point inputs.table.path at a .parquet or .csv file")
    if src.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(src)
    if src.suffix.lower() in (".csv", ".txt") or src.name.endswith(".csv.gz"):
        return pd.read_csv(src)
    raise InputError(f"unknown table format {src.suffix!r}", file=src,
                     field="inputs.table.path", fix="give a .parquet or .csv file")


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
                         fix=f"columns there: {', '.join(map(str, df.columns[:20]))}...")
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
    v = np.asarray(raw, dtype=np.float64)
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
        origin = (pd.to_datetime(rows[time_origin]) if time_origin in rows.columns else
                  pd.Series(pd.Timestamp(time_origin), index=rows.index)).to_numpy()
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
            values[name] = out
        return rows, values, times, bands
    sid = column(df, columns, "sample_id", file=file)
    when = pd.to_datetime(column(df, columns, "time", file=file)).to_numpy()
    codes, uniques = pd.factorize(sid, sort=False)
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
        values[name] = out
    return rows, values, times, bands
