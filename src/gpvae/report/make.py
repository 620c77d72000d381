"""Entry point of the report figures: :func:`make_report_figures` draws one named figure
(or writes the cost table) from the pipeline's files, what ``gpvae figures`` calls."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from gpvae.errors import InputError
from gpvae.evaluate.hiding import open_hidden
from gpvae.report import load
from gpvae.report.cost_table import cost_table, write_cost_html
from gpvae.report.data_figures import acquisition_timeline, class_distribution
from gpvae.report.embedding_figures import embedding_projection
from gpvae.report.figure import save_figure
from gpvae.report.gapfill_figures import calibration, example_pixels
from gpvae.report.map_figures import tile_maps
from gpvae.report.metric_figures import (
    CLASSIFICATION_METRICS,
    GAPFILL_METRICS,
    confusion_matrices,
    label_efficiency,
    metric_comparison,
)
from gpvae.report.names import FIGURE_NAMES, TABLES
from gpvae.report.training_figures import training_curves

log = logging.getLogger(__name__)
PathLike = str | os.PathLike
#: Classification protocols shown in the model comparison (label fractions: label efficiency).
TRANSFER_PROTOCOLS = ["parcel", "region", "year"]


@dataclass
class ReportInputs:
    """The files one figure may read (contracts 1b-7) and its settings."""

    cloud_cover: Sequence[PathLike] = ()
    pixels: PathLike | None = None
    training: Sequence[PathLike] = ()
    hidden: PathLike | None = None
    gapfill: Sequence[PathLike] = ()
    embeddings: Sequence[PathLike] = ()
    metrics: PathLike | None = None
    confusion: Sequence[PathLike] = ()
    maps: Sequence[PathLike] = ()
    cube: PathLike | None = None
    mask: PathLike | None = None
    tile_costs: Sequence[PathLike] = ()
    tile: str = ""
    examples: int = 4
    band: str | None = None
    seed: int = 0
    max_points: int = 2000
    protocol: str = "parcel"

    def need(self, name: str) -> object:
        """The input ``name``, or an InputError saying which option provides it."""
        value = getattr(self, name)
        if value is None:
            raise InputError(f"this figure needs the {name} file", field=name,
                             fix=f"pass --{name.replace('_', '-')}")
        return value


def _pixels(inp: ReportInputs) -> xr.Dataset:
    return load.open_datasets([inp.need("pixels")])[Path(inp.pixels).stem]


def _class_names(pixels: xr.Dataset) -> list[str]:
    return [str(c) for c in pixels["class_name"].values] if "class_name" in pixels else []


def _metrics(inp: ReportInputs) -> pd.DataFrame:
    return load.read_tidy_metrics(inp.need("metrics"))


def _classes(inp: ReportInputs) -> Figure:
    ds = _pixels(inp)
    labels = pd.DataFrame({k: ds[k].values for k in ("label", "split", "tile")})
    return class_distribution(labels, _class_names(ds))


def _examples(inp: ReportInputs) -> Figure:
    return example_pixels(_pixels(inp), open_hidden(Path(inp.need("hidden"))),
                          load.open_datasets(inp.gapfill), n=inp.examples, band=inp.band,
                          seed=inp.seed)


def _calibration(inp: ReportInputs) -> Figure:
    return calibration(_pixels(inp), open_hidden(Path(inp.need("hidden"))),
                       load.open_datasets(inp.gapfill))


def _embeddings(inp: ReportInputs) -> Figure:
    names = _class_names(_pixels(inp)) if inp.pixels else []
    return embedding_projection(load.open_datasets(inp.embeddings), names,
                                max_points=inp.max_points, seed=inp.seed)


def _maps(inp: ReportInputs) -> Figure:
    cube = load.open_datasets([inp.cube])[Path(inp.cube).stem] if inp.cube else None
    mask = load.open_datasets([inp.mask])[Path(inp.mask).stem] if inp.mask else None
    return tile_maps(load.open_datasets(inp.maps, from_parent=True), cube, mask, inp.tile)


#: Figure name -> builder (inputs -> matplotlib figure).
FIGURES: dict[str, Callable[[ReportInputs], Figure]] = {
    "timeline": lambda i: acquisition_timeline(load.read_cloud_cover(i.cloud_cover)),
    "classes": _classes,
    "training": lambda i: training_curves(load.read_training_metrics(i.training)),
    "examples": _examples,
    "calibration": _calibration,
    "gapfill_metrics": lambda i: metric_comparison(_metrics(i), "gapfill", GAPFILL_METRICS),
    "embeddings": _embeddings,
    "classification_metrics": lambda i: metric_comparison(
        _metrics(i), "classification", CLASSIFICATION_METRICS, TRANSFER_PROTOCOLS),
    "label_efficiency": lambda i: label_efficiency(_metrics(i)),
    "confusion": lambda i: confusion_matrices(load.read_confusion(i.confusion), i.protocol),
    "maps": _maps,
}
if tuple(FIGURES) != FIGURE_NAMES:  # the CLI offers FIGURE_NAMES without importing this module
    raise RuntimeError("gpvae.report.names.FIGURE_NAMES is out of date with FIGURES")


def make_report_figures(name: str, out: PathLike, inputs: ReportInputs) -> Path:
    """Draw the report figure ``name`` (see :data:`FIGURES`, or the ``cost`` table) into
    ``out`` (PNG/SVG/PDF from the suffix; HTML for tables), atomically."""
    log.info("report %s -> %s", name, out)
    if name == "cost":
        metrics = _metrics(inputs) if inputs.metrics else None
        table = cost_table(load.read_training_metrics(inputs.training), metrics,
                           load.read_json_files(inputs.tile_costs))
        return write_cost_html(table, out)
    if name not in FIGURES:
        raise InputError(f"unknown report figure {name!r}", field="figure",
                         fix=f"use one of {sorted(FIGURES) + list(TABLES)}")
    return save_figure(FIGURES[name](inputs), out)
