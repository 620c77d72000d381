"""Consistent colours: one colour per model name in every figure, one per class and sensor."""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import matplotlib

from gpvae.io.product import class_colours as product_class_colours

#: Fixed colours of the demo models and the baselines (tab10 / greys), so figures agree.
KNOWN_MODELS: dict[str, str] = {
    "gpvae_exact": "#1f77b4",
    "gpvae_sparse": "#ff7f0e",
    "gpvae_markov": "#2ca02c",
    "gpvae_banded": "#d62728",
    "iid_vae": "#9467bd",
    "hivae": "#8c564b",
    "seq_vae": "#e377c2",
    "linear": "#7f7f7f",
    "gp": "#bcbd22",
    "raw_linear": "#17becf",
}
SENSOR_COLOURS: dict[str, str] = {"S2": "#2ca02c", "S1_ASC": "#1f77b4", "S1_DES": "#ff7f0e"}
OBSERVED = "#222222"
HIDDEN = "#d62728"


def model_colour(name: str) -> str:
    """Colour of a model: fixed for known names, else a stable hash of the name into tab20."""
    if name in KNOWN_MODELS:
        return KNOWN_MODELS[name]
    cmap = matplotlib.colormaps["tab20"]
    return matplotlib.colors.to_hex(cmap(zlib.crc32(name.encode()) % 20))


def model_palette(names: Iterable[str]) -> dict[str, str]:
    """``{model: colour}`` for seaborn's ``palette=`` argument."""
    return {n: model_colour(n) for n in names}


def sensor_colour(sensor: str) -> str:
    """Colour of a sensor (S2 green, S1 ascending blue, S1 descending orange)."""
    return SENSOR_COLOURS.get(sensor, "#444444")


def class_colours(n: int) -> list[str]:
    """``n`` distinct class colours (tab10, then tab20 for more classes): the colour table of
    the class-map GeoTIFFs (gpvae.io.product), so the report and QGIS agree."""
    return product_class_colours(n)
