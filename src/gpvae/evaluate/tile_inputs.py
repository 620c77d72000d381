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
from gpvae.io.coarse import cells_of, is_coarser, pixel_size, same_grid
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
    coarse: tuple | None = None  # a coarse sensor's grid (gpvae.io.coarse), None: the tile's


class TileInputs:
    """The cubes and masks of one tile for the sensors and bands a model uses.

    ``cubes`` / ``masks``: sensor -> path; every sensor of ``sensor_bands`` needs a cube and
    all cubes must share one grid, except coarse sensors (a coarser grid in the tile's CRS,
    gpvae.io.coarse), whose cells are read for the pixels they hold. ``span``: the training
    data's span rule (default calendar years); ``year`` selects the span labelled with that
    year (None: the latest span of the S2 cube, of the first sensor without S2; ``all``: the
    whole range of the cubes).
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
        first = "S2" if "S2" in opened else min(
            opened, key=lambda s: pixel_size(cube_grid(opened[s])[1]))
        self.crs, self.transform, self.height, self.width = cube_grid(opened[first])
        self.tile = str(opened[first].attrs.get("tile", ""))
        self.y = opened[first]["y"].values
        self.x = opened[first]["x"].values
        self.spatial_ref = (opened[first]["spatial_ref"] if "spatial_ref" in opened[first]
                            else None)
        for sensor, cube in opened.items():
            crs, transform, h, w = cube_grid(cube)
            if is_coarser(self.grid, (crs, transform, h, w)):
                continue  # a coarse sensor: each pixel reads the cell holding it
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
        grid = cube_grid(cube)
        coarse = None if same_grid(grid, self.grid) else grid
        start, stop = (float(v) for v in to_days(np.array([self.start, self.end])))
        lo, hi = np.searchsorted(days, start, "left"), np.searchsorted(days, stop, "left")
        if hi == lo:
            log.warning("%s: no date in the span %s..%s: every pixel is unobserved by this "
                        "sensor", sensor, self.start, self.end)
            return SensorSource(cube, mask, [have.index(b) for b in bands], slice(lo, hi),
                                np.array([start]), coarse)  # one all-missing date
        return SensorSource(cube, mask, [have.index(b) for b in bands], slice(lo, hi),
                            days[lo:hi], coarse)

    @property
    def grid(self) -> tuple[rasterio.crs.CRS, affine.Affine, int, int]:
        """(crs, transform, height, width) of the tile."""
        return self.crs, self.transform, self.height, self.width

    def window(self, rows: slice, cols: slice) -> dict[str, np.ndarray]:
        """Per sensor the physical values (P, T, C) of the window's pixels (row-major), NaN
        where not usable; only that window of the span's dates is read."""
        out = {}
        for sensor, src in self.sources.items():
            if src.coarse is not None:
                out[sensor] = self._coarse_window(src, rows, cols)
                continue
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

    def _coarse_window(self, src: SensorSource, rows: slice, cols: slice) -> np.ndarray:
        """(P, T, C) values of a coarse sensor at the window's pixels: each pixel gets the
        cell holding its centre (NaN outside the coarse grid or where not usable)."""
        rr, cc = np.meshgrid(np.arange(rows.start, rows.stop), np.arange(cols.start, cols.stop),
                             indexing="ij")
        r, c, inside = cells_of(self.grid, src.coarse, rr.ravel(), cc.ravel())
        sel = {"time": src.dates, "y": slice(int(r.min()), int(r.max()) + 1),
               "x": slice(int(c.min()), int(c.max()) + 1)}
        data = src.cube["data"].isel(sel).values[:, src.band_index]  # (T, C, h, w)
        usable = (src.mask if src.mask is not None else src.cube)["valid"].isel(sel).values
        data = np.where(usable.astype(bool)[:, None], data, np.nan).astype(np.float32)
        if data.shape[0] == 0:
            data = np.full((1, *data.shape[1:]), np.nan, np.float32)
        out = data[:, :, r - sel["y"].start, c - sel["x"].start].transpose(2, 0, 1)
        out[~inside] = np.nan
        return np.ascontiguousarray(out)

    def close(self) -> None:
        """Close every opened file."""
        for ds in self._open:
            ds.close()
        self._open = []

    def __enter__(self) -> TileInputs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
