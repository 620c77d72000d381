"""GeoTIFF quicklooks of a tile product, streamed in row blocks from its netCDF variables.

``<stem>_class_map.tif`` (int16, nodata -1), ``<stem>_embedding_rgb.tif`` (first three
principal components of the mid-season embedding, float32, NaN nodata) and ``<stem>_rgb.tif``
(the gap-filled sensor's first colour composite from the registry, e.g. S2 B04/B03/B02, at
mid-season, float32). Each is written atomically with
the tile's CRS and transform; memory is bounded by one block of rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import affine
import numpy as np
import rasterio
from rasterio.windows import Window

from gpvae.io.atomic import atomic_path


@dataclasses.dataclass
class ScatterMoments:
    """Streaming sums n, Σx, Σxxᵀ of complete rows x (L,), for the covariance of PCA."""

    count: int
    total: np.ndarray
    outer: np.ndarray

    @classmethod
    def zeros(cls, dim: int) -> ScatterMoments:
        return cls(0, np.zeros(dim), np.zeros((dim, dim)))

    def update(self, x: np.ndarray) -> None:
        """Add the rows of x (N, L) without NaN."""
        x = np.asarray(x, dtype=np.float64)
        x = x[~np.isnan(x).any(axis=1)]
        self.count += x.shape[0]
        self.total += x.sum(axis=0)
        self.outer += x.T @ x

    def principal_axes(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean (L,) and the k leading eigenvectors (k, L) of the covariance
        Σxxᵀ/n - x̄x̄ᵀ (Pearson 1901), each signed so its largest entry is positive."""
        dim = self.total.shape[0]
        k = min(k, dim)
        if self.count == 0:
            return np.zeros(dim), np.eye(dim)[:k]
        mean = self.total / self.count
        cov = self.outer / self.count - np.outer(mean, mean)
        vals, vecs = np.linalg.eigh(cov)
        axes = vecs[:, np.argsort(vals)[::-1][:k]].T
        signs = np.sign(axes[np.arange(k), np.abs(axes).argmax(axis=1)])
        return mean, axes * np.where(signs == 0, 1.0, signs)[:, None]


@contextlib.contextmanager
def geotiff_writer(path: Path, *, count: int, dtype: str, crs: object,
                   transform: affine.Affine, height: int, width: int,
                   nodata: float | None) -> Iterator[rasterio.io.DatasetWriter]:
    """Open a deflate-compressed GeoTIFF for windowed writing; renamed onto ``path`` on
    success only."""
    profile = {"driver": "GTiff", "height": height, "width": width, "count": count,
               "dtype": dtype, "crs": crs, "transform": transform, "compress": "deflate"}
    if nodata is not None:
        profile["nodata"] = nodata
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        yield dst


def quicklook_paths(out_nc: Path) -> dict[str, Path]:
    """The GeoTIFF paths beside a tile product ``<stem>.nc``."""
    out_nc = Path(out_nc)
    return {name: out_nc.with_name(f"{out_nc.stem}_{name}.tif")
            for name in ("class_map", "embedding_rgb", "rgb")}


def write_quicklooks(variables: dict, out_nc: Path, *, crs: object, transform: affine.Affine,
                     mid: int, pca: tuple[np.ndarray, np.ndarray],
                     rgb_index: list[int] | None, rows: int = 256) -> list[Path]:
    """Write the quicklooks from the product's (netCDF4 or array-like) variables:
    ``class_map`` (y, x), ``embedding`` (ref_day, latent, y, x), ``gapfilled`` (ref_day, band,
    y, x) at reference-date index ``mid``; ``pca`` = (mean, axes) of the embedding."""
    height, width = variables["class_map"].shape
    paths = quicklook_paths(out_nc)
    mean, axes = pca
    grid = {"crs": crs, "transform": transform, "height": height, "width": width}
    written = []
    with contextlib.ExitStack() as stack:
        cls = stack.enter_context(geotiff_writer(paths["class_map"], count=1, dtype="int16",
                                                 nodata=-1, **grid))
        emb = stack.enter_context(geotiff_writer(paths["embedding_rgb"], count=axes.shape[0],
                                                 dtype="float32", nodata=np.nan, **grid))
        rgb = None
        if rgb_index is not None and "gapfilled" in variables:
            rgb = stack.enter_context(geotiff_writer(paths["rgb"], count=len(rgb_index),
                                                     dtype="float32", nodata=np.nan, **grid))
        for r0 in range(0, height, rows):
            r1 = min(r0 + rows, height)
            win = Window(0, r0, width, r1 - r0)
            cls.write(np.asarray(variables["class_map"][r0:r1, :], dtype=np.int16), 1,
                      window=win)
            z = np.asarray(variables["embedding"][mid, :, r0:r1, :], dtype=np.float64)
            scores = np.einsum("kl,lhw->khw", axes, z - mean[:, None, None])
            emb.write(scores.astype(np.float32), window=win)
            if rgb is not None:
                block = np.asarray(variables["gapfilled"][mid, :, r0:r1, :])
                rgb.write(block[rgb_index].astype(np.float32), window=win)
        written = [paths["class_map"], paths["embedding_rgb"]] + ([paths["rgb"]] if rgb
                                                                  else [])
    return written
