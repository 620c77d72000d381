"""Merge every metrics file into ``all.csv`` and per-task summaries (contracts section 6).

Accepted inputs (recognised by name and header):

- tidy metrics CSVs (``{task}_{model}.csv``, columns of :data:`gpvae.evaluate.tidy.COLUMNS`):
  concatenated as they are;
- a model's training log ``results/models/{model}/metrics.csv`` (``epoch, split, elbo, ...,
  seconds``): ``cost`` rows ``train_seconds_per_epoch`` (mean over the train rows) and
  ``epochs``, protocol ``train``, split ``train``, seed 0, model = the folder name;
- a tile cost file ``*_cost.json`` (written by
  :func:`gpvae.evaluate.tile_gather.gather_tile`): ``cost`` rows ``pixels_per_second``,
  ``peak_rss_mib`` (and ``peak_gpu_mib``), ``seconds`` (summed over the map's blocks),
  ``bytes`` (the product files), protocol ``tile_inference_<device type>``, split = the
  tile, seed 0.

``summary_{task}.csv`` (mean, std, n_seeds over seeds) is written for every task present and
always for ``classification``, ``gapfill`` and ``cost`` (header only when empty).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from gpvae.errors import InputError
from gpvae.evaluate.tidy import (
    COLUMNS,
    metric_rows,
    read_tidy_csv,
    to_frame,
    write_summary,
    write_tidy_csv,
)

log = logging.getLogger(__name__)

#: Tasks that always get a summary file, so pipeline outputs are fixed.
STANDARD_TASKS = ("classification", "gapfill", "cost")
#: Columns that identify a model's training log rather than a tidy table.
TRAINING_LOG_COLUMNS = {"epoch", "split", "elbo", "seconds"}


def training_cost_rows(path: Path) -> list[dict]:
    """``cost`` rows of a model's training log (metrics.csv, contracts section 3)."""
    df = pd.read_csv(path)
    train = df[df["split"] == "train"]
    if train.empty:
        raise InputError("training log has no train row", file=path, field="split",
                         fix="re-run training")
    keys = {"model": Path(path).parent.name, "task": "cost", "protocol": "train",
            "split": "train", "seed": 0}
    epochs = float(train["epoch"].max())
    values = {"train_seconds_per_epoch": float(train["seconds"].sum()) / max(epochs, 1e-9),
              "epochs": epochs}
    if "step" in train:
        values["steps"] = float(train["step"].max())
    return metric_rows(values, **keys)


def tile_cost_rows(path: Path) -> list[dict]:
    """``cost`` rows of a tile product's ``*_cost.json``."""
    try:
        cost = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read tile cost file ({err})", file=path,
                         fix="re-run the gather_tile stage") from err
    missing = [k for k in ("pixels_per_second", "peak_rss_mib", "device") if k not in cost]
    if missing:
        raise InputError(f"tile cost file lacks {missing}", file=path, field=missing[0],
                         fix="re-run the gather_tile stage")
    device = str(cost["device"]).split(":")[0]
    keys = {"model": str(cost.get("model") or Path(path).parent.name), "task": "cost",
            "protocol": f"tile_inference_{device}",
            "split": str(cost.get("tile") or Path(path).stem.removesuffix("_cost")),
            "seed": 0}
    values = {k: float(cost[k]) for k in ("pixels_per_second", "peak_rss_mib",
                                          "peak_gpu_mib", "seconds", "bytes") if k in cost}
    return metric_rows(values, **keys)


def read_metrics(path: Path) -> pd.DataFrame:
    """Any accepted input file as a tidy DataFrame."""
    path = Path(path)
    if path.suffix == ".json":
        return to_frame(tile_cost_rows(path))
    try:
        header = set(pd.read_csv(path, nrows=0).columns)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read metrics file ({err})", file=path,
                         fix="re-run the stage that writes it") from err
    if TRAINING_LOG_COLUMNS <= header and "metric" not in header:
        return to_frame(training_cost_rows(path))
    return read_tidy_csv(path)


def merge_metrics(inputs: list[Path], out_all: Path, summary_dir: Path) -> Path:
    """Concatenate ``inputs`` (see module doc) into ``out_all``; write ``summary_{task}.csv``
    in ``summary_dir``; returns ``out_all``."""
    frames = [read_metrics(p) for p in inputs]
    frames = [f for f in frames if not f.empty]
    df = pd.concat(frames, ignore_index=True) if frames else to_frame([])
    df = df[list(COLUMNS)].astype({"value": float})
    log.info("merged %d files: %d rows, tasks %s", len(inputs), len(df),
             sorted(df["task"].unique()))
    write_tidy_csv(df, out_all)
    summary_dir = Path(summary_dir)
    for task in sorted(set(STANDARD_TASKS) | set(df["task"])):
        write_summary(df[df["task"] == task], summary_dir / f"summary_{task}.csv")
    return Path(out_all)
