"""Report section Cost: one table of training time, inference speed and memory per model."""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from gpvae.io.atomic import atomic_path

STYLE = """<style>
body { font-family: sans-serif; margin: 1em; }
table { border-collapse: collapse; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th { background: #eef; } td:first-child, th:first-child { text-align: left; }
caption { caption-side: top; font-weight: bold; padding: 6px; text-align: left; }
</style>"""


def training_cost(training: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Epochs (passes over the training pixels), optimiser steps, total seconds and seconds per
    epoch of each model's training (metrics.csv; training and validation time)."""
    rows = {}
    for model, df in training.items():
        epochs = float(df["epoch"].max()) if len(df) else 0.0
        seconds = float(df["seconds"].sum())
        rows[model] = {"epochs": round(epochs, 2),
                       "steps": int(df["step"].max()) if "step" in df and len(df) else None,
                       "train time (s)": seconds,
                       "train s/epoch": seconds / epochs if epochs > 0 else float("nan")}
    return pd.DataFrame.from_dict(rows, orient="index")


def metric_cost(metrics: pd.DataFrame | None) -> pd.DataFrame:
    """Mean over seeds of each ``task == cost`` metric (contracts 6), one column per metric."""
    if metrics is None or metrics.empty:
        return pd.DataFrame()
    rows = metrics[metrics["task"] == "cost"]
    if rows.empty:
        return pd.DataFrame()
    return rows.pivot_table(index="model", columns="metric", values="value", aggfunc="mean")


def map_cost(tile_costs: Mapping[tuple[str, str], Mapping[str, object]]) -> pd.DataFrame:
    """Numeric entries of the per-tile cost documents, aggregated over tiles per model:
    seconds and pixel counts summed, memory maximised, rates averaged."""
    records = [{"model": m, **{k: v for k, v in doc.items()
                               if isinstance(v, int | float) and not isinstance(v, bool)}}
               for (m, _tile), doc in tile_costs.items()]
    if not records:
        return pd.DataFrame()
    df = pd.DataFrame(records).set_index("model")
    agg = {}
    for col in df.columns:
        low = col.lower()
        if "mem" in low or "mib" in low or "peak" in low:
            agg[col] = "max"
        elif ("second" in low or low.endswith("_s") or "pixels" in low) and "per" not in low:
            agg[col] = "sum"
        else:
            agg[col] = "mean"
    out = df.groupby(level=0).agg(agg)
    return out.rename(columns=lambda c: f"maps: {c}")


def cost_table(training: Mapping[str, pd.DataFrame], metrics: pd.DataFrame | None = None,
               tile_costs: Mapping[tuple[str, str], Mapping[str, object]] | None = None
               ) -> pd.DataFrame:
    """All cost figures per model (rows): training, tidy ``cost`` metrics, tile products."""
    parts = [training_cost(training), metric_cost(metrics), map_cost(tile_costs or {})]
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame()
    table = pd.concat(parts, axis=1)
    table.index.name = "model"
    return table.sort_index()


def format_number(v: object) -> str:
    """A table cell: thousands separators from 100 on, three significant digits below."""
    if isinstance(v, int | float | np.number) and not isinstance(v, bool):
        if not np.isfinite(v):
            return ""
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"
    return str(v)


def write_cost_html(table: pd.DataFrame, out: str | os.PathLike, title: str = "Cost per model"
                    ) -> Path:
    """Write the cost table as a standalone HTML page (atomic)."""
    if table.empty:
        body = "<p>No cost information: no model was trained or evaluated.</p>"
    else:
        shown = table.map(format_number)
        body = shown.reset_index().to_html(index=False, border=0, classes="cost")
        head, rest = body.split(">", 1)
        body = f"{head}><caption>{html.escape(title)}</caption>{rest}"
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title>{STYLE}</head><body>{body}</body></html>\n")
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.write_text(page)
    return out
