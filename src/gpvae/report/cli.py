"""The ``gpvae figures`` subcommand: one report figure (or the cost table) per call."""

from __future__ import annotations

import argparse
from pathlib import Path

from gpvae.report.names import FIGURE_NAMES, TABLES


def _cmd_figures(a: argparse.Namespace) -> None:
    from gpvae.report.make import ReportInputs, make_report_figures

    inputs = ReportInputs(
        cloud_cover=a.cloud_cover, pixels=a.pixels, training=a.training, hidden=a.hidden,
        gapfill=a.gapfill, embeddings=a.embeddings, metrics=a.metrics, confusion=a.confusion,
        maps=a.maps, cube=a.cube, mask=a.mask, tile_costs=a.tile_costs, tile=a.tile,
        examples=a.examples, band=a.band, seed=a.seed, max_points=a.max_points,
        protocol=a.protocol)
    make_report_figures(a.figure, Path(a.out), inputs)


def add_figures_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``figures`` on the ``gpvae`` command's subparsers; returns its parser."""
    s = subparsers.add_parser("figures", help="draw one figure or table of the HTML report")
    s.add_argument("figure", choices=sorted(FIGURE_NAMES) + list(TABLES))
    s.add_argument("--out", required=True, help="output file (.png/.svg; .html for tables)")
    s.add_argument("--cloud-cover", nargs="*", default=[], help="masks/*_cloud_cover.csv")
    s.add_argument("--pixels", default=None, help="samples/pixels.nc")
    s.add_argument("--training", nargs="*", default=[], help="models/<model>/metrics.csv")
    s.add_argument("--hidden", default=None, help="gapfill/hidden.nc")
    s.add_argument("--gapfill", nargs="*", default=[], help="gapfill/<model>.nc")
    s.add_argument("--embeddings", nargs="*", default=[], help="embeddings/<model>.nc")
    s.add_argument("--metrics", default=None, help="metrics/all.csv")
    s.add_argument("--confusion", nargs="*", default=[], help="metrics/confusion_<model>.csv")
    s.add_argument("--maps", nargs="*", default=[], help="maps/<model>/<tile>.nc")
    s.add_argument("--cube", default=None, help="cubes/<tile>/S2.nc (observed RGB)")
    s.add_argument("--mask", default=None, help="masks/<tile>/S2.nc")
    s.add_argument("--tile-costs", nargs="*", default=[], help="maps/<model>/<tile>_cost.json")
    s.add_argument("--tile", default="")
    s.add_argument("--examples", type=int, default=4, help="example pixels to draw")
    s.add_argument("--band", default=None,
                   help="band of the example pixels (default: the sensor's first band)")
    s.add_argument("--seed", type=int, default=0, help="seed of the example/point draws")
    s.add_argument("--max-points", type=int, default=2000, help="points per embedding plot")
    s.add_argument("--protocol", default="parcel", help="protocol of the confusion matrices")
    s.set_defaults(func=_cmd_figures)
    return s
