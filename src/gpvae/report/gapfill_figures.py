"""Report section Gap filling: example pixels with each model's 90% band; calibration curves.

The gap-filled sensor is the one ``hidden.nc`` names (S2 on the demo); SAR sensors of the
pixel dataset are drawn beside it in dB.
"""

from __future__ import annotations

import matplotlib.dates as mdates
import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from scipy.special import ndtri

from gpvae.evaluate.gapfill_metrics import coverage
from gpvae.evaluate.inference import hidden_sensor
from gpvae.io.pixels import sensor_definitions
from gpvae.report.figure import new_figure, placeholder
from gpvae.report.palette import HIDDEN, OBSERVED, model_colour, sensor_colour

#: Nominal levels of the calibration curve (central Gaussian intervals).
LEVELS = np.round(np.arange(0.05, 1.0, 0.05), 2)
Z90 = float(ndtri(0.95))


def pick_examples(hidden: xr.DataArray, n: int, seed: int) -> np.ndarray:
    """``n`` pixel-dataset indices, drawn with ``seed`` among samples with a hidden point."""
    counts = hidden.sum(hidden.dims[1]).values
    candidates = hidden["sample"].values[counts > 0]
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(candidates, size=min(n, candidates.size), replace=False))


def _to_db(v: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10 * np.log10(v)


def example_pixels(pixels: xr.Dataset, hidden: xr.DataArray, preds: dict[str, xr.Dataset], *,
                   n: int = 4, band: str | None = None, seed: int = 0) -> Figure:
    """Example test pixels: the gap-filled sensor's ``band`` (default its first band):
    observations, hidden points and each model's mean ± 1.645 std (90% band) at the hidden
    dates (left); the pixel's SAR backscatter in dB (right)."""
    idx = pick_examples(hidden, n, seed)
    if idx.size == 0:
        return placeholder("No test pixel has a hidden observation.", "Examples")
    s = hidden_sensor(hidden)
    registry = sensor_definitions(pixels)
    band = band or str(pixels[f"band_{s}"].values[0])
    unit = registry[s].band(band).unit if s in registry else ""
    s1 = [k for k in pixels.attrs.get("sensors", s).split() if k in registry
          and registry[k].is_sar]
    fig, axes = new_figure(idx.size, 2, panel=(6.5, 2.8), width_ratios=[2, 1])
    t2 = pixels[f"time_{s}"].values
    for row, i in enumerate(idx):
        ax, ax1 = axes[row]
        y = pixels[f"values_{s}"].isel(sample=int(i)).sel({f"band_{s}": band}).values
        h = hidden.sel(sample=i).values.astype(bool)
        if f"truth_{s}" in pixels:
            truth = pixels[f"truth_{s}"].isel(sample=int(i)).sel({f"band_{s}": band}).values
            ok = np.isfinite(truth)
            ax.plot(t2[ok], truth[ok], ":", color=OBSERVED, lw=0.9, label="noise-free truth")
        seen = np.isfinite(y) & ~h
        ax.plot(t2[seen], y[seen], "o", color=OBSERVED, ms=3.5, label="observed")
        ax.plot(t2[h], y[h], "x", color=HIDDEN, ms=6, mew=2, label="hidden")
        for model, pred in preds.items():
            mu = pred["pred_mean"].sel({"sample": i, f"band_{s}": band}).values
            sd = pred["pred_std"].sel({"sample": i, f"band_{s}": band}).values
            ok = np.isfinite(mu) & np.isfinite(sd)
            colour = model_colour(model)
            ax.plot(t2[ok], mu[ok], ".-", color=colour, lw=1, ms=4, label=model)
            ax.fill_between(t2[ok], mu[ok] - Z90 * sd[ok], mu[ok] + Z90 * sd[ok],
                            color=colour, alpha=0.18, lw=0)
        year = int(pixels["year"].values[i]) if "year" in pixels.coords else None
        if "start" in pixels.variables:
            ax.set_xlim(pixels["start"].values[i], pixels["end"].values[i])
            ax1.set_xlim(ax.get_xlim())
        elif year is not None:
            ax.set_xlim(np.datetime64(f"{year}-01-01"), np.datetime64(f"{year + 1}-01-01"))
            ax1.set_xlim(ax.get_xlim())
        label = pixels["label"].values[i] if "label" in pixels.coords else -1
        names = pixels["class_name"].values if "class_name" in pixels else []
        cls = str(names[label]) if 0 <= label < len(names) else "unknown class"
        ax.set_title(f"pixel {i} ({cls}, {year}): {s} {band}", fontsize=10)
        ax.set_ylabel(unit)
        for sensor in s1:
            t1 = pixels[f"time_{sensor}"].values
            for pol, marker in (("VV", "o"), ("VH", "^")):
                v = _to_db(pixels[f"values_{sensor}"].isel(sample=int(i))
                           .sel({f"band_{sensor}": pol}).values)
                ok = np.isfinite(v)
                ax1.plot(t1[ok], v[ok], marker, color=sensor_colour(sensor), ms=3,
                         label=f"{sensor} {pol}")
        ax1.set_title("SAR backscatter" if s1 else "(no SAR sensor)", fontsize=10)
        ax1.set_ylabel("dB")
        for a in (ax, ax1):
            a.xaxis.set_major_formatter(mdates.DateFormatter("%b"))
    axes[0, 0].legend(fontsize=7, ncol=2, loc="upper left")
    if s1:
        axes[0, 1].legend(fontsize=7)
    return fig


def coverage_curve(y: np.ndarray, mu: np.ndarray, sd: np.ndarray,
                   levels: np.ndarray = LEVELS) -> np.ndarray:
    """Empirical coverage of the central N(mu, sd²) intervals at each nominal level (finite
    entries only; NaN when there is none)."""
    ok = np.isfinite(y) & np.isfinite(mu) & np.isfinite(sd)
    if not ok.any():
        return np.full(len(levels), np.nan)
    return np.array([coverage(y[ok], mu[ok], sd[ok], level) for level in levels])


def calibration(pixels: xr.Dataset, hidden: xr.DataArray, preds: dict[str, xr.Dataset],
                levels: np.ndarray = LEVELS) -> Figure:
    """Calibration: empirical coverage of each model's central intervals vs their nominal
    level, against the hidden observations and (demo) the noise-free truth."""
    if not preds:
        return placeholder("No gap-filling predictions.", "Calibration")
    idx = hidden["sample"].values.astype(np.int64)
    mask = hidden.values.astype(bool)[:, :, None]
    s = hidden_sensor(hidden)
    dims = ("sample", f"time_{s}", f"band_{s}")
    targets = {"hidden observations": f"values_{s}"}
    if f"truth_{s}" in pixels:
        targets["noise-free truth"] = f"truth_{s}"
    fig, axes = new_figure(1, len(targets), panel=(4.6, 4.2))
    for ax, (title, var) in zip(axes[0], targets.items(), strict=False):
        ref = pixels[var].isel(sample=idx)
        bands = ref[f"band_{s}"].values
        y = np.where(mask, ref.transpose(*dims).values, np.nan)
        for model, pred in preds.items():
            p = pred.sel({"sample": idx, f"band_{s}": bands}).transpose(*dims)
            cov = coverage_curve(y, p["pred_mean"].values, p["pred_std"].values, levels)
            ax.plot(levels, cov, "o-", ms=3, color=model_colour(model), label=model)
        ax.plot([0, 1], [0, 1], ":", color="black", lw=1, label="ideal")
        ax.axvline(0.9, color="#bbbbbb", lw=0.8)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="nominal coverage",
               ylabel="empirical coverage", title=f"vs {title}")
    axes[0, 0].legend(fontsize=8)
    return fig
