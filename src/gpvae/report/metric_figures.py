"""Report metric figures from the tidy metrics (contracts 6): model comparison with error bars
over seeds per protocol, label-efficiency curves, and confusion matrices."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from gpvae.report.figure import new_figure, placeholder
from gpvae.report.palette import model_palette

GAPFILL_METRICS = ("MAE", "RMSE", "CRPS", "NLL", "coverage90", "width90")
CLASSIFICATION_METRICS = ("OA", "kappa", "macro_f1")
LABELS_PROTOCOL = re.compile(r"^labels_(\d+(?:\.\d+)?)pct$")


def overall_rows(df: pd.DataFrame, task: str) -> pd.DataFrame:
    """Rows of ``task`` that summarise all bands and classes (``band`` in '', 'all';
    ``class`` empty)."""
    sel = (df["task"] == task) & df["band"].isin(["", "all"]) & (df["class"] == "")
    return df[sel]


def metric_comparison(df: pd.DataFrame, task: str, metrics: tuple[str, ...],
                      protocols: list[str] | None = None) -> Figure:
    """Mean ± std over seeds of each metric (rows) and protocol (columns) per model (colour);
    one bar group per classifier when the task has them."""
    rows = overall_rows(df, task)
    rows = rows[rows["metric"].isin(metrics)]
    if protocols is not None:
        rows = rows[rows["protocol"].isin(protocols)]
    if rows.empty:
        return placeholder(f"No {task} metrics.", task)
    metric_list = [m for m in metrics if m in set(rows["metric"])]
    protocol_list = sorted(rows["protocol"].unique())
    models = list(dict.fromkeys(rows["model"]))
    by_classifier = (rows["classifier"] != "").any()
    fig, axes = new_figure(len(metric_list), len(protocol_list), panel=(4.2, 2.9),
                           sharey="row")
    for r, metric in enumerate(metric_list):
        for c, protocol in enumerate(protocol_list):
            ax = axes[r, c]
            sub = rows[(rows["metric"] == metric) & (rows["protocol"] == protocol)]
            if sub.empty:
                ax.axis("off")
                continue
            sns.barplot(data=sub, x="classifier" if by_classifier else "model", y="value",
                        hue="model", hue_order=models, palette=model_palette(models),
                        errorbar="sd", capsize=0.15, err_kws={"linewidth": 1}, ax=ax,
                        legend=False)
            ax.set(title=f"{metric} | {protocol}", ylabel=metric if c == 0 else "",
                   xlabel="")
            if not by_classifier:
                ax.tick_params(axis="x", labelrotation=35)
            if metric.startswith("coverage"):
                ax.axhline(float(metric.removeprefix("coverage")) / 100, color="black",
                           ls=":", lw=1)
    handles = [Patch(color=c, label=m) for m, c in model_palette(models).items()]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, title="model")
    return fig


def label_efficiency(df: pd.DataFrame, metric: str = "macro_f1") -> Figure:
    """Classification ``metric`` against the fraction of training labels (protocols
    ``labels_<p>pct``), mean ± std over seeds, one line per model (style = classifier)."""
    rows = overall_rows(df, "classification")
    rows = rows[rows["metric"] == metric].copy()
    pct = rows["protocol"].str.extract(LABELS_PROTOCOL, expand=False)
    rows = rows[pct.notna()].assign(labels_pct=pct[pct.notna()].astype(float))
    if rows.empty:
        return placeholder("No label-efficiency metrics (protocols labels_<p>pct).",
                           "Label efficiency")
    models = list(dict.fromkeys(rows["model"]))
    fig, axes = new_figure(1, 1, panel=(6.5, 4.2))
    ax = axes[0, 0]
    style = "classifier" if (rows["classifier"] != "").any() else None
    sns.lineplot(data=rows, x="labels_pct", y="value", hue="model", hue_order=models,
                 palette=model_palette(models), style=style, errorbar="sd", marker="o",
                 err_style="bars", ax=ax)
    ax.set_xscale("log")
    ticks = np.sort(rows["labels_pct"].unique())
    ax.set_xticks(ticks, [f"{t:g}%" for t in ticks])
    ax.set(xlabel="training labels used", ylabel=metric,
           title=f"Label efficiency ({metric}, test split)")
    sns.move_legend(ax, "center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    return fig


def confusion_matrices(conf: pd.DataFrame, protocol: str = "parcel",
                       classifier: str | None = None) -> Figure:
    """Row-normalised confusion matrices (counts summed over seeds), one panel per model."""
    if conf.empty:
        return placeholder("No confusion matrices.", "Confusion")
    protocols = list(dict.fromkeys(conf["protocol"]))
    protocol = protocol if protocol in protocols else protocols[0]
    rows = conf[conf["protocol"] == protocol]
    classifiers = list(dict.fromkeys(rows["classifier"]))
    classifier = classifier if classifier in classifiers else classifiers[0]
    rows = rows[rows["classifier"] == classifier]
    models = list(dict.fromkeys(rows["model"]))
    classes = sorted(set(rows["true"]) | set(rows["pred"]), key=str)
    ncols = min(3, len(models))
    nrows = -(-len(models) // ncols)
    size = 2.2 + 0.45 * len(classes)
    fig, axes = new_figure(nrows, ncols, panel=(size + 1.0, size))
    for ax in axes.flat[len(models):]:
        ax.axis("off")
    for ax, model in zip(axes.flat, models, strict=False):
        table = (rows[rows["model"] == model].pivot_table(
            index="true", columns="pred", values="count", aggfunc="sum", fill_value=0)
            .reindex(index=classes, columns=classes, fill_value=0))
        total = table.sum(axis=1).replace(0, np.nan)
        share = table.div(total, axis=0)
        accuracy = np.trace(table.to_numpy()) / max(table.to_numpy().sum(), 1)
        sns.heatmap(share, vmin=0, vmax=1, cmap="Blues", annot=len(classes) <= 12,
                    fmt=".2f", annot_kws={"fontsize": 7}, cbar=False, square=True, ax=ax)
        ax.set(title=f"{model} (OA {accuracy:.2f})", xlabel="predicted", ylabel="true")
    fig.suptitle(f"Confusion matrices, protocol {protocol}, classifier {classifier or '-'}"
                 " (rows sum to 1, seeds pooled)")
    return fig
