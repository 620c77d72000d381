"""Report section Classification: 2-D PCA projection of each model's embeddings by class."""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from gpvae.report.figure import new_figure, placeholder
from gpvae.report.palette import class_colours


def principal_components(x: np.ndarray, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """First ``k`` principal-component scores of standardised ``x`` (n, d) via the SVD
    x = U S Vᵀ (scores U S), and the fraction of variance each explains (zero-padded)."""
    x = x - x.mean(axis=0)
    scale = x.std(axis=0)
    x = x / np.where(scale > 0, scale, 1.0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    m = min(k, s.size)
    scores = np.zeros((x.shape[0], k))
    scores[:, :m] = u[:, :m] * s[:m]
    explained = np.zeros(k)
    total = (s**2).sum()
    if total > 0:
        explained[:m] = s[:m] ** 2 / total
    return scores, explained


def embedding_features(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """``(features (n, d), labels (n,))`` of the labelled, valid samples of an embeddings file:
    ``mean`` flattened over its non-sample dims, NaN replaced by the column mean."""
    mean = ds["mean"].transpose("sample", ...)
    x = mean.values.reshape(mean.shape[0], -1).astype(np.float64)
    labels = ds["label"].values if "label" in ds.coords or "label" in ds else np.full(
        x.shape[0], -1)
    keep = labels >= 0
    if "valid" in ds:
        keep &= ds["valid"].values.astype(bool)
    x, labels = x[keep], labels[keep]
    col = np.nanmean(np.where(np.isfinite(x), x, np.nan), axis=0) if x.size else x
    x = np.where(np.isfinite(x), x, np.nan_to_num(col)[None, :] if x.size else x)
    return x, labels


def embedding_projection(embeddings: dict[str, xr.Dataset], class_names: list[str], *,
                         max_points: int = 2000, seed: int = 0) -> Figure:
    """Each embedding set's samples on its first two principal components, coloured by class."""
    if not embeddings:
        return placeholder("No embeddings.", "Embeddings")
    ncols = min(4, len(embeddings))
    nrows = -(-len(embeddings) // ncols)
    fig, axes = new_figure(nrows, ncols, panel=(4.0, 3.8))
    colours = class_colours(len(class_names))
    rng = np.random.default_rng(seed)
    for ax in axes.flat[len(embeddings):]:
        ax.axis("off")
    for ax, (model, ds) in zip(axes.flat, embeddings.items(), strict=False):
        x, labels = embedding_features(ds)
        if len(x) > max_points:
            pick = rng.choice(len(x), max_points, replace=False)
            x, labels = x[pick], labels[pick]
        if len(x) < 2:
            ax.text(0.5, 0.5, "fewer than two labelled samples", ha="center",
                    transform=ax.transAxes)
            ax.set_title(model)
            continue
        scores, explained = principal_components(x, 2)
        for c in np.unique(labels):
            sel = labels == c
            name = class_names[c] if c < len(class_names) else str(c)
            ax.scatter(scores[sel, 0], scores[sel, 1], s=6, alpha=0.7,
                       color=colours[c % len(colours)], label=name)
        ax.set(title=f"{model} ({ds.attrs.get('method', 'embedding')})"[:60],
               xlabel=f"PC1 ({explained[0]:.0%})", ylabel=f"PC2 ({explained[1]:.0%})",
               xticks=[], yticks=[])
    handles = {}
    for ax in axes.flat:
        for h, name in zip(*ax.get_legend_handles_labels(), strict=False):
            handles.setdefault(name, h)
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="outside right center", fontsize=8,
                   markerscale=2)
    return fig
