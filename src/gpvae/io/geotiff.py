"""Single-band GeoTIFF writing and reading (rasterio), used by the product writers/readers."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self

import affine
import numpy as np
import rasterio
from rasterio.enums import Resampling

from gpvae.errors import InputError
from gpvae.io.failures import reading


def write_geotiff(path: Path, array: np.ndarray, *, crs: str, transform: affine.Affine,
                  nodata: float | None = None) -> Path:
    """Write a 2-D array as a deflate-compressed single-band GeoTIFF (dtype of ``array``)."""
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D array, got shape {array.shape}")
    profile = {
        "driver": "GTiff", "height": array.shape[0], "width": array.shape[1], "count": 1,
        "dtype": array.dtype.name, "crs": crs, "transform": transform, "compress": "deflate",
    }
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)
    return Path(path)


def read_geotiff(path: Path, *, window: rasterio.windows.Window | None = None,
                 out_shape: tuple[int, int] | None = None,
                 resampling: Resampling = Resampling.nearest,
                 grid_check: Callable[[tuple], None] | None = None) -> np.ndarray:
    """Read band 1 of a GeoTIFF, optionally a window and resampled to ``out_shape``.

    ``grid_check`` is called with the file's grid (crs, transform, height, width) before the
    read, from the same open (callers check grids without opening the file twice).
    """
    return read_geotiff_resampled(path, window=window, out_shape=out_shape,
                                  resamplings=(resampling,), grid_check=grid_check)[0]


def read_geotiff_resampled(path: Path, *, window: rasterio.windows.Window | None,
                           out_shape: tuple[int, int] | None,
                           resamplings: Sequence[Resampling],
                           grid_check: Callable[[tuple], None] | None = None
                           ) -> list[np.ndarray]:
    """Band 1 of a GeoTIFF read once per resampling method, from one open of the file (GDAL
    decodes its blocks once; its block cache serves the later reads); ``grid_check`` as in
    :func:`read_geotiff`."""
    path = Path(path)
    if not path.is_file():
        raise InputError("raster file not found", file=path,
                         fix="check the product is complete (re-download or re-extract it)")
    with reading(path, what="GeoTIFF raster"), rasterio.open(path) as src:
        if grid_check is not None:
            grid_check((src.crs, src.transform, src.height, src.width))
        return [src.read(1, window=window, out_shape=out_shape, resampling=r)
                for r in resamplings]


def raster_grid(path: Path) -> tuple[rasterio.crs.CRS, affine.Affine, int, int]:
    """Grid of a raster file: (crs, transform, height, width)."""
    with reading(path, what="GeoTIFF raster"), rasterio.open(path) as src:
        return src.crs, src.transform, src.height, src.width


class OpenFiles:
    """Base of the readers that open several rasters once and read them window by window:
    what :meth:`enter` opened is closed together by :meth:`close` (or on leaving ``with``);
    ``__init__`` opens inside ``with self.opening():``, so a failure closes what was open."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()

    def enter(self, context: contextlib.AbstractContextManager) -> Any:
        """Enter ``context`` (e.g. ``rasterio.open(path)``) until :meth:`close`."""
        return self._stack.enter_context(context)

    def open_raster(self, path: object, *, field: str | None = None,
                    what: str = "GeoTIFF raster") -> Any:
        """``rasterio.open(path)`` until :meth:`close`; a file that cannot be opened is an
        InputError naming it (gpvae.io.failures.reading)."""
        with reading(path, what=what, field=field):
            return self.enter(rasterio.open(path))

    @contextlib.contextmanager
    def opening(self) -> Iterator[None]:
        """Close everything opened so far if the block fails."""
        try:
            yield
        except BaseException:
            self._stack.close()
            raise

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_band(src: Any, *, field: str | None = None, **kwargs: object) -> np.ndarray:
    """Band 1 of an open raster (``src.read(1, **kwargs)``); a truncated or corrupt file is
    an InputError naming it."""
    with reading(src.name, what="GeoTIFF raster", field=field):
        return src.read(1, **kwargs)
