"""Table stage: a table of extracted time series (gpvae.io.tables) -> the pixel dataset.

Skips extract / mask / sample: reads the table, assigns labels, groups and splits, and writes
``pixels.nc`` (docs/contracts.md section 2).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from gpvae.data.span import Span, check_dates_per_span, label_year
from gpvae.errors import InputError
from gpvae.io.pixels import write_pixels
from gpvae.io.sensors import sensor_registry
from gpvae.io.tables import LAYOUTS, checked_roles, column, read_table, table_arrays
from gpvae.preprocess.split import split_parcels
from gpvae.preprocess.split_check import check_coverage

log = logging.getLogger(__name__)


def table_labels(rows: pd.DataFrame, columns: dict, classes: list[str] | None, *,
                 file: object) -> tuple[np.ndarray, list[str]]:
    """Per-sample label codes (-1 = unlabelled: no label column, or an empty / missing value)
    and the class names (``classes``, else the sorted labels found)."""
    col = column(rows, columns, "label", file=file, required=False)
    if col is None:
        return np.full(len(rows), -1, np.int16), [str(c) for c in classes or []]
    text = col.astype(str).str.strip()
    labelled = (col.notna() & (text != "")).to_numpy()
    raw = text.to_numpy()
    class_names = (sorted(set(raw[labelled])) if classes is None
                   else [str(c) for c in classes])
    unknown = sorted(set(raw[labelled]) - set(class_names))
    if unknown:
        raise InputError(f"{np.isin(raw, unknown).sum()} samples have class codes not "
                         f"in classes: {unknown[:10]}", file=file,
                         field=f"columns.label ({columns.get('label')})",
                         fix="add them to classes, or filter the table first")
    found = set(raw[labelled])
    absent = [c for c in class_names if c not in found]
    if absent:
        raise InputError(f"sample.classes lists classes with no sample in the table: "
                         f"{absent[:10]} (labels there: {sorted(found)[:20]})", file=file,
                         field="sample.classes",
                         fix="correct the spelling, or remove them from sample.classes")
    index = {c: i for i, c in enumerate(class_names)}
    label = np.array([index[c] if ok else -1 for c, ok in zip(raw, labelled, strict=True)],
                     np.int16)
    if not labelled.all():
        log.info("%s: %d of %d samples unlabelled (kept, label -1)", file,
                 int((~labelled).sum()), len(raw))
    return label, class_names


def table_groups(rows: pd.DataFrame, columns: dict, *, file: object) -> np.ndarray:
    """Per-sample group code for grouped splits: ``group`` (a column or a list of columns,
    e.g. [longitude, latitude]), else ``parcel_id``, else each sample its own group."""
    group = columns.get("group")
    if group is not None:
        names = [group] if isinstance(group, str) else list(group)
        parts = [column(rows, {**columns, "group": n}, "group", file=file) for n in names]
        keys = pd.MultiIndex.from_arrays(parts) if len(parts) > 1 else parts[0]
        return pd.factorize(keys)[0].astype(np.int64)
    pid = column(rows, columns, "parcel_id", file=file, required=False)
    if pid is None:
        return np.arange(len(rows), dtype=np.int64)
    if pd.api.types.is_integer_dtype(pid):
        return pid.to_numpy().astype(np.int64)
    return pd.factorize(pid)[0].astype(np.int64)


def grouped_split(groups: np.ndarray, label: np.ndarray, fractions: dict, seed: int
                  ) -> np.ndarray:
    """Split per group (no group in two splits), stratified by each group's most frequent
    label (unlabelled samples are one stratum)."""
    frame = pd.DataFrame({"group": groups, "label": label})
    group_label = frame.groupby("group")["label"].agg(lambda v: v.value_counts().index[0])
    split_of = split_parcels(group_label.index.to_numpy(), group_label.to_numpy(), fractions,
                             seed)
    return np.array([split_of[int(g)] for g in groups])


def observed_median(values: dict[str, np.ndarray], times: dict[str, np.ndarray]
                    ) -> np.ndarray:
    """Per sample, the median of its observed dates (any sensor, any band) as datetime64[D];
    a sample with none gets the median of all dates."""
    days = {s: times[s].astype("datetime64[D]").astype(np.int64) for s in values}
    obs = np.concatenate([np.where(np.isfinite(values[s]).any(-1), days[s][None, :], np.nan)
                          for s in values], axis=1)
    every = np.concatenate(list(days.values()))
    empty = np.isnan(obs).all(axis=1)
    obs[empty] = np.median(every)
    return np.floor(np.nanmedian(obs, axis=1)).astype(np.int64).astype("datetime64[D]")


def table_spans(values: dict[str, np.ndarray], times: dict[str, np.ndarray],
                year_col: pd.Series | None, span: Span
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-sample span (start, end) and year: the span labelled ``year`` when the table has a
    year column, else the span holding the sample's median observed date (``all``: the
    table's whole range, year = the median date's year)."""
    median = observed_median(values, times)
    every = np.concatenate([times[s] for s in values])
    if year_col is not None:
        year = year_col.to_numpy().astype(np.int64)
        if span.kind != "all":
            start, end = span.of_year(year)
            return start, end, year
    start, end = span.containing(median, all_times=every)
    if year_col is None:
        year = (label_year(start, end) if span.kind != "all"
                else median.astype("datetime64[Y]").astype(int) + 1970)
    return start, end, year


def table_to_pixels(src: Path, out: Path, *, layout: str, columns: dict,
                    split_fractions: dict, seed: int, classes: list[str] | None = None,
                    encoding: dict | None = None, time_origin: str | None = None,
                    time_step: str = "1M", clip_to_year: bool = True,
                    xy_crs: str | None = None, span: Span | dict | None = None,
                    sensors: dict | None = None) -> Path:
    """A table of extracted time series -> the pixel dataset (docs/contracts.md section 2).

    ``columns``: see :mod:`gpvae.io.tables`; ``label``, ``x``, ``y`` are optional (samples
    without a label stay unlabelled: label -1, no class). Splits per group (:func:`table_groups`,
    no group in two splits), stratified by class (gpvae.preprocess.split.split_parcels),
    unless a ``split`` column is given. ``span`` (a :class:`~gpvae.data.span.Span` or the
    config's ``sample`` section; default calendar years): each sample's span and time origin
    (:func:`table_spans`); with ``clip_to_year`` values outside the sample's span are NaN.
    ``sensors``: the config's sensor declarations (the built-ins otherwise).
    """
    src = Path(src)
    if layout not in LAYOUTS:
        raise InputError(f"unknown table layout {layout!r}", file=src, field="layout",
                         fix="use wide or long")
    span = span if isinstance(span, Span) else Span.from_config(span)
    registry = sensor_registry(sensors)
    df = checked_roles(read_table(src), columns, file=src)
    rows, values, times, bands = table_arrays(df, layout=layout, columns=columns,
                                              encoding=encoding or {},
                                              time_origin=time_origin, time_step=time_step,
                                              file=src, registry=registry)
    n = len(rows)
    label, class_names = table_labels(rows, columns, classes, file=src)
    groups = table_groups(rows, columns, file=src)
    split_col = column(rows, columns, "split", file=src, required=False)
    split = (grouped_split(groups, label, split_fractions, seed) if split_col is None
             else split_col.astype(str).to_numpy())
    start, end, year = table_spans(values, times,
                                   column(rows, columns, "year", file=src, required=False),
                                   span)
    check_dates_per_span(start, end, np.concatenate(list(times.values())), span, file=src)
    check_coverage(class_names, label, split, split_fractions if split_col is None else None,
                   file=src)
    if clip_to_year:
        for s in values:
            t = times[s].astype("datetime64[D]")
            outside = (t[None, :] < start[:, None]) | (t[None, :] >= end[:, None])
            values[s][outside] = np.nan
    tile = column(rows, columns, "tile", file=src, required=False)
    tile = np.full(n, "table") if tile is None else tile.astype(str).to_numpy()
    region = column(rows, columns, "region", file=src, required=False)
    xy = {k: column(rows, columns, k, file=src, required=False) for k in ("x", "y")}
    pid = column(rows, columns, "parcel_id", file=src, required=False)
    samples = {
        **{k: np.full(n, np.nan) if c is None else c.to_numpy(np.float64)
           for k, c in xy.items()},
        "row": np.full(n, -1, np.int32), "col": np.full(n, -1, np.int32), "tile": tile,
        "parcel_id": groups if pid is None else table_groups(
            rows, {k: v for k, v in columns.items() if k != "group"}, file=src),
        "label": label, "split": split,
        "region": tile if region is None else region.astype(str).to_numpy(),
        "year": year, "start": start, "end": end}
    empty = [s for s in values if not np.isfinite(values[s]).any()]
    if empty:
        raise InputError(f"no valid value for sensors {empty} in any row", file=src,
                         field=f"columns.bands.{empty[0]}",
                         fix="check the band columns, encoding.<sensor>.nodata and, with "
                             "clip_to_year, that the dates fall in each sample's span "
                             "(sample.span)")
    log.info("%s: %d samples (%d groups), sensors %s, classes %s, span %s", src, n,
             len(np.unique(groups)), list(values), class_names, span.describe())
    return write_pixels(out, values=values, times=times, bands=bands, samples=samples,
                        class_names=class_names, definitions=registry, attrs={
                            "seed": int(seed), "source": str(src), "reader": f"table_{layout}",
                            "split_fractions": json.dumps(split_fractions),
                            "xy_crs": xy_crs or "", "columns": json.dumps(columns),
                            "span": span.to_attr()})
