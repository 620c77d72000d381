"""Cloud-Optimized GeoTIFFs of a tile product, streamed in row bands from its netCDF.

``<stem>_class_map.tif`` (uint8, nodata 255, a colour table, the class names as GDAL category
names and raster attribute table in ``.tif.aux.xml``: QGIS shows them), ``<stem>_embedding_rgb
.tif`` (first three principal components of the embedding at the middle written date,
float32), ``<stem>_rgb.tif`` (the gap-filled sensor's first colour composite from the
registry, e.g. S2 B04/B03/B02, at the middle written date), and on request
``<stem>_embedding.tif`` / ``<stem>_gapfilled.tif`` (every latent / band at every written
date). Packed values keep their int16 encoding with the GDAL scale and offset of the netCDF;
every band is described ``<band> <date>``. Each file is written as a tiled GeoTIFF, then
copied to the COG layout (512 px blocks, deflate, overviews) atomically; memory is bounded by
one band of rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import affine
import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from gpvae.io.atomic import atomic_path
from gpvae.io.product import class_colours

#: Rows per band when streaming a product into a GeoTIFF.
ROWS = 256


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


@dataclasses.dataclass(frozen=True)
class Grid:
    """A GeoTIFF's georeferencing."""

    crs: object
    transform: affine.Affine
    height: int
    width: int


@contextlib.contextmanager
def cog_writer(path: Path, grid: Grid, *, count: int, dtype: str, nodata: float | None,
               descriptions: Sequence[str], scales: Sequence[float] | None = None,
               offsets: Sequence[float] | None = None, colormap: dict | None = None,
               overview_resampling: str = "AVERAGE") -> Iterator[rasterio.io.DatasetWriter]:
    """Yield a tiled GeoTIFF open for windowed writing; on success it is copied to a
    Cloud-Optimized GeoTIFF at ``path`` (atomically) with its band descriptions, scales and
    offsets, colour table and nodata."""
    profile = {"driver": "GTiff", "height": grid.height, "width": grid.width, "count": count,
               "dtype": dtype, "crs": grid.crs, "transform": grid.transform, "tiled": True,
               "blockxsize": 256, "blockysize": 256, "compress": "deflate", "BIGTIFF": "IF_SAFER"}
    if nodata is not None:
        profile["nodata"] = nodata
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tiled.tif", dir=path.parent)
    os.close(fd)
    raw = Path(name)
    try:
        with rasterio.open(raw, "w", **profile) as dst:
            for i, text in enumerate(descriptions, start=1):
                dst.set_band_description(i, text)
            if scales is not None:
                dst.scales, dst.offsets = tuple(scales), tuple(offsets or [0.0] * count)
            if colormap is not None:
                dst.write_colormap(1, colormap)
            yield dst
        with atomic_path(path) as tmp:
            rasterio.shutil.copy(raw, tmp, driver="COG", compress="DEFLATE", blocksize=512,
                                 predictor="YES" if np.dtype(dtype).kind in "iu" else "NO",
                                 resampling=overview_resampling, bigtiff="IF_SAFER")
    finally:
        raw.unlink(missing_ok=True)


def _hex_rgb(colour: str) -> tuple[int, int, int, int]:
    c = colour.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16), 255


def class_aux_xml(class_names: Sequence[str]) -> str:
    """GDAL PAM sidecar of a class map: category names and a thematic raster attribute
    table (value, class name, colour)."""
    colours = [_hex_rgb(c) for c in class_colours(len(class_names))]
    fields = [("Value", 0, 0), ("Class_Name", 2, 2), ("Red", 0, 6), ("Green", 0, 7),
              ("Blue", 0, 8)]
    defs = "".join(f'<FieldDefn index="{i}"><Name>{n}</Name><Type>{t}</Type><Usage>{u}'
                   f"</Usage></FieldDefn>" for i, (n, t, u) in enumerate(fields))
    rows = "".join(f'<Row index="{i}"><F>{i}</F><F>{escape(str(name))}</F><F>{r}</F><F>{g}'
                   f"</F><F>{b}</F></Row>"
                   for i, (name, (r, g, b, _)) in enumerate(zip(class_names, colours,
                                                                strict=True)))
    cats = "".join(f"<Category>{escape(str(n))}</Category>" for n in class_names)
    return (f'<PAMDataset>\n  <PAMRasterBand band="1">\n    <CategoryNames>{cats}'
            f'</CategoryNames>\n    <GDALRasterAttributeTable tableType="thematic">{defs}'
            f"{rows}</GDALRasterAttributeTable>\n  </PAMRasterBand>\n</PAMDataset>\n")


def geotiff_paths(out_nc: Path, names: Sequence[str]) -> dict[str, Path]:
    """The GeoTIFF paths beside a tile product ``<stem>.nc``."""
    out_nc = Path(out_nc)
    return {name: out_nc.with_name(f"{out_nc.stem}_{name}.tif") for name in names}


def _rows(height: int) -> Iterator[tuple[slice, int]]:
    for r0 in range(0, height, ROWS):
        r1 = min(r0 + ROWS, height)
        yield slice(r0, r1), r1 - r0


def write_class_map(path: Path, grid: Grid, variable: object, class_names: Sequence[str]
                    ) -> list[Path]:
    """The class map COG (uint8 with nodata 255, uint16 / 65535 beyond 255 classes), its
    colour table, and the category names / attribute table in ``.tif.aux.xml``."""
    n = len(class_names)
    dtype, nodata = ("uint8", 255) if n < 255 else ("uint16", 65535)
    colours = {i: _hex_rgb(c) for i, c in enumerate(class_colours(n))}
    colours[nodata] = (0, 0, 0, 0)
    with cog_writer(path, grid, count=1, dtype=dtype, nodata=nodata,
                    descriptions=["class"], colormap=colours,
                    overview_resampling="NEAREST") as dst:
        for rows, h in _rows(grid.height):
            c = np.asarray(variable[rows, :], dtype=np.int64)
            dst.write(np.where(c < 0, nodata, c).astype(dtype), 1,
                      window=Window(0, rows.start, grid.width, h))
    aux = Path(f"{path}.aux.xml")
    with atomic_path(aux) as tmp:
        Path(tmp).write_text(class_aux_xml(class_names))
    return [Path(path), aux]


def write_bands(path: Path, grid: Grid, variable: object, picks: Sequence[tuple[int, int]],
                descriptions: Sequence[str], *, scale: float | None, offset: float,
                nodata: float | None) -> list[Path]:
    """A COG of packed (or float) bands ``variable[t, k, y, x]`` for each (t, k) of ``picks``,
    keeping the packing (GDAL scale / offset) and described by ``descriptions``."""
    dtype = np.dtype(variable.dtype).name
    with cog_writer(path, grid, count=len(picks), dtype=dtype, nodata=nodata,
                    descriptions=descriptions,
                    scales=None if scale is None else [scale] * len(picks),
                    offsets=None if scale is None else [offset] * len(picks)) as dst:
        for rows, h in _rows(grid.height):
            block = np.stack([np.asarray(variable[t, k, rows, :]) for t, k in picks])
            dst.write(block.astype(dtype), window=Window(0, rows.start, grid.width, h))
    return [Path(path)]


def write_pca_rgb(path: Path, grid: Grid, embedding: object, unpack: object, t: int,
                  pca: tuple[np.ndarray, np.ndarray], date: str) -> list[Path]:
    """The first principal components of the embedding at date index ``t`` (float32)."""
    mean, axes = pca
    with cog_writer(path, grid, count=axes.shape[0], dtype="float32", nodata=np.nan,
                    descriptions=[f"PC{i + 1} {date}" for i in range(axes.shape[0])]) as dst:
        for rows, h in _rows(grid.height):
            z = unpack(np.asarray(embedding[t, :, rows, :])).astype(np.float64)
            scores = np.einsum("kl,lhw->khw", axes, z - mean[:, None, None])
            dst.write(scores.astype(np.float32), window=Window(0, rows.start, grid.width, h))
    return [Path(path)]


def scatter_of(embedding: object, unpack: object, t: int, height: int) -> ScatterMoments:
    """Scatter moments of the unpacked embedding at date index ``t``, streamed by rows."""
    acc = ScatterMoments.zeros(embedding.shape[1])
    for rows, _ in _rows(height):
        z = unpack(np.asarray(embedding[t, :, rows, :]))
        acc.update(z.reshape(z.shape[0], -1).T)
    return acc
