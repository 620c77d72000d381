"""Write a small synthetic pixel dataset following docs/contracts.md section 2 exactly.

Independent of the package's own writer (uses xarray directly), so readers can be tested
against the contract rather than against the writer. Signals: a per-class yearly phenology
curve (double logistic) in S2 reflectance, S1 linear backscatter correlated with it,
random cloud/no-data gaps (NaN), and values outside the sample's year set to NaN.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

S2_BANDS = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
S1_BANDS = ["VV", "VH"]
CLASS_NAMES = ["wheat", "maize", "grassland"]

# Per-band reflectance of bare soil and of full vegetation (roughly realistic).
_SOIL = np.array([0.08, 0.11, 0.14, 0.17, 0.19, 0.20, 0.22, 0.23, 0.28, 0.22])
_VEG = np.array([0.03, 0.06, 0.03, 0.10, 0.30, 0.38, 0.42, 0.43, 0.22, 0.11])


def _dates(start: str, stop: str, step_days: int, offset_days: int = 0) -> np.ndarray:
    """Regular acquisition dates (datetime64[ns]) from start + offset to stop, every step."""
    t0 = np.datetime64(start, "D") + np.timedelta64(offset_days, "D")
    days = np.arange(0, (np.datetime64(stop, "D") - t0).astype(int), step_days)
    return (t0 + days.astype("timedelta64[D]")).astype("datetime64[ns]")


def _phenology(doy: np.ndarray, peak: np.ndarray, width: float = 35.0) -> np.ndarray:
    """Double-logistic vegetation fraction in [0, 1] around day-of-year `peak` (Beck 2006)."""
    rise = 1.0 / (1.0 + np.exp(-(doy - (peak - width)) / 8.0))
    fall = 1.0 / (1.0 + np.exp((doy - (peak + width)) / 8.0))
    return rise * fall


def write_pixels(path: str | Path, *, n_samples: int = 48, years: tuple[int, ...] = (2021,),
                 sensors: tuple[str, ...] = ("S2", "S1_ASC", "S1_DES"),
                 s2_step_days: int = 10, s1_step_days: int = 12, cloud_fraction: float = 0.3,
                 split_fractions: tuple[float, float, float] = (0.5, 0.25, 0.25),
                 with_truth: bool = True, seed: int = 0) -> Path:
    """Write `pixels.nc` per contract section 2 and return its path.

    Samples are grouped in parcels of 2 pixels; splits are assigned per parcel. Sample ``i``
    belongs to year ``years[i % len(years)]``; values outside that year are NaN.
    """
    rng = np.random.default_rng(seed)
    path = Path(path)
    start, stop = f"{min(years)}-01-01", f"{max(years) + 1}-01-01"
    sample_years = np.array([years[i % len(years)] for i in range(n_samples)], dtype=np.int16)
    labels = (np.arange(n_samples) // 2 % len(CLASS_NAMES)).astype(np.int16)
    parcel_id = (np.arange(n_samples) // 2 + 1000).astype(np.int64)
    n_parcels = int(parcel_id.max() - parcel_id.min() + 1)
    parcel_split = np.array(["train"] * n_parcels, dtype=object)
    cut_train = int(round(split_fractions[0] * n_parcels))
    cut_val = cut_train + int(round(split_fractions[1] * n_parcels))
    perm = rng.permutation(n_parcels)
    parcel_split[perm[cut_train:cut_val]] = "val"
    parcel_split[perm[cut_val:]] = "test"
    split = parcel_split[parcel_id - parcel_id.min()].astype(str)
    peak = np.array([150.0, 210.0, 120.0])[labels] + rng.normal(0.0, 8.0, n_samples)

    data_vars: dict[str, tuple] = {}
    coords: dict[str, tuple | np.ndarray] = {}
    for sensor in sensors:
        s2 = sensor == "S2"
        times = _dates(start, stop, s2_step_days if s2 else s1_step_days,
                       offset_days=0 if s2 else (0 if sensor == "S1_ASC" else 3))
        dt = times.astype("datetime64[D]")
        year_of_date = dt.astype("datetime64[Y]").astype(int) + 1970
        doy = (dt - dt.astype("datetime64[Y]")).astype(int).astype(np.float64) + 1.0
        veg = _phenology(doy[None, :], peak[:, None])  # (S, T)
        if s2:
            clean = _SOIL + veg[..., None] * (_VEG - _SOIL)  # (S, T, C)
            values = clean + rng.normal(0.0, 0.005, clean.shape)
        else:
            vv_db = -14.0 + 5.0 * veg + rng.normal(0.0, 0.6, veg.shape)
            vh_db = -21.0 + 7.0 * veg + rng.normal(0.0, 0.6, veg.shape)
            values = 10.0 ** (np.stack([vv_db, vh_db], axis=-1) / 10.0)
            clean = None
        out_of_year = year_of_date[None, :] != sample_years[:, None]
        gaps = rng.random(veg.shape) < (cloud_fraction if s2 else 0.05)
        values = np.where((out_of_year | gaps)[..., None], np.nan, values).astype(np.float32)
        bands = S2_BANDS if s2 else S1_BANDS
        dims = ("sample", f"time_{sensor}", f"band_{sensor}")
        data_vars[f"values_{sensor}"] = (dims, values)
        coords[f"time_{sensor}"] = times
        coords[f"band_{sensor}"] = np.array(bands, dtype=str)
        if s2 and with_truth:
            truth = np.where(out_of_year[..., None], np.nan, clean).astype(np.float32)
            data_vars["truth_S2"] = (dims, truth)

    rows = rng.integers(0, 100, n_samples).astype(np.int32)
    cols = rng.integers(0, 100, n_samples).astype(np.int32)
    coords.update({
        "x": ("sample", 300000.0 + 10.0 * cols + 5.0),
        "y": ("sample", 4800000.0 - 10.0 * rows - 5.0),
        "row": ("sample", rows),
        "col": ("sample", cols),
        "tile": ("sample", np.array(["T31TCJ"] * n_samples, dtype=str)),
        "parcel_id": ("sample", parcel_id),
        "label": ("sample", labels),
        "split": ("sample", split),
        "region": ("sample", np.array(["T31TCJ"] * n_samples, dtype=str)),
        "year": ("sample", sample_years),
    })
    data_vars["class_name"] = (("class",), np.array(CLASS_NAMES, dtype=str))
    ds = xr.Dataset(data_vars, coords=coords, attrs={
        "sensors": " ".join(sensors), "epoch": "2000-01-01T00:00:00", "seed": seed,
        "source": "tests/fixtures_pixels.py (synthetic)", "gpvae_version": "test",
    })
    chunk = min(16, n_samples)
    encoding = {}
    for name, var in ds.data_vars.items():
        if "sample" in var.dims:
            encoding[name] = {"zlib": True, "complevel": 4,
                              "chunksizes": (chunk,) + var.shape[1:]}
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path, engine="netcdf4", encoding=encoding)
    return path
