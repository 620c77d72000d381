"""Parcels (GeoPackage polygons with an id and a class field): read, reproject, rasterise."""

from __future__ import annotations

import logging
from pathlib import Path

import affine
import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import rasterio.crs
import rasterio.features
import shapely

from gpvae.errors import InputError
from gpvae.io.failures import reading

log = logging.getLogger(__name__)


def read_parcels(path: Path, *, id_field: str, class_field: str, crs: rasterio.crs.CRS,
                 bounds: tuple[float, float, float, float]) -> gpd.GeoDataFrame:
    """Parcels overlapping ``bounds`` (in ``crs``), reprojected to ``crs``.

    Returns columns ``parcel_id`` (int64), ``class`` (str) and ``geometry``.
    """
    path = _existing(path)
    with reading(path, what="GeoPackage of parcels", field="inputs.parcels.path"):
        gdf = gpd.read_file(path, engine="pyogrio")
    _check_fields([c for c in gdf.columns if c != "geometry"], path, id_field, class_field)
    if gdf.crs is None:
        raise InputError("parcel layer has no CRS", file=path, field="crs",
                         fix="assign the layer's CRS (e.g. ogr2ogr -a_srs EPSG:2154)")
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    ids = _checked_ids_and_classes(gdf, path, id_field, class_field)
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


def _existing(path: Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InputError("parcel file not found", file=path, field="inputs.parcels.path",
                         fix="point inputs.parcels.path at a GeoPackage of parcels")
    return path


def _check_fields(fields: list[str], path: Path, id_field: str, class_field: str) -> None:
    """The configured id and class fields are fields of the layer."""
    for field, key in ((id_field, "inputs.parcels.id_field"),
                       (class_field, "inputs.parcels.class_field")):
        if field not in fields:
            raise InputError(f"parcel field {field!r} not found (fields: {fields})", file=path,
                             field=field, fix=f"set {key} to one of {fields}")


def _checked_ids_and_classes(table: pd.DataFrame, path: Path, id_field: str,
                             class_field: str) -> pd.Series:
    """Integer parcel ids, unique; every parcel with a class (InputError naming the rows)."""
    for field in (id_field, class_field):
        empty = table[field].isna().to_numpy()
        if empty.any():
            rows = (np.flatnonzero(empty)[:5] + 1).tolist()
            raise InputError(f"{empty.sum()} parcels have no value in {field!r} (features "
                             f"{rows}{'...' if empty.sum() > 5 else ''}, counting from 1)",
                             file=path, field=field,
                             fix=f"give every parcel a {field}, or delete those parcels")
    ids = pd.to_numeric(table[id_field], errors="coerce")
    bad = ids.isna().to_numpy() | (ids.to_numpy(np.float64) % 1 != 0)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InputError(f"parcel ids in {id_field!r} are not integers (feature {first + 1}: "
                         f"{table[id_field].iloc[first]!r})", file=path, field=id_field,
                         fix="use an integer id field")
    ids = ids.astype(np.int64)
    if ids.duplicated().any():
        dup = ids[ids.duplicated()].iloc[:5].tolist()
        raise InputError(f"parcel ids repeat (e.g. {dup})", file=path, field=id_field,
                         fix="use a unique id field")
    return ids


def parcel_attributes(path: Path, *, id_field: str, class_field: str) -> pd.DataFrame:
    """Id and class of every parcel of a GeoPackage, read without geometries (start-up
    checks: fast); the same checks as :func:`read_parcels`. Columns ``parcel_id``, ``class``.
    """
    path = _existing(path)
    with reading(path, what="GeoPackage of parcels", field="inputs.parcels.path"):
        fields = list(pyogrio.read_info(path)["fields"])
        _check_fields(fields, path, id_field, class_field)
        table = pyogrio.read_dataframe(path, columns=[id_field, class_field],
                                       read_geometry=False)
    ids = _checked_ids_and_classes(table, path, id_field, class_field)
    return pd.DataFrame({"parcel_id": ids.to_numpy(np.int64),
                         "class": table[class_field].astype(str).to_numpy()})


def rasterize_parcels(parcels: gpd.GeoDataFrame, transform: affine.Affine, height: int,
                      width: int) -> np.ndarray:
    """Row index + 1 of the parcel covering each pixel centre (0 = no parcel), int32."""
    shapes = ((geom, i + 1) for i, geom in enumerate(parcels.geometry))
    return rasterio.features.rasterize(shapes, out_shape=(height, width), transform=transform,
                                       fill=0, dtype="int32")
