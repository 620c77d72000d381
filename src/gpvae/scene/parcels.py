"""Agricultural parcels: Voronoi fields with narrow roads between them, and the sub-pixel
coverage matrix that turns parcel signals into (mixed) pixel signals."""

from __future__ import annotations

import affine
import geopandas as gpd
import numpy as np
import shapely
from rasterio.features import rasterize
from scipy import sparse

from gpvae.scene.config import CLASSES, SceneConfig
from gpvae.scene.grid import tile_transform
from gpvae.scene.seeding import rng_for

#: Supersampling factor used to measure each parcel's share of a 10 m pixel.
SUPERSAMPLE = 5


def allocate_classes(n: int, weights: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    """Class of each of ``n`` parcels: one parcel per positive-weight class when n allows,
    the rest drawn from the (normalised) weights; shuffled."""
    names = [c for c in CLASSES if weights.get(c, 0.0) > 0]
    p = np.array([weights[c] for c in names], float)
    p /= p.sum()
    first = list(names) if n >= len(names) else []
    rest = rng.choice(len(names), size=n - len(first), p=p)
    out = np.array(first + [names[i] for i in rest], dtype=object)
    return out[rng.permutation(n)].astype(str)


def voronoi_fields(bounds: tuple[float, float, float, float], n: int,
                   rng: np.random.Generator, *, lloyd_steps: int = 2) -> list:
    """Voronoi cells of ``n`` random seeds in ``bounds`` (Lloyd-relaxed towards the compact,
    similar-sized shapes of fields), clipped to the bounds."""
    x0, y0, x1, y1 = bounds
    frame = shapely.box(*bounds)
    pts = np.column_stack([rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)])
    for step in range(lloyd_steps + 1):
        cells = shapely.voronoi_polygons(shapely.multipoints(pts), extend_to=frame,
                                         ordered=True)
        cells = [c.intersection(frame) for c in shapely.get_parts(cells)]
        if step < lloyd_steps:
            pts = np.array([[c.centroid.x, c.centroid.y] for c in cells])
    return cells


def make_parcels(cfg: SceneConfig, tile: str, tile_index: int = 0) -> gpd.GeoDataFrame:
    """Parcels of a tile: ``parcel_id`` (unique over tiles: (tile_index+1)*100000 + k),
    ``class``, polygon geometry in the tile CRS, separated by 3-8 m roads/hedges."""
    tcfg = cfg.tiles[tile]
    rng = rng_for(cfg.seed, tile, "parcels")
    x0, y1 = tcfg.origin
    extent = cfg.size_px * 10.0
    area_km2 = (extent / 1000.0) ** 2
    n = max(int(round(cfg.parcels_per_km2 * area_km2)), cfg.min_parcels)
    cells = voronoi_fields((x0, y1 - extent, x0 + extent, y1), n, rng)
    gaps = rng.uniform(1.5, 4.0, n)
    geoms = [shapely.buffer(c, -g, join_style="mitre") for c, g in zip(cells, gaps, strict=True)]
    classes = allocate_classes(n, tcfg.class_weights, rng)
    keep = [i for i, g in enumerate(geoms) if not g.is_empty and g.area > 100.0]
    return gpd.GeoDataFrame(
        {"parcel_id": np.arange(1, len(keep) + 1, dtype=np.int64) + (tile_index + 1) * 100000,
         "class": classes[keep]},
        geometry=[geoms[i] for i in keep], crs=tcfg.crs)


def coverage_matrix(parcels: gpd.GeoDataFrame, transform: affine.Affine, size: int
                    ) -> sparse.csr_matrix:
    """Sparse (pixels, parcels + 1) matrix of the share of each 10 m pixel covered by each
    parcel (last column: roads/gaps), measured on a SUPERSAMPLE x finer raster; rows sum to 1."""
    k = SUPERSAMPLE
    fine = rasterize(
        ((geom, i + 1) for i, geom in enumerate(parcels.geometry)),
        out_shape=(size * k, size * k), transform=transform @ affine.Affine.scale(1.0 / k),
        fill=0, dtype="int32")
    n = len(parcels)
    col = np.where(fine == 0, n, fine - 1).ravel()
    rr, cc = np.divmod(np.arange(size * k * size * k), size * k)
    row = (rr // k) * size + cc // k
    w = np.full(row.shape, 1.0 / (k * k))
    return sparse.csr_matrix((w, (row, col)), shape=(size * size, n + 1))


def parcel_raster(parcels: gpd.GeoDataFrame, cfg: SceneConfig, tile: str) -> np.ndarray:
    """Index (0..n-1) of the parcel covering each pixel centre, -1 on roads (for tests)."""
    transform = tile_transform(cfg.tiles[tile])
    idx = rasterize(((g, i + 1) for i, g in enumerate(parcels.geometry)),
                    out_shape=(cfg.size_px, cfg.size_px), transform=transform, fill=0,
                    dtype="int32")
    return idx - 1
