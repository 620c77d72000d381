"""Tile products (docs/contracts.md section 7): compact CF encodings, layout and provenance.

A tile product is a CF-1.8 netCDF with a real ``time`` coordinate (the reference dates as
dates) and packed integers: what each variable holds, how it is packed and what a reader gets
back (xarray / GDAL / QGIS apply ``scale_factor`` and ``add_offset``) is declared here once,
for the block files and the mosaic alike.

| variable | dims | stored | unpacked |
|---|---|---|---|
| ``embedding`` | time, latent, y, x | int16, scale 1e-3 | latent posterior mean (+-32.767) |
| ``embedding_var`` | time, latent, y, x | uint16, scale 2e-4 | posterior variance (0-13.1) |
| ``gapfilled`` | time, band, y, x | int16, the sensor's scale | predictive mean, physical |
| ``gapfilled_std`` | time, band, y, x | uint16, the same scale | predictive std |
| ``class_map`` | y, x | int16, -1 = no data | class index (``flag_values``) |
| ``valid`` | y, x | uint8 | 0 = no observation |

Packed values are ``round((value - add_offset) / scale_factor)``, clipped to the type's range
(the clipped count is logged); NaN is the ``_FillValue`` (the type's minimum for int16, its
maximum for uint16). A round trip is exact to half a quantisation step.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gpvae.errors import InputError
from gpvae.io.sensors import Sensor

#: Every product variable a tile product may hold, in file order (``valid`` always).
PRODUCTS = ("embedding", "embedding_var", "gapfilled", "gapfilled_std", "class_map")
#: Products that need the gap-filled sensor's decoded predictions.
GAPFILL_PRODUCTS = ("gapfilled", "gapfilled_std")
#: GeoTIFFs a product can come with (Cloud-Optimized, beside the netCDF), and the default.
GEOTIFFS = ("class_map", "embedding_rgb", "rgb", "embedding", "gapfilled")
DEFAULT_GEOTIFFS = ("class_map", "embedding_rgb", "rgb")
#: Distinct class colours (matplotlib's tab10, then tab20 for more than ten classes).
TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
         "#7f7f7f", "#bcbd22", "#17becf")
TAB20 = ("#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728",
         "#ff9896", "#9467bd", "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2",
         "#7f7f7f", "#c7c7c7", "#bcbd22", "#dbdb8d", "#17becf", "#9edae5")


def class_colours(n: int) -> list[str]:
    """``n`` distinct class colours as hex strings (tab10, tab20 beyond ten classes)."""
    table = TAB10 if n <= 10 else TAB20
    return [table[i % len(table)] for i in range(n)]


@dataclasses.dataclass(frozen=True)
class Packing:
    """How one variable is stored: integer ``dtype``, ``scale_factor``, ``add_offset``; or
    ``float32`` as it is (values without a known range)."""

    dtype: str
    scale: float = 1.0
    offset: float = 0.0

    @property
    def packed(self) -> bool:
        """False for float32 storage (no scale, NaN stays NaN)."""
        return np.dtype(self.dtype).kind in "iu"

    @property
    def fill(self) -> int | float:
        """The ``_FillValue`` (NaN): the minimum of a signed type, the maximum of unsigned."""
        if not self.packed:
            return float("nan")
        info = np.iinfo(self.dtype)
        return int(info.min if info.min < 0 else info.max)

    @property
    def limits(self) -> tuple[int, int]:
        """Smallest and largest packed value that is not the fill value."""
        info = np.iinfo(self.dtype)
        return (int(info.min) + 1, int(info.max)) if info.min < 0 else (0, int(info.max) - 1)

    def pack(self, values: np.ndarray) -> tuple[np.ndarray, int]:
        """Packed integers of ``values`` (NaN -> fill) and the number of clipped values."""
        if not self.packed:
            return np.asarray(values, dtype=np.float32), 0
        v = (np.asarray(values, dtype=np.float64) - self.offset) / self.scale
        finite = np.isfinite(v)
        lo, hi = self.limits
        clipped = int(np.count_nonzero(finite & ((v < lo - 0.5) | (v > hi + 0.5))))
        out = np.where(finite, np.clip(np.rint(np.where(finite, v, 0.0)), lo, hi), self.fill)
        return out.astype(self.dtype), clipped

    def unpack(self, packed: np.ndarray) -> np.ndarray:
        """Physical float32 values of packed integers (fill -> NaN)."""
        packed = np.asarray(packed)
        if not self.packed:
            return packed.astype(np.float32)
        out = packed.astype(np.float64) * self.scale + self.offset
        return np.where(packed == self.fill, np.nan, out).astype(np.float32)

    def attrs(self) -> dict:
        """CF attributes ``scale_factor`` and ``add_offset`` (float32: readers unpack to
        float32); ``_FillValue`` is :attr:`fill`, set when the variable is created."""
        if not self.packed:
            return {}
        return {"scale_factor": np.float32(self.scale), "add_offset": np.float32(self.offset)}


#: Packing of the latent moments (model units, whatever the sensor).
EMBEDDING_PACKING = Packing("int16", 1e-3)
EMBEDDING_VAR_PACKING = Packing("uint16", 2e-4)


def _nice_step(x: float) -> float:
    """The smallest of 1, 2, 5 x 10^k that is >= x."""
    k = math.floor(math.log10(x))
    for m in (1, 2, 5, 10):
        if m * 10.0**k >= x * (1 - 1e-12):
            return float(f"{m * 10.0**k:.1e}")
    return float(10.0 ** (k + 1))


def sensor_packing(sensor: Sensor, bands: Sequence[str]) -> Packing:
    """int16 packing of a gap-filled sensor's physical values: the finest 1/2/5 x 10^k step
    whose range holds every band's plausible range (registry ``range``; Sentinel-2's [-1, 3]
    gets 1e-4, the products' own quantisation). Bands with an open range (SAR backscatter)
    are stored as float32."""
    ranges = [sensor.band(b).range for b in bands]
    if not ranges or any(None in r for r in ranges):
        return Packing("float32")
    return Packing("int16", _nice_step(max(abs(v) for r in ranges for v in r) / 32000.0))


def std_packing(values: Packing) -> Packing:
    """uint16 packing of a predictive std, with the step of its mean's packing."""
    return Packing("uint16", values.scale) if values.packed else values


def class_attrs(class_names: Sequence[str]) -> dict:
    """CF flag attributes of a class map (index = class) and the names as JSON."""
    names = [str(n) for n in class_names]
    return {"flag_values": np.arange(len(names), dtype=np.int16),
            "flag_meanings": " ".join(n.replace(" ", "_") for n in names),
            "class_names": json.dumps(names)}


def check_products(products: Sequence[str] | None, geotiffs: Sequence[str] | None = None
                   ) -> tuple[list[str], list[str]]:
    """Products (default all) and GeoTIFFs (default class map, embedding RGB, RGB) to write,
    in canonical order; an unknown name is an InputError."""
    products = list(PRODUCTS if products is None else products)
    geotiffs = list(DEFAULT_GEOTIFFS if geotiffs is None else geotiffs)
    for names, known, field in ((products, PRODUCTS, "predict.products"),
                                (geotiffs, GEOTIFFS, "predict.geotiffs")):
        bad = [n for n in names if n not in known]
        if bad:
            raise InputError(f"unknown {field.split('.')[1]} {bad}", field=field,
                             fix=f"choose among {', '.join(known)}")
    need = {"class_map": "class_map", "embedding_rgb": "embedding", "embedding": "embedding",
            "rgb": "gapfilled", "gapfilled": "gapfilled"}
    missing = sorted({need[g] for g in geotiffs} - set(products))
    if missing:
        raise InputError(f"GeoTIFFs {geotiffs} need the products {missing}",
                         field="predict.products", fix=f"add {missing} to predict.products or "
                         "drop those GeoTIFFs from predict.geotiffs")
    return [p for p in PRODUCTS if p in products], [g for g in GEOTIFFS if g in geotiffs]


def date_indices(ref_days: np.ndarray, dates: Sequence[float] | None) -> np.ndarray:
    """Indices of the reference dates a product writes: all (``dates`` None), else the
    reference date nearest each of ``dates`` (days since the span start), once each."""
    ref_days = np.asarray(ref_days, dtype=np.float64)
    if dates is None:
        return np.arange(ref_days.size)
    if len(dates) == 0:
        raise InputError("predict.dates is empty", field="predict.dates",
                         fix="give days since the span start, e.g. [90, 180, 270], or null")
    return np.unique([int(np.abs(ref_days - float(d)).argmin()) for d in dates])


def mid_index(ref_days: np.ndarray) -> int:
    """Index of the date nearest the middle of the range of ``ref_days`` (mid-season): the
    date of the RGB and embedding-RGB GeoTIFFs."""
    ref_days = np.asarray(ref_days, dtype=np.float64)
    return int(np.abs(ref_days - 0.5 * (ref_days.min() + ref_days.max())).argmin())


def cost_path(out_nc: Path) -> Path:
    """``<stem>_cost.json`` beside a tile product (or a block of one)."""
    out_nc = Path(out_nc)
    return out_nc.with_name(f"{out_nc.stem}_cost.json")
