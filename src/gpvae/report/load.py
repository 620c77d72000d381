"""Readers of the pipeline files the report draws (docs/contracts.md 1b, 3, 5, 6, 7)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd
import xarray as xr

from gpvae.errors import InputError
from gpvae.evaluate.tidy import read_tidy_csv

CLOUD_COVER_COLUMNS = ("date", "tile", "sensor", "valid_fraction", "cloud_fraction",
                       "nodata_fraction")
CONFUSION_COLUMNS = ("model", "classifier", "protocol", "seed", "true", "pred", "count")


def _require(df: pd.DataFrame, columns: Sequence[str], path: object, what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"{what} lacks columns {missing}", file=path, field=missing[0],
                         fix="regenerate it with the pipeline (docs/contracts.md)")


def read_csv_checked(path: str | os.PathLike, columns: Sequence[str], what: str
                     ) -> pd.DataFrame:
    """Read a CSV and check it has ``columns`` (InputError naming the file otherwise)."""
    try:
        df = pd.read_csv(path, keep_default_na=True)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"cannot read the {what}: {exc}", file=path,
                         fix="regenerate it with the pipeline") from exc
    _require(df, columns, path, what)
    return df


def read_cloud_cover(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """All per-date cloud-cover tables (contracts 1b) in one frame with a datetime ``date``."""
    frames = [read_csv_checked(p, CLOUD_COVER_COLUMNS, "cloud-cover table") for p in paths]
    if not frames:
        return pd.DataFrame(columns=list(CLOUD_COVER_COLUMNS))
    df = pd.concat(frames, ignore_index=True)
    df["date"] = pd.to_datetime(df["date"])
    return df


def model_name(path: str | os.PathLike, *, from_parent: bool = False) -> str:
    """The model a file belongs to: its folder (``models/<m>/metrics.csv``) or its stem."""
    p = Path(path)
    return p.parent.name if from_parent else p.stem


def read_training_metrics(paths: Iterable[str | os.PathLike]) -> dict[str, pd.DataFrame]:
    """``{model: metrics.csv frame}`` of the trained models (contracts 3)."""
    cols = ("epoch", "split", "elbo", "recon", "kl", "seconds", "lr")
    return {model_name(p, from_parent=True): read_csv_checked(p, cols, "training metrics")
            for p in paths}


def read_tidy_metrics(path: str | os.PathLike) -> pd.DataFrame:
    """The merged tidy metrics ``all.csv`` (contracts 6); optional columns filled with ''."""
    return read_tidy_csv(path)


def read_confusion(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """All confusion tables (contracts 6) in one frame."""
    frames = [read_csv_checked(p, CONFUSION_COLUMNS, "confusion table") for p in paths]
    if not frames:
        return pd.DataFrame(columns=list(CONFUSION_COLUMNS))
    df = pd.concat(frames, ignore_index=True)
    df["classifier"] = df["classifier"].fillna("").astype(str)
    return df


def open_datasets(paths: Iterable[str | os.PathLike], *, from_parent: bool = False
                  ) -> dict[str, xr.Dataset]:
    """``{model: dataset}`` of netCDF files named after their model (stem or folder)."""
    out = {}
    for p in paths:
        try:
            out[model_name(p, from_parent=from_parent)] = xr.open_dataset(p)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot open the netCDF file: {exc}", file=p,
                             fix="regenerate it with the pipeline") from exc
    return out


def read_json_files(paths: Iterable[str | os.PathLike]) -> dict[tuple[str, str], dict]:
    """``{(model, tile): document}`` of ``maps/<model>/<tile>_cost.json`` files (contracts 7)."""
    out = {}
    for p in paths:
        p = Path(p)
        try:
            doc = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read the JSON document: {exc}", file=p,
                             fix="regenerate it with the pipeline") from exc
        out[(p.parent.name, p.name.removesuffix("_cost.json"))] = doc
    return out
