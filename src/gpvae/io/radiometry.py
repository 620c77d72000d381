"""Optical radiometry sanity: surface reflectance, not digital numbers, not scaled twice.

The counterpart of the Sentinel-1 dB check (gpvae.io.sar): cubes and tables hold surface
reflectance, typically 0-0.6 (clouds and snow up to ~1.5). Two mistakes are caught on the
values themselves:

- digital numbers where reflectance is expected (a generic cube or a table that stores DN
  as floats, which are taken as physical values, without ``scale`` / ``encoding.<sensor>.scale``;
  integer DN get the sensor's product scale): median above :data:`DN_MEDIAN` (DN of L2A
  products are reflectance x 10000, median in the hundreds to thousands);
- reflectance scaled twice (a Theia product stored as float reflectance, divided by 10^4
  again): 99th percentile below :data:`TWICE_P99` (reflectance of any real scene reaches
  several percent in some band).
"""

from __future__ import annotations

import numpy as np

from gpvae.errors import InputError

#: Radiometry attribute of optical (reflectance) sensors.
REFLECTANCE = "surface_reflectance"
#: Median above which values are taken for digital numbers.
DN_MEDIAN = 5.0
#: 99th percentile below which values are taken for reflectance divided by 10^4 twice.
TWICE_P99 = 2e-3
#: Fewer finite values than this are too few to judge.
MIN_VALUES = 50
#: At most this many values are looked at (an even subsample of larger arrays).
MAX_VALUES = 200_000

#: How to fix each mistake, per reader (prefix of the cube's ``reader`` attribute).
FIXES: dict[str, dict[str, str]] = {
    "generic": {"dn": "set the input's scale to the product's quantification (e.g. scale: "
                      "0.0001 and offset: -0.1 for Sentinel-2 L2A DN of baseline >= 04.00): "
                      "unset, float variables are taken as physical values (integer ones get "
                      "the sensor's product scale, docs/sensors.md)",
                "twice": "set the input's scale to 1: the cube already holds reflectance"},
    "table": {"dn": "set inputs.table.encoding.<sensor>.scale (e.g. 0.0001 for DN)",
              "twice": "set inputs.table.encoding.<sensor>.scale to 1 (or drop it): the "
                       "table already holds reflectance"},
    "theia": {"dn": "the FRE/SRE bands must be int16 DN = reflectance x 10000 (as MAJA "
                    "writes them): re-download the product",
              "twice": "the FRE/SRE bands hold float reflectance, not int16 DN x 10000: "
                       "re-download the product as MAJA wrote it, or read these files as a "
                       "generic cube (format: generic, scale: 1)"},
    "openeo": {"twice": "this openEO cube already holds reflectance: read it with format: "
                        "generic (scale: 1) instead of openeo"},
}
DEFAULT_FIX = {"dn": "check the product's quantification value and offset (reflectance = "
                     "(DN + offset) / quantification)",
               "twice": "check the product's quantification value: reflectance seems to be "
                        "divided by it twice"}


def _sample(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size > MAX_VALUES:
        v = v[:: v.size // MAX_VALUES + 1]
    return v[np.isfinite(v) & (v != 0)]


def reflectance_problem(values: np.ndarray) -> tuple[str, str] | None:
    """``("dn" | "twice", description)`` when ``values`` do not look like reflectance."""
    v = _sample(values)
    if v.size < MIN_VALUES:
        return None
    med, p99 = float(np.median(np.abs(v))), float(np.percentile(np.abs(v), 99))
    if med > DN_MEDIAN:
        return "dn", (f"values look like digital numbers, not reflectance (median {med:.4g}, "
                      "reflectance is 0-1)")
    if p99 < TWICE_P99:
        return "twice", (f"values look like reflectance divided by 10^4 twice (99th "
                         f"percentile {p99:.3g}; reflectance reaches several percent)")
    return None


def check_reflectance(values: np.ndarray, *, reader: str, file: object = None,
                      field: str | None = None, what: str = "Sentinel-2") -> None:
    """InputError when optical ``values`` look like DN or like reflectance scaled twice;
    the fix depends on the ``reader`` (generic, table, theia_FRE, openeo, ...)."""
    problem = reflectance_problem(values)
    if problem is None:
        return
    kind, text = problem
    fixes = next((f for prefix, f in FIXES.items() if reader.startswith(prefix)), {})
    raise InputError(f"{what} {text}", file=file, field=field,
                     fix=fixes.get(kind, DEFAULT_FIX[kind]))
