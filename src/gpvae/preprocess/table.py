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

from gpvae.errors import InputError
from gpvae.io.pixels import write_pixels
from gpvae.io.tables import LAYOUTS, column, read_table, table_arrays
from gpvae.preprocess.split import split_parcels

log = logging.getLogger(__name__)


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
    df = read_table(src)
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
        log.warning("%s: no valid value for sensors %s", src, empty)
    log.info("%s: %d samples, sensors %s, classes %s", src, n, list(values), class_names)
    return write_pixels(out, values=values, times=times, bands=bands, samples=samples,
                        class_names=class_names, attrs={
                            "seed": int(seed), "source": str(src), "reader": f"table_{layout}",
                            "split_fractions": json.dumps(split_fractions),
                            "xy_crs": xy_crs or "", "columns": json.dumps(columns)})
