"""Mask stage: cube valid AND NOT cloud (quality layer, optionally dilated) -> mask + CSV.

Fractions in the CSV are of all pixels of the date and sum to 1:
``nodata_fraction`` = not cube-valid, ``cloud_fraction`` = cube-valid but (dilated) cloud,
``valid_fraction`` = the final mask.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from tqdm.auto import tqdm

from gpvae.errors import InputError
from gpvae.io.atomic import atomic_path
from gpvae.io.cube import open_cube
from gpvae.io.maskfile import mask_writer
from gpvae.preprocess.quality import DEFAULT_SCL_INVALID, cube_quality_kind, quality_invalid

log = logging.getLogger(__name__)


def clm_cloud(clm: np.ndarray, bits: list[int]) -> np.ndarray:
    """Cloud flag from a Theia CLM byte: any of the selected bits set, (clm & sum 2^b) != 0."""
    return quality_invalid(clm, "theia_clm", clm_bits=bits)


def disk(radius: int) -> np.ndarray:
    """Euclidean disk structuring element {(i, j): i^2 + j^2 <= r^2}."""
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= radius**2


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of a 2-D mask by a disk of ``radius`` pixels (identity for 0)."""
    if radius <= 0:
        return np.asarray(mask, bool)
    return ndimage.binary_dilation(mask, structure=disk(radius))


def compute_mask(cube_path: Path, out_nc: Path, out_csv: Path, *, clm_bits: list[int] = [0],  # noqa: B006
                 dilation_px: int = 0,
                 scl_classes: tuple[int, ...] = DEFAULT_SCL_INVALID) -> Path:
    """Write the final usable mask of a cube and its per-date cloud-cover CSV.

    Cube with ``quality``: valid = cube valid AND NOT dilate(invalid(quality), ``dilation_px``)
    where invalid follows the cube's ``quality_kind`` (Theia CLM: any bit of ``clm_bits``;
    Sen2Cor SCL: class in ``scl_classes``; generic: the cube's own rule). Without ``quality``
    (S1): valid = cube valid.
    """
    bad_bits = [b for b in clm_bits if not 0 <= int(b) <= 7]
    if bad_bits:
        raise InputError(f"CLM bits {bad_bits} out of range", field="clm_bits",
                         fix="use bit numbers 0-7 (0: all clouds and shadows)")
    if int(dilation_px) < 0:
        raise InputError(f"dilation_px {dilation_px} < 0", field="dilation_px",
                         fix="use 0 (no dilation) or a positive number of pixels")
    cube = open_cube(cube_path)
    kind, rule = cube_quality_kind(cube)
    what = {"theia_clm": f"CLM bits {sorted(set(map(int, clm_bits)))}",
            "scl": f"SCL classes {sorted(set(map(int, scl_classes)))}",
            "bits": f"quality bits {rule}", "classes": f"quality classes {rule}",
            "boolean": "quality flag"}.get(kind or "", "")
    policy = (f"cube valid AND NOT ({what}{f' dilated by {dilation_px} px' if dilation_px else ''})"
              if kind else "cube valid (no cloud mask for this sensor)")
    sensor, tile = cube.attrs["sensor"], cube.attrs["tile"]
    rows = []
    attrs = {"mask_policy": policy, "dilation_px": int(dilation_px),
             "clm_bits": " ".join(str(int(b)) for b in clm_bits),
             "scl_classes": " ".join(str(int(c)) for c in scl_classes)}
    with atomic_path(out_csv) as tmp_csv:
        with mask_writer(out_nc, cube, attrs=attrs) as out:
            for t in tqdm(range(cube.sizes["time"]), desc=f"mask {sensor} {tile}",
                          unit="date"):
                valid = cube["valid"][t].values.astype(bool)
                cloud = np.zeros_like(valid)
                if kind:
                    bad = quality_invalid(cube["quality"][t].values, kind, clm_bits=clm_bits,
                                          scl_classes=scl_classes, rule=rule)
                    cloud = dilate(bad, int(dilation_px)) & valid
                final = valid & ~cloud
                out[t] = final.astype(np.uint8)
                rows.append({"date": str(np.datetime64(cube["time"].values[t], "D")),
                             "tile": tile, "sensor": sensor,
                             "valid_fraction": float(final.mean()),
                             "cloud_fraction": float(cloud.mean()),
                             "nodata_fraction": float(1 - valid.mean())})
            # Written before the mask file is renamed: a failure here leaves neither output.
            pd.DataFrame(rows, columns=["date", "tile", "sensor", "valid_fraction",
                                        "cloud_fraction", "nodata_fraction"]
                         ).to_csv(tmp_csv, index=False, float_format="%.6f")
    cube.close()
    log.info("%s %s: mask policy %s; mean valid fraction %.3f", tile, sensor, policy,
             np.mean([r["valid_fraction"] for r in rows]) if rows else float("nan"))
    return Path(out_nc)
