"""openEO netCDF cubes (dims t/y/x, one variable per band, a ``crs`` grid mapping).

Band variables are named ``S2-L2A-B04``, ``S2-L2A-SCL``, ``S1-SIGMA0-VV`` (openEO back-ends,
openeo-gfmap). Sentinel-2 is uint16 DN with reflectance = DN / 10000, DN 0 = no data; the
CDSE back-end serves L2A harmonised to baseline < 04.00 (no BOA offset left in the values:
vegetation red is ~300 DN, which an uncorrected -1000 offset would make negative). SCL is
kept as the ``quality`` layer (``quality_kind = scl``). Sentinel-1 comes either as float
linear sigma0 (``sar_backscatter``) or as openeo-gfmap's uint16 dB code (see gpvae.io.sar).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from gpvae.errors import InputError
from gpvae.io.generic import Decoder, MaskRule, extract_cube_dataset, open_any_cube
from gpvae.io.sar import sar_to_linear
from gpvae.io.sensors import SENSOR_BANDS

if TYPE_CHECKING:
    from gpvae.io.extract import AOI

#: Band variable name patterns; group ``band`` is the canonical band / polarisation.
OPENEO_S2_VAR = re.compile(r"^(?:S2-L2A-)?(?P<band>B\d\d|B8A|SCL)$")
OPENEO_S1_VAR = re.compile(r"^(?:S1-SIGMA0-)?(?P<band>VV|VH)$")
#: Sentinel-2 L2A quantification of openEO back-ends (reflectance = DN / 10000).
OPENEO_S2_SCALE = 1.0e-4


def openeo_band_vars(ds: xr.Dataset, sensor: str, *, file: object = None) -> dict[str, str]:
    """Canonical band -> variable of an openEO cube (plus ``SCL`` for Sentinel-2)."""
    pattern = OPENEO_S2_VAR if sensor == "S2" else OPENEO_S1_VAR
    example = "S2-L2A-B04" if sensor == "S2" else "S1-SIGMA0-VV"
    found = {}
    for var in map(str, ds.data_vars):
        m = pattern.match(var)
        if m and (m["band"] in SENSOR_BANDS[sensor] or m["band"] == "SCL"):
            found[m["band"]] = var
    if not set(found) - {"SCL"}:
        raise InputError(f"no {sensor} band variable in the openEO cube", file=file,
                         field="variables",
                         fix=f"expected names like {example}"
                         f"; variables there: {sorted(map(str, ds.data_vars))}")
    return found


def openeo_decoder(ds: xr.Dataset, sensor: str, band_vars: dict[str, str], *,
                   file: object = None) -> Decoder:
    """Decoder of openEO band values: S2 DN / 10000 (0 = no data); S1 uint16 code or linear."""
    def decode_s2(band: str, raw: np.ndarray) -> np.ndarray:
        dn = np.asarray(raw, dtype=np.float64)
        return np.where((dn == 0) | ~np.isfinite(dn), np.nan, dn * OPENEO_S2_SCALE
                        ).astype(np.float32)

    def decode_s1(band: str, raw: np.ndarray) -> np.ndarray:
        integer = np.issubdtype(ds[band_vars[band]].dtype, np.integer)
        return sar_to_linear(raw, "db_uint16" if integer else "linear", file=file,
                             field=band_vars[band])
    return decode_s2 if sensor == "S2" else decode_s1


def extract_openeo(src: Path, tile: str, out: Path, *, sensor: str, aoi: AOI | None = None,
                   start: str | None = None, end: str | None = None, crs: str | None = None,
                   bands: list[str] | None = None) -> Path:
    """openEO netCDF cube (``sensor`` S2 | S1_ASC | S1_DES) to the canonical cube.

    ``bands``: canonical bands to keep (default: all the cube has). ``crs``: only used when
    the cube lacks a grid mapping.
    """
    src = Path(src)
    if sensor not in SENSOR_BANDS:
        raise InputError(f"unknown sensor {sensor!r}", file=src, field="sensor",
                         fix=f"use one of {list(SENSOR_BANDS)}")
    with open_any_cube(src) as ds:
        found = openeo_band_vars(ds, sensor, file=src)
        scl = found.pop("SCL", None)
        if bands is not None:
            missing = sorted(set(bands) - set(found))
            if missing:
                raise InputError(f"bands {missing} not in the openEO cube", file=src,
                                 field="bands", fix=f"bands there: {sorted(found)}")
            found = {b: v for b, v in found.items() if b in bands}
        time_var = "t" if "t" in ds.variables else "time"
        mask = None if scl is None else MaskRule(variable=scl, kind="scl")
        return extract_cube_dataset(ds, tile, out, sensor=sensor, bands=found,
                                    decode=openeo_decoder(ds, sensor, found, file=src),
                                    time_var=time_var, mask=mask, crs=crs, aoi=aoi,
                                    start=start, end=end, reader="openeo", source=src)
