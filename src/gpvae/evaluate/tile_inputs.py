"""Windowed, lazy reading of a tile's cubes and masks as per-pixel series of one span.

The span follows the training data's rule (gpvae.data.span: a calendar year, a season, or the
whole range); every pixel's time origin is the span's start.

Every sensor's cube (docs/contracts.md section 1) and mask (section 1b) is opened lazily;
:meth:`TileInputs.window` reads only one spatial window of the year's dates and returns the
physical values per pixel, NaN where the mask (or, without a mask, the cube's ``valid``) says
the value is not usable.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import affine
import numpy as np
import rasterio.crs
import xarray as xr

from gpvae import to_days
from gpvae.data.span import Span, label_year
from gpvae.errors import InputError
from gpvae.io.cube import cube_grid, open_cube
from gpvae.io.maskfile import open_mask

log = logging.getLogger(__name__)


@dataclasses.dataclass
class SensorSource:
    """One sensor's open cube and mask, its selected bands and the span's date range."""

    cube: xr.Dataset
    mask: xr.Dataset | None
    band_index: list[int]
    dates: slice  # the span's positions on the cube's time axis
    days: np.ndarray  # (T,) float64 days since EPOCH of those dates


class TileInputs:
    """The cubes and masks of one tile for the sensors and bands a model uses.

    ``cubes`` / ``masks``: sensor -> path; every sensor of ``sensor_bands`` needs a cube and
    all cubes must share one grid. ``span``: the training data's span rule (default calendar
    years); ``year`` selects the span labelled with that year (None: the latest span of the
    S2 cube, of the first sensor without S2; ``all``: the whole range of the cubes).
    """

    def __init__(self, cubes: dict[str, Path], masks: dict[str, Path],
                 sensor_bands: dict[str, list[str]], year: int | None = None,
                 span: Span | None = None) -> None:
        self.sources: dict[str, SensorSource] = {}
        self._open: list[xr.Dataset] = []
        try:
            self._setup(cubes, masks, sensor_bands, year, span or Span())
        except BaseException:
            self.close()
            raise

    def _setup(self, cubes: dict[str, Path], masks: dict[str, Path],
               sensor_bands: dict[str, list[str]], year: int | None, span: Span) -> None:
        missing = [s for s in sensor_bands if s not in cubes]
        if missing:
            raise InputError(f"no cube given for sensors {missing} used by the model",
                             field="cubes", fix="pass a cube per model sensor "
                             "(results/cubes/<tile>/<sensor>.nc)")
        opened = {}
        for sensor in sensor_bands:
            cube = open_cube(Path(cubes[sensor]))
            self._open.append(cube)
            opened[sensor] = cube
        first = "S2" if "S2" in opened else next(iter(opened))
        self.crs, self.transform, self.height, self.width = cube_grid(opened[first])
        self.tile = str(opened[first].attrs.get("tile", ""))
        self.y = opened[first]["y"].values
        self.x = opened[first]["x"].values
        self.spatial_ref = (opened[first]["spatial_ref"] if "spatial_ref" in opened[first]
                            else None)
        for sensor, cube in opened.items():
            crs, transform, h, w = cube_grid(cube)
            if (h, w) != (self.height, self.width) or not transform.almost_equals(
                    self.transform) or crs != self.crs:
                raise InputError(f"cube of {sensor} is on another grid ({h}x{w}, {transform}) "
                                 f"than {first} ({self.height}x{self.width}, {self.transform})",
                                 file=cubes[sensor], field="transform",
                                 fix="extract all sensors of a tile on the tile's grid")
        times = (np.concatenate([c["time"].values for c in opened.values()])
                 if span.kind == "all" else opened[first]["time"].values)
        starts, ends = span.windows(times)
        years = label_year(starts, ends)
        pick = len(starts) - 1 if year is None else np.flatnonzero(years == int(year))
        if np.size(pick) == 0:
            raise InputError(f"no {span.describe()} span labelled {year} in the cubes (spans: "
                             f"{sorted(set(years.tolist()))})", field="predict.year",
                             fix="choose predict.year among those years")
        pick = int(np.ravel(pick)[-1])
        self.year = int(years[pick])
        self.start, self.end = starts[pick], ends[pick]
        self.origin = float(to_days(np.array([self.start]))[0])
        for sensor, bands in sensor_bands.items():
            self.sources[sensor] = self._source(sensor, opened[sensor], bands,
                                                masks.get(sensor))

    def _source(self, sensor: str, cube: xr.Dataset, bands: list[str],
                mask_path: Path | None) -> SensorSource:
        have = [str(b) for b in cube["band"].values]
        absent = [b for b in bands if b not in have]
        if absent:
            raise InputError(f"cube of {sensor} lacks bands {absent} the model uses",
                             file=cube.encoding.get("source"), field="band",
                             fix="re-extract the cube with all bands")
        mask = None
        if mask_path is not None:
            mask = open_mask(Path(mask_path), cube)
            self._open.append(mask)
        else:
            log.warning("%s: no mask given; using the cube's valid (clouds not removed)",
                        sensor)
        days = to_days(cube["time"].values)
        start, stop = (float(v) for v in to_days(np.array([self.start, self.end])))
        lo, hi = np.searchsorted(days, start, "left"), np.searchsorted(days, stop, "left")
        if hi == lo:
            log.warning("%s: no date in the span %s..%s: every pixel is unobserved by this "
                        "sensor", sensor, self.start, self.end)
            return SensorSource(cube, mask, [have.index(b) for b in bands], slice(lo, hi),
                                np.array([start]))  # one all-missing date keeps shapes valid
        return SensorSource(cube, mask, [have.index(b) for b in bands], slice(lo, hi),
                            days[lo:hi])

    @property
    def grid(self) -> tuple[rasterio.crs.CRS, affine.Affine, int, int]:
        """(crs, transform, height, width) of the tile."""
        return self.crs, self.transform, self.height, self.width

    def window(self, rows: slice, cols: slice) -> dict[str, np.ndarray]:
        """Per sensor the physical values (P, T, C) of the window's pixels (row-major), NaN
        where not usable; only that window of the span's dates is read."""
        out = {}
        for sensor, src in self.sources.items():
            sel = {"time": src.dates, "y": rows, "x": cols}
            data = src.cube["data"].isel(sel).values[:, src.band_index]  # (T, C, h, w)
            usable = (src.mask if src.mask is not None else src.cube)["valid"].isel(sel).values
            data = np.where(usable.astype(bool)[:, None], data, np.nan).astype(np.float32)
            t, c, h, w = data.shape
            if t == 0:  # no date in the span: one missing date (see _source)
                data = np.full((1, c, h, w), np.nan, np.float32)
                t = 1
            out[sensor] = data.transpose(2, 3, 0, 1).reshape(h * w, t, c)
        return out

    def close(self) -> None:
        """Close every opened file."""
        for ds in self._open:
            ds.close()
        self._open = []

    def __enter__(self) -> TileInputs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
