"""Mask stage: cube valid AND NOT cloud (quality layer, optionally dilated) -> mask + CSV.

Processed in spatial blocks (gpvae.io.window.spatial_blocks, grown by the dilation radius)
times blocks of dates: memory is bounded by one block, whatever the tile's size.

Fractions in the CSV are of all pixels of the date and sum to 1:
``nodata_fraction`` = not cube-valid, ``cloud_fraction`` = cube-valid but (dilated) cloud,
``valid_fraction`` = the final mask.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from rasterio.windows import Window
from scipy import ndimage
from tqdm.auto import tqdm

from gpvae.errors import InputError
from gpvae.io.atomic import atomic_path
from gpvae.io.cube import no_chunk_cache, open_cube
from gpvae.io.maskfile import mask_writer
from gpvae.io.quality import DEFAULT_SCL_INVALID, cube_quality_kind, quality_invalid
from gpvae.io.window import spatial_blocks

log = logging.getLogger(__name__)
#: Memory budget of one block of dates in the mask stage (bytes; see dates_per_block).
MASK_BLOCK_BYTES = 16 * 2**20


def clm_cloud(clm: np.ndarray, bits: list[int]) -> np.ndarray:
    """Cloud flag from a Theia CLM byte: any of the selected bits set, (clm & sum 2^b) != 0."""
    return quality_invalid(clm, "theia_clm", clm_bits=bits)


def disk(radius: int) -> np.ndarray:
    """Euclidean disk structuring element {(i, j): i^2 + j^2 <= r^2}."""
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= radius**2


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a disk of ``radius`` pixels (identity for 0) of a 2-D mask, or of
    each 2-D slice (last two axes) of a stack of masks."""
    if radius <= 0:
        return np.asarray(mask, bool)
    mask = np.asarray(mask)
    structure = disk(radius)
    return ndimage.binary_dilation(mask, structure=structure.reshape(
        (1,) * (mask.ndim - 2) + structure.shape))


def block_slices(block: Window) -> tuple[slice, slice]:
    """(rows, cols) slices of a window."""
    r0, c0 = int(block.row_off), int(block.col_off)
    return slice(r0, r0 + int(block.height)), slice(c0, c0 + int(block.width))


def halo_windows(block: Window, halo: int, height: int, width: int
                 ) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """The block grown by ``halo`` pixels (clipped to the grid), as (rows, cols) slices of
    the grid (``padded``), and where the block lies inside it (``core``): a dilation of the
    padded block equals, on the core, the dilation of the whole grid."""
    rows, cols = block_slices(block)
    padded = (slice(max(0, rows.start - halo), min(height, rows.stop + halo)),
              slice(max(0, cols.start - halo), min(width, cols.stop + halo)))
    core = (slice(rows.start - padded[0].start, rows.stop - padded[0].start),
            slice(cols.start - padded[1].start, cols.stop - padded[1].start))
    return core, padded


def dates_per_block(height: int, width: int, budget: int = MASK_BLOCK_BYTES) -> int:
    """Dates read and masked together: as many as fit in ``budget`` bytes at 8 bytes a
    pixel (the int64 copy of the quality byte), at least one."""
    return max(1, int(budget) // (8 * int(height) * int(width)))


def check_some_valid(rows: list[dict], cube_path: Path, policy: str) -> None:
    """InputError when the mask leaves no observation at all (every date of the cube)."""
    if not rows or any(r["valid_fraction"] > 0 for r in rows):
        return
    cloud = np.mean([r["cloud_fraction"] for r in rows])
    nodata = np.mean([r["nodata_fraction"] for r in rows])
    raise InputError(
        f"the mask leaves no usable observation on any of the {len(rows)} dates (cloud "
        f"{cloud:.0%}, no-data {nodata:.0%}; policy: {policy})", file=cube_path,
        field="mask", fix="check mask.clm_bits / mask.scl_classes / the input's mask rule "
        "(kind, invalid codes, invalid_if), and that the AOI and dates hold clear scenes")


@no_chunk_cache()
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
    nt, h, w = cube.sizes["time"], cube.sizes["y"], cube.sizes["x"]
    halo = int(dilation_px) if kind else 0
    counts = np.zeros((3, nt), np.int64)  # final, cloud, nodata pixels per date
    days = cube["time"].values.astype("datetime64[D]").astype(str)
    blocks = spatial_blocks(h, w)
    with atomic_path(out_csv) as tmp_csv:
        with mask_writer(out_nc, cube, attrs=attrs) as out, \
                tqdm(total=len(blocks), desc=f"mask {sensor} {tile}", unit="block") as bar:
            for block in blocks:  # spatial blocks (+ a dilation halo) x blocks of dates
                core, padded = halo_windows(block, halo, h, w)
                step = dates_per_block(padded[0].stop - padded[0].start,
                                       padded[1].stop - padded[1].start)
                for t0 in range(0, nt, step):
                    dates = slice(t0, min(nt, t0 + step))
                    valid = cube["valid"][dates, padded[0], padded[1]].values.astype(bool)
                    cloud = np.zeros_like(valid)
                    if kind:
                        bad = quality_invalid(cube["quality"][dates, padded[0], padded[1]].values,
                                              kind, clm_bits=clm_bits, scl_classes=scl_classes,
                                              rule=rule)
                        cloud = dilate(bad, halo) & valid
                    valid, cloud = valid[:, core[0], core[1]], cloud[:, core[0], core[1]]
                    final = valid & ~cloud
                    out[(dates, *block_slices(block))] = final.astype(np.uint8)
                    counts[:, dates] += np.stack([final.sum(axis=(1, 2)),
                                                  cloud.sum(axis=(1, 2)),
                                                  (~valid).sum(axis=(1, 2))])
                bar.update(1)
            fractions = counts / float(h * w)
            for t, day in enumerate(days):
                rows.append({"date": str(day), "tile": tile, "sensor": sensor,
                             "valid_fraction": float(fractions[0, t]),
                             "cloud_fraction": float(fractions[1, t]),
                             "nodata_fraction": float(fractions[2, t])})
            check_some_valid(rows, cube_path, policy)
            # Written before the mask file is renamed: a failure here leaves neither output.
            pd.DataFrame(rows, columns=["date", "tile", "sensor", "valid_fraction",
                                        "cloud_fraction", "nodata_fraction"]
                         ).to_csv(tmp_csv, index=False, float_format="%.6f")
    cube.close()
    log.info("%s %s: mask policy %s; mean valid fraction %.3f", tile, sensor, policy,
             np.mean([r["valid_fraction"] for r in rows]) if rows else float("nan"))
    return Path(out_nc)
