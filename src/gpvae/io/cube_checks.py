"""Checks on the dates a reader writes into a cube (gpvae.io.cube.cube_writer).

- optical sensors: the first dates with enough valid pixels must look like surface
  reflectance (gpvae.io.radiometry), so a DN cube or a twice-scaled product stops at
  extract with the fix, not as reflectances of ~1000 in training;
- every sensor: some pixel of some date is valid. An all-no-data cube (a wrong nodata
  value, mask rule or AOI) stops at extract instead of being written all-NaN.
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from gpvae.errors import InputError
from gpvae.io.radiometry import MIN_VALUES, REFLECTANCE, check_reflectance

#: Dates (with at least MIN_VALUES valid values) checked for radiometry; later ones are not.
RADIOMETRY_DATES = 3


class CubeChecks:
    """Per-date checks of one cube being written; :meth:`finish` after the last date."""

    def __init__(self, skeleton: xr.Dataset, out: object) -> None:
        attrs = skeleton.attrs
        self.sensor, self.tile = attrs["sensor"], attrs["tile"]
        self.reader = str(attrs.get("reader", ""))
        self.optical = attrs["radiometry"] == REFLECTANCE
        self.times = skeleton["time"].values
        self.sources = json.loads(attrs.get("source_files", "[]"))
        self.out = out
        self.n_valid = 0
        self.checked = 0

    def source(self, t: int) -> object:
        """The input file of date ``t`` (one per date), else the only input, else the cube."""
        if len(self.sources) == len(self.times):
            return self.sources[t]
        return self.sources[0] if len(self.sources) == 1 else self.out

    def date(self, t: int, data: np.ndarray, valid: np.ndarray) -> None:
        """Check date ``t`` (data (band, y, x), valid (y, x)), or one spatial block of it,
        before it is written."""
        valid = np.asarray(valid, bool)
        n = int(valid.sum())
        self.n_valid += n
        if self.optical and self.checked < RADIOMETRY_DATES and n * data.shape[0] >= MIN_VALUES:
            self.checked += 1
            day = str(np.datetime64(self.times[t], "D"))
            check_reflectance(np.asarray(data)[:, valid], reader=self.reader,
                              file=self.source(t), field=f"{self.sensor} bands ({day})",
                              what=f"{self.sensor} ({self.reader} reader)")

    def finish(self) -> None:
        """After the last date: some pixel must be valid."""
        if self.n_valid == 0:
            raise InputError(
                f"no valid {self.sensor} pixel in any of the {len(self.times)} dates of tile "
                f"{self.tile}: the cube would be all no-data", file=self.source(0),
                field="valid", fix="check the input's no-data value and mask rule, and that "
                "the AOI and date range cover data (inputs, extract.aoi/start/end)")
