"""Report section Training: ELBO, KL and kernel length scales per epoch, one colour per model."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from gpvae.report.figure import new_figure, placeholder
from gpvae.report.palette import model_colour

SPLIT_STYLE = {"train": "--", "val": "-"}


def lengthscale_columns(df: pd.DataFrame) -> list[str]:
    """Columns of ``metrics.csv`` holding kernel length scales (one per latent)."""
    return [c for c in df.columns if "lengthscale" in c]


def training_curves(metrics: dict[str, pd.DataFrame]) -> Figure:
    """Training curves per model: ELBO and KL per epoch and split, kernel length scales (days;
    median over latents, band = min..max)."""
    if not metrics:
        return placeholder("No model is configured, so nothing was trained.", "Training")
    fig, axes = new_figure(1, 3, panel=(5.0, 3.6))
    ax_elbo, ax_kl, ax_ls = axes[0]
    for model, df in metrics.items():
        colour = model_colour(model)
        for split, style in SPLIT_STYLE.items():
            s = df[df["split"] == split].sort_values("epoch")
            ax_elbo.plot(s["epoch"], s["elbo"], style, color=colour,
                         label=model if split == "val" else None)
            ax_kl.plot(s["epoch"], s["kl"], style, color=colour)
        cols = lengthscale_columns(df)
        if cols:
            s = df[df["split"] == "train"].sort_values("epoch")
            values = s[cols].to_numpy(dtype=float)
            ax_ls.plot(s["epoch"], np.median(values, axis=1), color=colour, label=model)
            ax_ls.fill_between(s["epoch"], values.min(axis=1), values.max(axis=1),
                               color=colour, alpha=0.2)
    ax_elbo.set(title="ELBO (val solid, train dashed)", xlabel="epoch",
                ylabel="ELBO")
    ax_elbo.legend(fontsize=8)
    ax_kl.set(title="KL term", xlabel="epoch", ylabel="KL")
    ax_ls.set(title="Kernel length scales (median, min..max)", xlabel="epoch",
              ylabel="days")
    if not ax_ls.lines:
        ax_ls.text(0.5, 0.5, "no GP kernel in these models", ha="center",
                   transform=ax_ls.transAxes)
    return fig
