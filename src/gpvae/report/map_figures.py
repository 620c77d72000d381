"""Report section Maps: observed RGB composites, and per model the gap-filled RGB, its
predictive std, the embedding RGB (first three principal components) and the class map."""

from __future__ import annotations

import json

import numpy as np
import xarray as xr
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from gpvae.io.cube import cube_sensor
from gpvae.report.embedding_figures import principal_components
from gpvae.report.figure import new_figure, placeholder
from gpvae.report.palette import class_colours


def composites_of(ds: xr.Dataset) -> tuple[tuple[str, str, str], ...]:
    """The colour composites (registry, true colour first) of a cube or tile product: its
    recorded ``sensor_definition``, else the built-in sensor it names."""
    sensor = cube_sensor(ds)
    return () if sensor is None else sensor.composites


def display_bands(bands, composites: tuple[tuple[str, str, str], ...] = ()
                  ) -> tuple[list[str], str]:
    """Bands to show as an image and its name: the first of the sensor's ``composites``
    whose bands exist ("RGB" for the first, true colour), else the first band as grey."""
    present = [str(b) for b in np.asarray(bands)]
    for k, combo in enumerate(composites):
        if all(b in present for b in combo):
            return list(combo), "RGB" if k == 0 else "/".join(combo)
    return [present[0]] * 3, present[0]


def stretch(image: np.ndarray, low: float = 2.0, high: float = 98.0) -> np.ndarray:
    """Per-channel linear stretch of ``image`` (..., c) between its ``low`` and ``high``
    percentiles to [0, 1]; NaN (no data) becomes white."""
    out = np.ones(image.shape, dtype=float)
    for c in range(image.shape[-1]):
        band = image[..., c]
        ok = np.isfinite(band)
        if not ok.any():
            continue
        lo, hi = np.percentile(band[ok], [low, high])
        out[..., c] = np.where(ok, np.clip((band - lo) / max(hi - lo, 1e-12), 0, 1), 1.0)
    return out


def embedding_rgb(embedding: np.ndarray) -> np.ndarray:
    """(latent, y, x) embedding -> (y, x, 3) image of its first three principal components."""
    n_latent, ny, nx = embedding.shape
    flat = embedding.reshape(n_latent, -1).T
    ok = np.isfinite(flat).all(axis=1)
    image = np.full((ny * nx, 3), np.nan)
    if ok.sum() >= 2:
        image[ok], _ = principal_components(flat[ok], 3)
    return stretch(image.reshape(ny, nx, 3))


def class_names_of(da: xr.DataArray) -> list[str]:
    """The ``class_names`` attribute of a class map (list, JSON list or comma/space string)."""
    names = da.attrs.get("class_names", [])
    if isinstance(names, str):
        try:
            names = json.loads(names)
        except json.JSONDecodeError:
            names = names.replace(",", " ").split()
    return [str(n) for n in np.atleast_1d(names)]


def mid_season(ds: xr.Dataset) -> int:
    """Index on ``time`` of the written date closest to the middle of the product's dates."""
    days = ds["ref_day"].values
    return int(np.argmin(np.abs(days - np.median(days))))


def _show(ax, image, title, **kwargs):
    ax.imshow(image, interpolation="nearest", **kwargs)
    ax.set(title=title, xticks=[], yticks=[])
    ax.grid(False)


def observed_rgb(cube: xr.Dataset, mask: xr.Dataset | None, pick: str) -> tuple[np.ndarray,
                                                                                 str]:
    """Observed colour composite of the clearest (``pick='clearest'``) or the median-cover
    (``'typical'``) date; unusable pixels white. Returns the image and its date."""
    valid = (mask if mask is not None else cube)["valid"].values.astype(bool)
    share = valid.reshape(valid.shape[0], -1).mean(axis=1)
    order = np.argsort(share)
    t = int(order[-1] if pick == "clearest" else order[len(order) // 2])
    bands, name = display_bands(cube["band"].values, composites_of(cube))
    rgb = cube["data"].isel(time=t).sel(band=bands).transpose("y", "x", "band")
    image = np.where(valid[t][..., None], rgb.values, np.nan)
    date = str(cube["time"].values[t])[:10]
    return stretch(image), f"{name} {date} ({share[t]:.0%} usable)"


def tile_maps(maps: dict[str, xr.Dataset], cube: xr.Dataset | None = None,
              mask: xr.Dataset | None = None, tile: str = "") -> Figure:
    """Maps of one tile: observed RGB composites (top row), then per model the gap-filled RGB
    at mid-season, its predictive std, the embedding RGB and the class map."""
    if not maps and cube is None:
        return placeholder(f"No maps for tile {tile}.", "Maps")
    nrows = len(maps) + (cube is not None)
    fig, axes = new_figure(nrows, 4, panel=(3.4, 3.4))
    row = 0
    if cube is not None:
        for col, pick in enumerate(("clearest", "typical")):
            image, when = observed_rgb(cube, mask, pick)
            _show(axes[0, col], image, f"observed, {pick} date\n{when}")
        for ax in axes[0, 2:]:
            ax.axis("off")
        axes[0, 2].text(0, 0.5, f"Tile {tile}\nwhite = cloud / no data", fontsize=11,
                        va="center")
        row = 1
    for model, ds in maps.items():
        ax_rgb, ax_std, ax_emb, ax_cls = axes[row]
        t = mid_season(ds)
        when = str(ds["time"].values[t])[:10]
        if "gapfilled" not in ds:  # the model reads no optical / index sensor
            for ax in (ax_rgb, ax_std):
                ax.axis("off")
        else:
            bands, name = display_bands(ds["gapfilled"]["band"].values, composites_of(ds))
            filled = ds["gapfilled"].isel(time=t).sel(band=bands)
            _show(ax_rgb, stretch(filled.transpose("y", "x", "band").values),
                  f"{model}\ngap-filled {name}, {when}")
            std = ds["gapfilled_std"].isel(time=t).sel(band=sorted(set(bands))).mean("band")
            im = ax_std.imshow(std.values, cmap="magma", interpolation="nearest")
            ax_std.set(title=f"predictive std ({name} mean)", xticks=[], yticks=[])
            ax_std.grid(False)
            fig.colorbar(im, ax=ax_std, fraction=0.046, pad=0.02)
        if "embedding" in ds:
            emb = ds["embedding"].isel(time=t).transpose("latent", "y", "x")
            _show(ax_emb, embedding_rgb(emb.values.astype(float)), "embedding RGB (PC1-3)")
        else:
            ax_emb.axis("off")
        classes = ds["class_map"].values
        names = class_names_of(ds["class_map"])
        n = max(len(names), int(classes.max()) + 1, 1)
        colours = class_colours(n)
        shown = np.ma.masked_less(classes, 0)
        _show(ax_cls, shown, "class map", cmap=ListedColormap(colours), vmin=-0.5,
              vmax=n - 0.5)
        present = [c for c in np.unique(classes) if c >= 0]
        ax_cls.legend(handles=[Patch(color=colours[c], label=names[c] if c < len(names)
                                     else str(c)) for c in present],
                      fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        row += 1
    return fig
