"""Report section Data: acquisitions per sensor and tile with cloud cover; classes and split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from gpvae.report.figure import new_figure, placeholder

SPLIT_ORDER = ["train", "val", "test"]


def acquisition_timeline(table: pd.DataFrame) -> Figure:
    """Acquisition dates per sensor (rows) and tile (panels), coloured by cloud fraction."""
    if table.empty:
        return placeholder("No acquisitions (no cloud-cover table).", "Acquisitions")
    tiles = sorted(table["tile"].unique())
    sensors = sorted(table["sensor"].unique(), key=lambda s: (s != "S2", s))
    fig, axes = new_figure(len(tiles), 1, panel=(11.0, 0.6 + 0.7 * len(sensors)),
                           sharex=True)
    points = None
    for ax, tile in zip(axes[:, 0], tiles, strict=False):
        sub = table[table["tile"] == tile]
        for row, sensor in enumerate(sensors):
            s = sub[sub["sensor"] == sensor]
            points = ax.scatter(s["date"], np.full(len(s), row), c=s["cloud_fraction"],
                                cmap="RdYlGn_r", vmin=0, vmax=1,
                                linewidths=1.0 if sensor != "S2" else 0,
                                s=12 + 50 * s["valid_fraction"] if sensor == "S2" else 120,
                                marker="o" if sensor == "S2" else "|")
        ax.set_yticks(range(len(sensors)),
                      [f"{s} ({(sub['sensor'] == s).sum()})" for s in sensors])
        ax.set_ylim(-0.6, len(sensors) - 0.4)
        ax.set_title(f"Tile {tile}: acquisitions (colour = cloud fraction, size = usable "
                     "fraction)", fontsize=10)
    fig.colorbar(points, ax=list(axes[:, 0]), label="cloud fraction", fraction=0.02)
    return fig


def class_distribution(labels: pd.DataFrame, class_names: list[str]) -> Figure:
    """Labelled pixels per class and split (left) and per tile and split (right)."""
    if labels.empty:
        return placeholder("The pixel dataset has no samples.", "Classes")
    df = labels.copy()
    df["class"] = [class_names[i] if 0 <= i < len(class_names) else "unknown"
                   for i in df["label"]]
    order = [c for c in class_names if c in set(df["class"])]
    if "unknown" in set(df["class"]):
        order.append("unknown")
    hue_order = [s for s in SPLIT_ORDER if s in set(df["split"])] + sorted(
        set(df["split"]) - set(SPLIT_ORDER))
    fig, axes = new_figure(1, 2, panel=(6.0, 4.0), width_ratios=[3, 1])
    palette = dict(zip(hue_order, sns.color_palette("Set2", len(hue_order)), strict=False))
    sns.countplot(data=df, y="class", hue="split", order=order, hue_order=hue_order,
                  palette=palette, ax=axes[0, 0])
    axes[0, 0].set_title(f"Pixels per class and split (n = {len(df)})")
    sns.move_legend(axes[0, 0], "lower right")
    sns.countplot(data=df, x="tile", hue="split", hue_order=hue_order, palette=palette,
                  ax=axes[0, 1], legend=False)
    axes[0, 1].set_title("Pixels per tile")
    return fig
