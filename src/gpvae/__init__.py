"""gpvae: Gaussian-process-prior VAEs for Sentinel-1/2 satellite image time series."""

from __future__ import annotations

import numpy as np

__version__ = "0.1.0"

#: Reference epoch of model time: times are float64 days since this date.
EPOCH = np.datetime64("2000-01-01T00:00:00", "ns")


def to_days(times: np.ndarray) -> np.ndarray:
    """Convert datetime64 values to float64 days since :data:`EPOCH`."""
    t = np.asarray(times).astype("datetime64[ns]")
    return (t - EPOCH).astype("timedelta64[ns]").astype(np.float64) / 86400e9
