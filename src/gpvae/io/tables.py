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

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from gpvae.errors import InputError
from gpvae.io.bands import SENSOR_BANDS, SENSOR_RADIOMETRY
from gpvae.io.failures import reading
from gpvae.io.pixels import write_pixels
from gpvae.io.radiometry import REFLECTANCE, check_reflectance
from gpvae.io.sar import sar_to_linear
from gpvae.io.table_cells import (
    dates,
    integers,
    is_csv,
    numbers,
    required,
    separator_hint,
    splits,
)
from gpvae.preprocess.split import split_parcels
from gpvae.preprocess.split_check import check_coverage

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


def decode_values(raw: np.ndarray, sensor: str, encoding: dict | None, *,
                  file: object = None, field: str | None = None) -> np.ndarray:
    """Physical values (reflectance, linear sigma0) of raw table values; NaN = missing."""
    enc = dict(encoding or {})
    v = numbers(raw, file=file, column=str(field))
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


def checked_roles(df: pd.DataFrame, columns: dict, *, file: object) -> pd.DataFrame:
    """The table with its per-sample role columns parsed strictly (InputError naming row and
    column of a bad cell): label, ids, tile, region and x/y on every row, x/y numbers, year
    whole numbers, split names.
    """
    df = df.copy()

    def present(role: str) -> Callable[[pd.Series, str], object]:
        return lambda s, c: required(s, file=file, column=c, role=role)

    def coordinate(s: pd.Series, c: str) -> np.ndarray:
        return numbers(required(s, file=file, column=c, role="coordinate"), file=file,
                       column=c)

    parsers = {role: present(role) for role in ("label", "sample_id", "parcel_id", "tile",
                                                 "region")}
    parsers |= {"x": coordinate, "y": coordinate,
                "year": lambda s, c: integers(s, file=file, column=c, role="year"),
                "split": lambda s, c: splits(s, file=file, column=c)}
    for role, parse in parsers.items():
        series = column(df, columns, role, file=file, required=False)
        if series is not None:
            df[columns[role]] = np.asarray(parse(series, columns[role]))
    return df


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


def checked_optical(values: np.ndarray, sensor: str, *, file: object) -> np.ndarray:
    """``values`` of an optical sensor, after checking they look like reflectance."""
    if SENSOR_RADIOMETRY.get(sensor) == REFLECTANCE:
        check_reflectance(values, reader="table", file=file,
                          field=f"inputs.table.encoding.{sensor}.scale", what=sensor)
    return values


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
        origin = time_origins(rows, time_origin, file=file)
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
            values[sensor] = checked_optical(out, sensor, file=file)
        return rows, values, times, bands
    sid = column(df, columns, "sample_id", file=file)
    when = dates(column(df, columns, "time", file=file), file=file, column=columns["time"])
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
        values[sensor] = checked_optical(out, sensor, file=file)
    return rows, values, times, bands


def table_to_pixels(src: Path, out: Path, *, layout: str, columns: dict,
                    split_fractions: dict, seed: int, classes: list[str] | None = None,
                    encoding: dict | None = None, time_origin: str | None = None,
                    time_step: str = "1M", clip_to_year: bool = True,
                    xy_crs: str | None = None) -> Path:
    """A table of extracted time series -> the pixel dataset (docs/contracts.md section 2).

    Splits per parcel (``parcel_id`` column; each sample its own parcel when absent; string
    ids are numbered), stratified by class (gpvae.preprocess.split.split_parcels), unless a
    ``split`` column is given. ``year``: column, else the year of the sample's median date;
    with ``clip_to_year`` values outside the sample's year are NaN (the contract's rule).
    """
    src = Path(src)
    if layout not in LAYOUTS:
        raise InputError(f"unknown table layout {layout!r}", file=src, field="layout",
                         fix="use wide or long")
    df = checked_roles(read_table(src), columns, file=src)
    rows, values, times, bands = table_arrays(df, layout=layout, columns=columns,
                                              encoding=encoding or {},
                                              time_origin=time_origin, time_step=time_step,
                                              file=src)
    n = len(rows)
    raw_label = column(rows, columns, "label", file=src).astype(str).to_numpy()
    class_names = sorted(set(raw_label)) if classes is None else [str(c) for c in classes]
    unknown = sorted(set(raw_label) - set(class_names))
    if unknown:
        raise InputError(f"{np.isin(raw_label, unknown).sum()} samples have class codes not "
                         f"in classes: {unknown[:10]}", file=src,
                         field=f"columns.label ({columns.get('label')})",
                         fix="add them to classes, or filter the table first")
    absent = [c for c in class_names if c not in set(raw_label)]
    if absent:
        raise InputError(f"sample.classes lists classes with no sample in the table: "
                         f"{absent[:10]} (labels there: {sorted(set(raw_label))[:20]})",
                         file=src, field="sample.classes",
                         fix="correct the spelling, or remove them from sample.classes")
    label = np.array([class_names.index(c) for c in raw_label], np.int16)
    pid = column(rows, columns, "parcel_id", file=src, required=False)
    if pid is None:
        parcel_id = np.arange(n, dtype=np.int64)
    elif pd.api.types.is_integer_dtype(pid):
        parcel_id = pid.to_numpy().astype(np.int64)
    else:
        parcel_id = pd.factorize(pid)[0].astype(np.int64)
    split_col = column(rows, columns, "split", file=src, required=False)
    if split_col is None:
        split_of = split_parcels(parcel_id, label, split_fractions, seed)
        split = np.array([split_of[int(p)] for p in parcel_id])
    else:
        split = split_col.astype(str).to_numpy()
    check_coverage(class_names, label, split, split_fractions if split_col is None else None,
                   file=src)
    year_col = column(rows, columns, "year", file=src, required=False)
    if year_col is not None:
        year = year_col.to_numpy().astype(np.int16)
    else:
        all_t = np.concatenate([np.broadcast_to(times[s], (n, len(times[s])))
                                for s in values], axis=1)
        year = (np.median(all_t.astype("datetime64[D]").astype(np.int64), axis=1)
                .astype("datetime64[D]").astype("datetime64[Y]").astype(int) + 1970
                ).astype(np.int16)
    if clip_to_year:
        for s in values:
            t_year = times[s].astype("datetime64[Y]").astype(int) + 1970
            values[s][t_year[None, :] != year[:, None]] = np.nan
    tile = column(rows, columns, "tile", file=src, required=False)
    tile = np.full(n, "table") if tile is None else tile.astype(str).to_numpy()
    region = column(rows, columns, "region", file=src, required=False)
    samples = {
        "x": column(rows, columns, "x", file=src).to_numpy(np.float64),
        "y": column(rows, columns, "y", file=src).to_numpy(np.float64),
        "row": np.full(n, -1, np.int32), "col": np.full(n, -1, np.int32), "tile": tile,
        "parcel_id": parcel_id, "label": label, "split": split,
        "region": tile if region is None else region.astype(str).to_numpy(), "year": year}
    empty = [s for s in values if not np.isfinite(values[s]).any()]
    if empty:
        raise InputError(f"no valid value for sensors {empty} in any row", file=src,
                         field=f"columns.bands.{empty[0]}",
                         fix="check the band columns, encoding.<sensor>.nodata and, with "
                             "clip_to_year, that the dates fall in each sample's year")
    log.info("%s: %d samples, sensors %s, classes %s", src, n, list(values), class_names)
    return write_pixels(out, values=values, times=times, bands=bands, samples=samples,
                        class_names=class_names, attrs={
                            "seed": int(seed), "source": str(src), "reader": f"table_{layout}",
                            "split_fractions": json.dumps(split_fractions),
                            "xy_crs": xy_crs or "", "columns": json.dumps(columns)})
