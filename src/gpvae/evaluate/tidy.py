"""Tidy metric tables (docs/contracts.md section 6): row builder, atomic CSV writer, summaries.

Every metrics CSV has the same columns, :data:`COLUMNS`: the seven required ones
(``model, task, protocol, split, seed, metric, value``) then the optional ``band``, ``class``
and ``classifier`` columns, written empty when not applicable, so files of every task
concatenate into ``all.csv`` without reshaping.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from gpvae.errors import InputError
from gpvae.io.atomic import atomic_path

REQUIRED = ("model", "task", "protocol", "split", "seed", "metric", "value")
OPTIONAL = ("band", "class", "classifier")
COLUMNS = REQUIRED + OPTIONAL
#: Columns identifying one quantity across seeds (everything but seed and value).
GROUP_KEYS = ("model", "task", "protocol", "split", "metric", *OPTIONAL)


def tidy_row(model: str, task: str, protocol: str, split: str, seed: int, metric: str,
             value: float, **optional: object) -> dict:
    """One metrics row; ``optional`` may hold ``band``, ``class`` (use ``**{"class": c}``) and
    ``classifier``; absent ones are empty strings."""
    unknown = set(optional) - set(OPTIONAL)
    if unknown:
        raise ValueError(f"unknown tidy columns {sorted(unknown)}; allowed {OPTIONAL}")
    row = {"model": str(model), "task": str(task), "protocol": str(protocol),
           "split": str(split), "seed": int(seed), "metric": str(metric),
           "value": float(value)}
    row.update({k: ("" if optional.get(k) is None else str(optional[k])) for k in OPTIONAL})
    return row


def metric_rows(values: Mapping[str, float], **keys: object) -> list[dict]:
    """Rows for a ``{metric: value}`` mapping sharing the other columns ``keys``."""
    return [tidy_row(metric=name, value=value, **keys) for name, value in values.items()]


def to_frame(rows: Iterable[Mapping[str, object]]) -> pd.DataFrame:
    """Rows -> DataFrame with exactly :data:`COLUMNS` (missing optional columns empty)."""
    df = pd.DataFrame(list(rows))
    for col in COLUMNS:
        if col not in df:
            if col in REQUIRED and len(df):
                raise ValueError(f"metrics rows lack the column {col!r}")
            df[col] = ""
    return df[list(COLUMNS)]


def write_tidy_csv(rows: Iterable[Mapping[str, object]] | pd.DataFrame,
                   path: str | os.PathLike) -> Path:
    """Write rows (or a DataFrame) as a tidy CSV with :data:`COLUMNS`, atomically."""
    df = rows if isinstance(rows, pd.DataFrame) else to_frame(rows)
    df = to_frame(df.to_dict("records")) if list(df.columns) != list(COLUMNS) else df
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    return Path(path)


def read_tidy_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a tidy CSV; InputError when required columns are missing."""
    try:
        df = pd.read_csv(path, keep_default_na=False, na_values=[""],
                         dtype={c: str for c in ("model", "task", "protocol", "split",
                                                 "metric", *OPTIONAL)})
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read metrics table ({err})", file=path,
                         fix="re-run the stage that writes it") from err
    missing = [c for c in REQUIRED if c not in df]
    if missing:
        raise InputError(f"metrics table lacks columns {missing}", file=path,
                         field=missing[0], fix="re-run the stage that writes it")
    for col in OPTIONAL:
        df[col] = df[col].fillna("") if col in df else ""
    return df[list(COLUMNS)]


def merge_tidy(paths: Iterable[str | os.PathLike], out: str | os.PathLike) -> Path:
    """Concatenate tidy CSVs into one (``all.csv``), atomically."""
    frames = [read_tidy_csv(p) for p in paths]
    df = pd.concat(frames, ignore_index=True) if frames else to_frame([])
    return write_tidy_csv(df, out)


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample std (ddof 1; NaN for one seed) and seed count of ``value`` per
    :data:`GROUP_KEYS` group."""
    keys = list(GROUP_KEYS)
    df = df.copy()
    for col in OPTIONAL:
        df[col] = df[col].fillna("") if col in df else ""
    out = (df.groupby(keys, sort=True, dropna=False)["value"]
           .agg(mean="mean", std="std", n_seeds="count").reset_index())
    out["std"] = [s if n > 1 else math.nan for s, n in zip(out["std"], out["n_seeds"],
                                                           strict=True)]
    return out


def write_summary(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write :func:`summarise` of ``df`` (``summary_{task}.csv``), atomically."""
    with atomic_path(path) as tmp:
        summarise(df).to_csv(tmp, index=False, float_format="%.6g")
    return Path(path)
