"""Sentinel-1 backscatter encodings: dB <-> linear, the uint16 dB code, units sniffing.

Cubes hold linear sigma0 (docs/contracts.md); dB is only a model transform. Producers ship
other encodings: openeo-gfmap and WorldCereal compress dB to uint16 as
DN = 10^((dB + 83) / 20), clipped to [1, 65534] (openeo-gfmap preprocessing/sar.py,
``compress_backscatter_uint16``), 0 and 65535 carry no data.
"""

from __future__ import annotations

import numpy as np

from gpvae.errors import InputError

#: Units a Sentinel-1 input may come in.
SAR_UNITS = ("linear", "db", "db_uint16")
#: DN values of the uint16 dB code that carry no data.
DB_UINT16_NODATA = (0, 65535)


def linear_to_db(linear: np.ndarray) -> np.ndarray:
    """Decibels of linear backscatter: dB = 10 log10(sigma0); NaN where sigma0 <= 0."""
    linear = np.asarray(linear, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(linear > 0, 10.0 * np.log10(np.where(linear > 0, linear, 1.0)), np.nan)


def db_to_linear(db: np.ndarray) -> np.ndarray:
    """Linear backscatter of decibels: sigma0 = 10^(dB / 10)."""
    return np.power(10.0, np.asarray(db, dtype=np.float64) / 10.0)


def decode_db_uint16(dn: np.ndarray) -> np.ndarray:
    """Linear sigma0 of the uint16 dB code: dB = 20 log10(DN) - 83 (openeo-gfmap); NaN = no data.
    """
    dn = np.asarray(dn).astype(np.float64)
    bad = ~np.isfinite(dn) | np.isin(dn, DB_UINT16_NODATA)
    db = 20.0 * np.log10(np.where(bad, 1.0, dn)) - 83.0
    return np.where(bad, np.nan, db_to_linear(db))


def encode_db_uint16(linear: np.ndarray) -> np.ndarray:
    """The uint16 dB code of linear sigma0: DN = 10^((dB + 83) / 20) in [1, 65534]; 0 = no data.
    """
    db = linear_to_db(linear)
    dn = np.clip(np.round(np.power(10.0, (np.nan_to_num(db, nan=-np.inf) + 83.0) / 20.0)),
                 1, 65534)
    return np.where(np.isfinite(db), dn, 0).astype(np.uint16)


def sniff_sar_units(values: np.ndarray) -> str:
    """Guess the units of backscatter samples: ``linear``, ``db`` or ``db_uint16``.

    Linear sigma0 is >= 0 and mostly below 1; dB of sigma0 is mostly negative (-30 to 0);
    the uint16 code is integer-valued and mostly above 100 (-43 dB). Zeros and NaN are ignored.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v) & (v != 0)]
    if v.size == 0:
        return "linear"
    if (v < 0).mean() > 0.05:
        return "db"
    if np.median(v) > 100 and np.all(v == np.round(v)) and v.max() <= 65535:
        return "db_uint16"
    return "linear"


def sar_to_linear(values: np.ndarray, units: str, *, file: object = None,
                  field: str | None = None) -> np.ndarray:
    """Linear sigma0 (float32, NaN = no data) from backscatter in ``units``; checks the units.

    Raises :class:`InputError` when the values look like another encoding than ``units``
    says (dB given where linear is expected, or the reverse).
    """
    if units not in SAR_UNITS:
        raise InputError(f"unknown Sentinel-1 units {units!r}; expected one of {SAR_UNITS}",
                         file=file, field=field, fix="set the units to linear, db or db_uint16")
    v = np.asarray(values, dtype=np.float64)
    seen = sniff_sar_units(v)
    if np.isfinite(v[v != 0]).any() and seen != units:
        hint = {"db": "backscatter in dB (mostly negative values)",
                "linear": "linear backscatter (non-negative, mostly below 1)",
                "db_uint16": "the uint16 dB code DN = 10^((dB + 83) / 20) (integers > 100)"}
        raise InputError(f"Sentinel-1 values look like {hint[seen]} but {units!r} is expected",
                         file=file, field=field,
                         fix=f"set the input's units to {seen!r} (or give {units} values)")
    if units == "db_uint16":
        return decode_db_uint16(v).astype(np.float32)
    if units == "db":
        return db_to_linear(v).astype(np.float32)
    return np.where(v > 0, v, np.nan).astype(np.float32)
