"""Parcels (GeoPackage polygons with an id and a class field): read, reproject, rasterise."""

from __future__ import annotations

import logging
from pathlib import Path

import affine
import geopandas as gpd
import numpy as np
import rasterio.crs
import rasterio.features
import shapely

from gpvae.errors import InputError

log = logging.getLogger(__name__)


def read_parcels(path: Path, *, id_field: str, class_field: str, crs: rasterio.crs.CRS,
                 bounds: tuple[float, float, float, float]) -> gpd.GeoDataFrame:
    """Parcels overlapping ``bounds`` (in ``crs``), reprojected to ``crs``.

    Returns columns ``parcel_id`` (int64), ``class`` (str) and ``geometry``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("parcel file not found", file=path, field="inputs.parcels.path",
                         fix="point inputs.parcels.path at a GeoPackage of parcels")
    gdf = gpd.read_file(path, engine="pyogrio")
    for field, key in ((id_field, "inputs.parcels.id_field"),
                       (class_field, "inputs.parcels.class_field")):
        if field not in gdf.columns:
            fields = [c for c in gdf.columns if c != "geometry"]
            raise InputError(f"parcel field {field!r} not found (fields: {fields})", file=path,
                             field=field, fix=f"set {key} to one of {fields}")
    if gdf.crs is None:
        raise InputError("parcel layer has no CRS", file=path, field="crs",
                         fix="assign the layer's CRS (e.g. ogr2ogr -a_srs EPSG:2154)")
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    try:
        ids = gdf[id_field].astype(np.int64)
    except (TypeError, ValueError) as err:
        raise InputError(f"parcel ids in {id_field!r} are not integers", file=path,
                         field=id_field, fix="use an integer id field") from err
    if ids.duplicated().any():
        dup = ids[ids.duplicated()].iloc[:5].tolist()
        raise InputError(f"parcel ids repeat (e.g. {dup})", file=path, field=id_field,
                         fix="use a unique id field")
    target = gpd.GeoSeries(crs=crs.to_wkt()).crs
    if not gdf.crs.equals(target):
        log.info("reprojecting parcels of %s from %s to the tile CRS %s", path.name,
                 gdf.crs.to_string(), target.to_string())
        gdf = gdf.to_crs(target)
    out = gpd.GeoDataFrame({"parcel_id": ids.loc[gdf.index].to_numpy(np.int64),
                            "class": gdf[class_field].astype(str).to_numpy()},
                           geometry=gdf.geometry.to_numpy(), crs=gdf.crs)
    out = out[out.intersects(shapely.box(*bounds))].reset_index(drop=True)
    if out.empty:
        raise InputError(f"no parcel overlaps the tile bounds {tuple(round(b) for b in bounds)}"
                         f" ({target.to_string()})", file=path, field="geometry",
                         fix="check the parcel file covers this tile (and its CRS is right)")
    return out


def rasterize_parcels(parcels: gpd.GeoDataFrame, transform: affine.Affine, height: int,
                      width: int) -> np.ndarray:
    """Row index + 1 of the parcel covering each pixel centre (0 = no parcel), int32."""
    shapes = ((geom, i + 1) for i, geom in enumerate(parcels.geometry))
    return rasterio.features.rasterize(shapes, out_shape=(height, width), transform=transform,
                                       fill=0, dtype="int32")
