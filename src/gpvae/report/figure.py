"""Figure plumbing shared by the report sections: Agg backend, theme, placeholders, saving."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from gpvae.io.atomic import atomic_path  # noqa: E402

log = logging.getLogger(__name__)

sns.set_theme(context="notebook", style="whitegrid")


def new_figure(nrows: int = 1, ncols: int = 1, *, panel: tuple[float, float] = (4.5, 3.2),
               squeeze: bool = False, **kwargs: object) -> tuple[Figure, object]:
    """A figure of ``nrows x ncols`` panels of size ``panel`` inches each (axes array)."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel[0] * ncols, panel[1] * nrows),
                             squeeze=squeeze, layout="constrained", **kwargs)
    return fig, axes


def placeholder(message: str, title: str | None = None) -> Figure:
    """A one-panel figure saying why there is nothing to plot (so the report is never blank)."""
    fig, axes = new_figure(panel=(7.0, 2.5))
    ax = axes[0, 0]
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=12)
    if title:
        ax.set_title(title)
    return fig


def save_figure(fig: Figure, out: str | os.PathLike, *, dpi: int = 110) -> Path:
    """Write ``fig`` to ``out`` (format from the suffix) atomically and close it."""
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=out.suffix.lstrip(".") or "png")
    plt.close(fig)
    log.info("wrote %s", out)
    return out
