"""The mask file (docs/contracts.md section 1b): writer and validating opener."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import xarray as xr

from gpvae.errors import InputError
from gpvae.io.failures import reading
from gpvae.io.ncstream import VarSpec, stream_netcdf

#: Cube attributes the mask file carries over.
CARRIED_ATTRS = ("sensor", "tile", "crs", "transform", "gpvae_version", "Conventions")


@contextlib.contextmanager
def mask_writer(path: Path, cube: xr.Dataset, *, attrs: dict) -> Iterator[object]:
    """Open a mask file with the cube's coords for date-by-date writing of ``valid``."""
    skeleton = xr.Dataset({"spatial_ref": cube["spatial_ref"]} if "spatial_ref" in cube
                          else {}, coords={k: v for k, v in cube.coords.items()
                                           if set(v.dims) <= {"time", "y", "x"}})
    skeleton.attrs = {k: cube.attrs[k] for k in CARRIED_ATTRS if k in cube.attrs} | attrs
    h, w = cube.sizes["y"], cube.sizes["x"]
    spec = VarSpec(("time", "y", "x"), "uint8", (1, min(h, 256), min(w, 256)),
                   {"grid_mapping": "spatial_ref",
                    "long_name": "1 = observed and usable (cube valid and not cloud)"})
    with stream_netcdf(path, skeleton, {"valid": spec}) as variables:
        # Writes fill whole chunks (whole dates): bypass the chunk cache (bounded memory).
        variables["valid"].set_var_chunk_cache(size=1)
        yield variables["valid"]


def open_mask(path: Path, cube: xr.Dataset | None = None) -> xr.Dataset:
    """Open a mask file lazily; check its layout (and its time/y/x against ``cube``)."""
    path = Path(path)
    fix = "rerun the mask stage for this tile and sensor"
    if not path.is_file():
        raise InputError("mask file not found", file=path, fix=fix)
    with reading(path, what="netCDF mask file", fix=fix):
        ds = xr.open_dataset(path, engine="netcdf4")
    if "valid" not in ds or ds["valid"].dims != ("time", "y", "x"):
        raise InputError("mask file has no valid(time, y, x) variable", file=path,
                         field="valid", fix=fix)
    if cube is not None:
        for dim in ("time", "y", "x"):
            if ds.sizes[dim] != cube.sizes[dim] or not np.array_equal(ds[dim].values,
                                                                      cube[dim].values):
                raise InputError(f"mask {dim} axis differs from its cube's", file=path,
                                 field=dim, fix=fix + " (the cube changed since)")
    return ds
