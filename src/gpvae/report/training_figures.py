"""Report section Training: convergence of each model, readable side by side.

Per model (one colour each), against optimiser steps: the negative ELBO per pixel on a
symmetric log axis (so a first value of 1e7 does not flatten every curve; train dashed,
validation solid), the validation gap-filling error that selects the best model (a dot at
the best step), the number of active latent units, the kernel length scales (median over
latents, band = min..max), and the observation-noise and latent output scales (median over
bands/latents).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gpvae.report.figure import new_figure, placeholder
from gpvae.report.palette import model_colour

SPLIT_STYLE = {"train": "--", "val": "-"}


def lengthscale_columns(df: pd.DataFrame) -> list[str]:
    """Columns of ``metrics.csv`` holding kernel length scales (one per latent)."""
    return [c for c in df.columns if "lengthscale" in c]


def _columns(df: pd.DataFrame, prefix: str) -> list[str]:
    return [c for c in df.columns if c.startswith(prefix)]


def _x(df: pd.DataFrame) -> tuple[pd.Series, str]:
    """Optimiser steps when logged (step-based training), else epochs (older logs)."""
    return (df["step"], "optimiser step") if "step" in df else (df["epoch"], "epoch")


def _band(ax: Axes, x: pd.Series, values: np.ndarray, colour: str, label: str | None) -> None:
    """Median line and min..max band of the columns of ``values``."""
    ax.plot(x, np.median(values, axis=1), color=colour, label=label)
    ax.fill_between(x, values.min(axis=1), values.max(axis=1), color=colour, alpha=0.2)


def _neg_elbo(ax: Axes, model: str, df: pd.DataFrame, colour: str) -> None:
    for split, style in SPLIT_STYLE.items():
        s = df[df["split"] == split]
        x, _ = _x(s)
        ax.plot(x, -s["elbo"].to_numpy(dtype=float), style, color=colour,
                label=model if split == "val" else None)


def _gap_error(ax: Axes, df: pd.DataFrame, colour: str) -> None:
    s = df[df["split"] == "val"]
    if "gap_mae" not in s or not s["gap_mae"].notna().any():
        return
    x, _ = _x(s)
    ax.plot(x, s["gap_mae"], color=colour)
    best = s["gap_mae"].to_numpy(dtype=float)
    i = int(np.nanargmin(best))
    ax.plot(x.iloc[i], best[i], "o", color=colour)


def training_curves(metrics: dict[str, pd.DataFrame]) -> Figure:
    """Training curves per model (see the module docstring): 2 x 3 panels."""
    if not metrics:
        return placeholder("No model is configured, so nothing was trained.", "Training")
    fig, axes = new_figure(2, 3, panel=(5.0, 3.4))
    ax_elbo, ax_gap, ax_units = axes[0]
    ax_ls, ax_noise, ax_scale = axes[1]
    xlabel = "optimiser step"
    for model, df in metrics.items():
        colour = model_colour(model)
        xlabel = _x(df)[1]
        _neg_elbo(ax_elbo, model, df, colour)
        _gap_error(ax_gap, df, colour)
        val = df[df["split"] == "val"]
        if "active_units" in val:
            ax_units.plot(_x(val)[0], val["active_units"], color=colour, drawstyle="steps-post")
        train = df[df["split"] == "train"]
        x = _x(train)[0]
        for ax, cols in ((ax_ls, lengthscale_columns(df)), (ax_noise, _columns(df, "noise_std")),
                         (ax_scale, _columns(df, "scale.outputscale"))):
            if cols:
                _band(ax, x, train[cols].to_numpy(dtype=float), colour, model)
    ax_elbo.set(title="-ELBO per pixel (val solid, train dashed)", xlabel=xlabel,
                ylabel="-ELBO (symmetric log)")
    ax_elbo.set_yscale("symlog", linthresh=10.0)
    ax_elbo.legend(fontsize=8)
    ax_gap.set(title="Validation gap-filling MAE (dot: best)", xlabel=xlabel,
               ylabel="MAE, standardised units")
    ax_units.set(title="Active latent units", xlabel=xlabel, ylabel="units")
    ax_ls.set(title="Kernel length scales (median, min..max)", xlabel=xlabel, ylabel="days",
              yscale="log")
    ax_noise.set(title="Observation noise std (median over bands)", xlabel=xlabel,
                 ylabel="standardised units", yscale="log")
    ax_scale.set(title="Latent output scale (median over latents)", xlabel=xlabel,
                 ylabel="variance", yscale="log")
    for ax, what in ((ax_ls, "no GP kernel in these models"),
                     (ax_gap, "no validation gap-filling score logged"),
                     (ax_scale, "no GP kernel in these models")):
        if not ax.lines:
            ax.text(0.5, 0.5, what, ha="center", transform=ax.transAxes)
    return fig
