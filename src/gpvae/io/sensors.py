"""Sensor and band naming conventions (docs/contracts.md, "Sensors and bands")."""

from __future__ import annotations

#: Canonical Sentinel-2 bands, in cube order.
S2_BANDS: list[str] = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
#: Sentinel-2 bands at 10 m (Theia R1); the others are at 20 m (R2).
S2_10M: frozenset[str] = frozenset({"B02", "B03", "B04", "B08"})
#: Canonical Sentinel-1 polarisations, in cube order.
S1_BANDS: list[str] = ["VV", "VH"]

#: Bands of each sensor id.
SENSOR_BANDS: dict[str, list[str]] = {"S2": S2_BANDS, "S1_ASC": S1_BANDS, "S1_DES": S1_BANDS}
#: Radiometry attribute of each sensor id.
SENSOR_RADIOMETRY: dict[str, str] = {
    "S2": "surface_reflectance", "S1_ASC": "sigma0_linear", "S1_DES": "sigma0_linear",
}


def theia_band_name(band: str) -> str:
    """Theia/MAJA file band name of a canonical band: B02 -> B2, B8A -> B8A, B11 -> B11."""
    if band not in S2_BANDS:
        raise KeyError(f"unknown Sentinel-2 band {band!r}; expected one of {S2_BANDS}")
    return band if band in ("B8A", "B11", "B12") else "B" + band[1:].lstrip("0")


def s1tiling_tile(tile: str) -> str:
    """S1Tiling tile code: the MGRS tile without its leading ``T`` (T31TCJ -> 31TCJ)."""
    return tile[1:] if tile.upper().startswith("T") else tile
