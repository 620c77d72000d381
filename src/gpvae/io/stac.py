"""STAC input: Sentinel-2 L2A COG items from a static catalog or a STAC API.

Items are selected by MGRS tile (``s2:mgrs_tile``, ``grid:code`` or the ``mgrs:*`` fields),
date range and collection. Band assets are found by key (Earth-search names ``blue`` ...
``swir22``, ``scl``, or the band names ``B04`` / ``B04_10m``). The reflectance offset is
derived from the processing baseline (``s2:processing_baseline``, or ``N0509`` in
``s2:product_uri``), never from ``boa_offset_applied`` (wrong for some Earth-search items).
Rasters are read through rasterio (local files or HTTP range reads).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gpvae.errors import InputError
from gpvae.io.sen2cor import (
    L2A_RESOLUTION,
    L2AScene,
    check_bands,
    l2a_radiometry,
    write_l2a_cube,
)
from gpvae.io.window import in_date_range

if TYPE_CHECKING:
    from gpvae.io.extract import AOI

log = logging.getLogger(__name__)

#: Earth-search ``sentinel-2-l2a`` asset key of each band.
EARTH_SEARCH_KEYS = {"B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1",
                     "B06": "rededge2", "B07": "rededge3", "B08": "nir", "B8A": "nir08",
                     "B11": "swir16", "B12": "swir22", "SCL": "scl"}


def asset_key(item, band: str) -> str:
    """Key of a band's asset in an item: Earth-search name, band name or ``<band>_<res>m``."""
    res = L2A_RESOLUTION[band]
    candidates = [EARTH_SEARCH_KEYS[band], band, band.lower(), f"{band}_{res}m"]
    key = next((k for k in candidates if k in item.assets), None)
    if key is None:
        raise InputError(f"STAC item {item.id} has no asset for band {band}",
                         file=item.get_self_href() or item.id, field=f"assets.{candidates[0]}",
                         fix=f"give an asset keyed {' or '.join(candidates)} "
                             "(or drop the band from the config)")
    return key


def item_tile(item) -> str | None:
    """MGRS tile of an item (``T31TCJ``) from its properties, or None."""
    p = item.properties
    if p.get("s2:mgrs_tile"):
        return "T" + str(p["s2:mgrs_tile"]).removeprefix("T")
    if str(p.get("grid:code", "")).startswith("MGRS-"):
        return "T" + p["grid:code"][5:]
    if all(k in p for k in ("mgrs:utm_zone", "mgrs:latitude_band", "mgrs:grid_square")):
        return f"T{int(p['mgrs:utm_zone']):02d}{p['mgrs:latitude_band']}{p['mgrs:grid_square']}"
    m = re.search(r"_T(\d\d[A-Z]{3})_", item.id) or re.search(r"^S2[A-D]_(\d\d[A-Z]{3})_",
                                                             item.id)
    return f"T{m.group(1)}" if m else None


def item_baseline(item) -> str:
    """Processing baseline (``05.09``) of an item: property or product URI (``_N0509_``)."""
    p = item.properties
    if p.get("s2:processing_baseline"):
        return str(p["s2:processing_baseline"])
    for key in ("s2:product_uri", "s2:granule_id", "s2:datatake_id"):
        m = re.search(r"_N(\d\d)(\d\d)_", str(p.get(key, "")))
        if m:
            return f"{m.group(1)}.{m.group(2)}"
    raise InputError(f"STAC item {item.id} does not say its processing baseline",
                     file=item.get_self_href() or item.id, field="s2:processing_baseline",
                     fix="add s2:processing_baseline (the reflectance offset depends on it)")


def stac_items(catalog: str, tile: str, *, start=None, end=None,
               collection: str | None = None) -> list:
    """Items of ``tile`` in [start, end]: static catalog (path / URL of a .json) or STAC API."""
    import pystac

    tile = tile if tile.upper().startswith("T") else f"T{tile}"
    text = str(catalog)
    if text.startswith(("http://", "https://")) and not text.endswith(".json"):
        import pystac_client

        client = pystac_client.Client.open(text)
        found = client.search(collections=[collection] if collection else None,
                              datetime=f"{start or '..'}/{end or '..'}",
                              query={"mgrs:utm_zone": {"eq": int(tile[1:3])},
                                     "mgrs:latitude_band": {"eq": tile[3]},
                                     "mgrs:grid_square": {"eq": tile[4:]}}).items()
    else:
        if not text.startswith(("http://", "https://")) and not Path(text).is_file():
            raise InputError("STAC catalog not found", file=text, field="inputs.S2.path",
                             fix="point it at a catalog.json or a STAC API URL")
        root = pystac.read_file(text)
        found = root.get_items(recursive=True) if hasattr(root, "get_items") else [root]
    items = [it for it in found if item_tile(it) == tile
             and (collection is None or it.collection_id == collection)]
    if items:
        times = np.array([np.datetime64(it.datetime.replace(tzinfo=None), "ns")
                          for it in items])
        items = [it for it, k in zip(items, in_date_range(times, start, end), strict=True)
                 if k]
    if not items:
        raise InputError(f"no STAC item of {tile} in [{start}, {end}]"
                         + (f" in collection {collection}" if collection else ""),
                         file=text, field="inputs.S2.path",
                         fix="check the tile, the dates and the collection")
    return items


def stac_scene(item, bands: list[str]) -> L2AScene:
    """The L2A scene of a STAC item: asset hrefs, baseline-keyed radiometry, platform."""
    paths = {b: item.assets[asset_key(item, b)].get_absolute_href() for b in [*bands, "SCL"]}
    platform = str(item.properties.get("platform", "")).upper().replace("-", "")
    return L2AScene(name=item.id, acquired=np.datetime64(item.datetime.replace(tzinfo=None),
                                                         "ns"),
                    platform=platform, relative_orbit=int(item.properties.get(
                        "sat:relative_orbit", 0)), source=item.get_self_href() or item.id,
                    paths=paths, radiometry=l2a_radiometry(item_baseline(item)))


def extract_stac(catalog: str, tile: str, out: Path, *, bands: list[str] | None = None,
                 aoi: AOI | None = None, start: str | None = None, end: str | None = None,
                 collection: str | None = None) -> Path:
    """Sentinel-2 L2A COG items of ``tile`` in a STAC catalog -> S2 cube at 10 m.

    Same cube as the Sen2Cor reader (gpvae.io.sen2cor.write_l2a_cube): reflectance =
    (DN + offset(baseline)) / 10000, valid = has data, ``quality`` = SCL.
    """
    bands = check_bands(bands)
    items = stac_items(catalog, tile, start=start, end=end, collection=collection)
    scenes = [stac_scene(it, bands) for it in items]
    return write_l2a_cube(scenes, tile, out, bands=bands, aoi=aoi, reader="stac")
