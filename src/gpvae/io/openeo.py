"""openEO netCDF cubes (dims t/y/x, one variable per band, a ``crs`` grid mapping).

Band variables are named ``S2-L2A-B04``, ``S2-L2A-SCL``, ``S1-SIGMA0-VV`` (openEO back-ends,
openeo-gfmap), or by the bare band name; any sensor of the registry reads the same way.
Integer values are raw DN: physical = DN * the sensor's scale + offset, DN 0 = no data
(Sentinel-2: reflectance = DN / 10000); float values are taken as physical. The CDSE
back-end serves L2A harmonised to baseline < 04.00 (no BOA offset left in the values:
vegetation red is ~300 DN, which an uncorrected -1000 offset would make negative). SCL is
kept as the ``quality`` layer (``quality_kind = scl``). Sentinel-1 comes either as float
linear sigma0 (``sar_backscatter``) or as openeo-gfmap's uint16 dB code (see gpvae.io.sar).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from gpvae.errors import InputError
from gpvae.io.generic import Decoder, extract_cube_dataset, open_any_cube, raw_integer
from gpvae.io.quality import MaskRule, MaskRules
from gpvae.io.sar import sar_to_linear
from gpvae.io.sensors import Sensor, builtin

if TYPE_CHECKING:
    from gpvae.io.extract import AOI

#: openEO quality layer of Sentinel-2 (Sen2Cor scene classification).
OPENEO_QUALITY = "SCL"


def openeo_band_vars(ds: xr.Dataset, sensor: Sensor, *, file: object = None) -> dict[str, str]:
    """Band of ``sensor`` -> variable of an openEO cube (plus ``SCL``, the quality layer).

    A variable is a band when its name, or its last ``-``-separated part (``S2-L2A-B04``,
    ``S1-SIGMA0-VV``), is a band of the sensor."""
    found = {}
    for var in map(str, ds.data_vars):
        band = var.rsplit("-", 1)[-1]
        if band in sensor.band_names or band == OPENEO_QUALITY:
            found[band] = var
    if not set(found) - {OPENEO_QUALITY}:
        raise InputError(f"no {sensor.name} band variable in the openEO cube", file=file,
                         field="variables",
                         fix=f"expected names like <collection>-{sensor.band_names[0]} for the "
                         f"bands {', '.join(sensor.band_names)} (declare others under "
                         f"sensors.{sensor.name}.bands); variables there: "
                         f"{sorted(map(str, ds.data_vars))}")
    return found


def openeo_decoder(ds: xr.Dataset, sensor: Sensor, band_vars: dict[str, str], *,
                   file: object = None) -> Decoder:
    """Decoder of openEO band values: optical / index integer DN * the sensor's scale + offset
    (DN 0 = no data), float values as they are; SAR uint16 dB code or linear."""
    def decode_optical(band: str, raw: np.ndarray) -> np.ndarray:
        dn = np.asarray(raw, dtype=np.float64)
        integer = raw_integer(ds[band_vars[band]])
        scale, offset = (sensor.scale, sensor.offset) if integer else (1.0, 0.0)
        bad = ~np.isfinite(dn) | ((dn == 0) if integer else False)
        return np.where(bad, np.nan, dn * scale + offset).astype(np.float32)

    def decode_sar(band: str, raw: np.ndarray) -> np.ndarray:
        integer = np.issubdtype(ds[band_vars[band]].dtype, np.integer)
        return sar_to_linear(raw, "db_uint16" if integer else "linear", file=file,
                             field=band_vars[band])
    return decode_sar if sensor.is_sar else decode_optical


def extract_openeo(src: Path, tile: str, out: Path, *, sensor: Sensor | str,
                   aoi: AOI | None = None, start: str | None = None, end: str | None = None,
                   crs: str | None = None, bands: list[str] | None = None) -> Path:
    """openEO netCDF cube of one sensor (S2, S1_ASC, S1_DES or any registry sensor) to the
    canonical cube.

    ``bands``: bands to keep (default: all the cube has). ``crs``: only used when the cube
    lacks a grid mapping.
    """
    src = Path(src)
    sensor = builtin(sensor) if isinstance(sensor, str) else sensor
    with open_any_cube(src) as ds:
        found = openeo_band_vars(ds, sensor, file=src)
        scl = found.pop(OPENEO_QUALITY, None)
        if bands is not None:
            sensor.check_bands(bands, file=src, field="bands")
            missing = sorted(set(bands) - set(found))
            if missing:
                raise InputError(f"bands {missing} not in the openEO cube", file=src,
                                 field="bands", fix=f"bands there: {sorted(found)}")
            found = {b: v for b, v in found.items() if b in bands}
        time_var = "t" if "t" in ds.variables else "time"
        mask = None if scl is None else MaskRules((MaskRule(variable=scl, kind="scl"),))
        return extract_cube_dataset(ds, tile, out, sensor=sensor, bands=found,
                                    decode=openeo_decoder(ds, sensor, found, file=src),
                                    time_var=time_var, mask=mask, crs=crs, aoi=aoi,
                                    start=start, end=end, reader="openeo", source=src)
