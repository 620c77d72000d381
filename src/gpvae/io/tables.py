"""Sample tables: already-extracted pixel / point time series (parquet or CSV) to pixels.nc.

Skips extract / mask / sample. Two layouts:

- ``wide``: one row per sample, one column per (band, time step), matched per sensor by a
  regular expression with named groups ``band`` and ``t`` (time step index), e.g.
  WorldCereal ``OPTICAL-(?P<band>B\\w+)-ts(?P<t>\\d+)-\\d+m``. Time of step t =
  ``time_origin`` (a date or a column of dates) + t * ``time_step`` (``1M`` months, ``10D``
  days).
- ``long``: one row per (sample, date): a ``time`` column and, per sensor, band -> column.

``columns`` maps the roles to column names: ``sample_id`` (long layout: required), ``x``,
``y``, ``label``, optional ``tile``, ``parcel_id``, ``region``, ``year``, ``split``, and
``bands`` (per sensor: the regex (wide) or {band: column} (long)). ``encoding`` per sensor:
``scale``, ``offset``, ``nodata`` (list), and for S1 ``sar_units`` (``linear`` | ``db`` |
``db_uint16``). Labels not in ``classes`` are an error.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from gpvae.errors import InputError
from gpvae.io.sar import sar_to_linear
from gpvae.io.sensors import SENSOR_BANDS

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


def decode_values(raw: np.ndarray, sensor: str, encoding: dict | None, *,
                  file: object = None, field: str | None = None) -> np.ndarray:
    """Physical values (reflectance, linear sigma0) of raw table values; NaN = missing."""
    enc = dict(encoding or {})
    v = np.asarray(raw, dtype=np.float64)
    nodata = enc.get("nodata", [])
    v = np.where(np.isin(v, np.atleast_1d(nodata)) if len(np.atleast_1d(nodata)) else False,
                 np.nan, v)
    v = v * float(enc.get("scale", 1.0)) + float(enc.get("offset", 0.0))
    if sensor.startswith("S1"):
        return sar_to_linear(v, enc.get("sar_units", "linear"), file=file, field=field)
    return v.astype(np.float32)


def wide_series(df: pd.DataFrame, sensor: str, pattern: str, origin: np.ndarray,
                time_step: str, *, file: object) -> tuple[np.ndarray, dict[str, dict[int, str]]]:
    """Columns of a sensor in a wide table: (step indices, band -> {step: column})."""
    try:
        rx = re.compile(pattern)
    except re.error as err:
        raise InputError(f"bad column pattern {pattern!r} ({err})", file=file,
                         field=f"columns.bands.{sensor}",
                         fix="give a regex with named groups band and t") from err
    found: dict[str, dict[int, str]] = {}
    for name in map(str, df.columns):
        m = rx.fullmatch(name)
        if m and m["band"] in SENSOR_BANDS[sensor]:
            found.setdefault(m["band"], {})[int(m["t"])] = name
    if not found:
        raise InputError(f"no column matches the {sensor} pattern {pattern!r}", file=file,
                         field=f"columns.bands.{sensor}",
                         fix="check the regex (named groups band and t) against the columns")
    steps = np.array(sorted({t for cols in found.values() for t in cols}))
    return steps, found


def table_arrays(df: pd.DataFrame, *, layout: str, columns: dict, encoding: dict,
                 time_origin: str | None, time_step: str, file: object
                 ) -> tuple[pd.DataFrame, dict, dict, dict]:
    """Per-sample rows and, per sensor, values (sample, time, band), times, bands."""
    band_map = columns.get("bands") or {}
    if not band_map:
        raise InputError("no sensor columns given", file=file, field="columns.bands",
                         fix="map each sensor (S2, S1_ASC, S1_DES) to its columns")
    for sensor in band_map:
        if sensor not in SENSOR_BANDS:
            raise InputError(f"unknown sensor {sensor!r}", file=file, field="columns.bands",
                             fix=f"use {list(SENSOR_BANDS)}")
    values, times, bands = {}, {}, {}
    if layout == "wide":
        rows = df.reset_index(drop=True)
        if time_origin is None:
            raise InputError("a wide table needs time_origin", file=file, field="time_origin",
                             fix="give the date of step 0 or the column holding it")
        origin = (pd.to_datetime(rows[time_origin]) if time_origin in rows.columns else
                  pd.Series(pd.Timestamp(time_origin), index=rows.index)).to_numpy()
        for sensor, pattern in band_map.items():
            steps, found = wide_series(rows, sensor, pattern, origin, time_step, file=file)
            bands[sensor] = [b for b in SENSOR_BANDS[sensor] if b in found]
            when = step_times(origin[:, None], steps[None, :], time_step)  # (sample, step)
            times[sensor] = np.unique(when)
            pos = np.searchsorted(times[sensor], when)
            out = np.full((len(rows), len(times[sensor]), len(bands[sensor])), np.nan,
                          np.float32)
            for k, band in enumerate(bands[sensor]):
                for j, t in enumerate(steps):
                    if t in found[band]:
                        col = found[band][t]
                        out[np.arange(len(rows)), pos[:, j], k] = decode_values(
                            rows[col].to_numpy(), sensor, encoding.get(sensor), file=file,
                            field=col)
            values[sensor] = out
        return rows, values, times, bands
    sid = column(df, columns, "sample_id", file=file)
    when = pd.to_datetime(column(df, columns, "time", file=file)).to_numpy()
    codes, uniques = pd.factorize(sid, sort=False)
    rows = df.groupby(codes, sort=True).first().reset_index(drop=True)
    for sensor, cols in band_map.items():
        if not isinstance(cols, dict):
            raise InputError(f"long layout: columns.bands.{sensor} must map bands to columns",
                             file=file, field=f"columns.bands.{sensor}",
                             fix="e.g. {B04: red, B08: nir}")
        bands[sensor] = [b for b in SENSOR_BANDS[sensor] if b in cols]
        times[sensor] = np.unique(when)
        pos = np.searchsorted(times[sensor], when)
        out = np.full((len(uniques), len(times[sensor]), len(bands[sensor])), np.nan,
                      np.float32)
        for k, band in enumerate(bands[sensor]):
            name = cols[band]
            if name not in df.columns:
                raise InputError(f"column {name!r} ({sensor} {band}) not in the table",
                                 file=file, field=f"columns.bands.{sensor}.{band}",
                                 fix="map the band to an existing column")
            out[codes, pos, k] = decode_values(df[name].to_numpy(), sensor,
                                               encoding.get(sensor), file=file, field=name)
        values[sensor] = out
    return rows, values, times, bands
