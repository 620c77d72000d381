"""Sample stage: cubes + masks + parcels -> pixel dataset (docs/contracts.md section 2).

Per tile, parcels are rasterised on the tile grid and eroded by ``erosion_px`` pixels;
per class at most ``per_class`` interior pixels are drawn with at most ``per_parcel_cap``
per parcel (seeded). Parcels are split train/val/test (stratified by class, grouped by
parcel). Each pixel gives one sample per span (gpvae.data.span: a calendar year by default, a
season, or the whole range): values from the cube where the mask is valid, NaN elsewhere and
outside the span. Samples with no valid observation in any sensor during their span are
dropped (the count is logged). A coarse sensor (a cube on a coarser grid of the tile's CRS:
Landsat 30 m, MODIS 250 m) gives each pixel the series of the cell holding it, and the
sample the cell's id (``cell_<sensor>``, gpvae.io.coarse).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage
from tqdm.auto import tqdm

from gpvae.data.span import Span, check_dates_per_span, label_year
from gpvae.errors import InputError
from gpvae.io.coarse import cell_ids, cells_of, is_coarser, pixel_size, same_grid
from gpvae.io.cube import cube_grid, cube_sensor, no_chunk_cache, open_cube
from gpvae.io.maskfile import open_mask
from gpvae.io.parcels import rasterize_parcels, read_parcels
from gpvae.io.pixels import write_pixels
from gpvae.io.sensors import SensorRegistry, builtin_sensors
from gpvae.preprocess.split import split_parcels
from gpvae.preprocess.split_check import check_coverage

log = logging.getLogger(__name__)
#: Memory budget of one block of dates read from a cube by the sample stage (bytes).
SAMPLE_BLOCK_BYTES = 16 * 2**20


def interior(ids: np.ndarray, erosion_px: int) -> np.ndarray:
    """Pixels whose (2e+1)^2 neighbourhood lies in one parcel (image edges are no border)."""
    inside = ids > 0
    if erosion_px <= 0:
        return inside
    size = 2 * int(erosion_px) + 1
    lo = ndimage.minimum_filter(ids, size=size, mode="nearest")
    hi = ndimage.maximum_filter(ids, size=size, mode="nearest")
    return inside & (lo == hi)


def draw_pixels(candidates: pd.DataFrame, *, per_class: int, per_parcel_cap: int,
                rng: np.random.Generator) -> pd.DataFrame:
    """Per class, a random subset of at most ``per_class`` rows, <= ``per_parcel_cap`` each
    parcel: shuffle, keep the first ``cap`` rows of each parcel, then the first ``per_class``."""
    shuffled = candidates.iloc[rng.permutation(len(candidates))]
    capped = shuffled[shuffled.groupby("parcel_id").cumcount() < per_parcel_cap]
    drawn = capped.groupby("label", sort=True).head(per_class)
    return drawn.sort_values(["tile", "row", "col"]).reset_index(drop=True)


def gather(var: xr.DataArray, t: int | slice, rows: np.ndarray, cols: np.ndarray,
           block: int = 256) -> np.ndarray:
    """``var[t, ..., rows, cols]`` -> (..., npix), reading row blocks (lazy-file friendly);
    ``t`` a slice of dates keeps the time axis first."""
    out = None
    for r0 in np.unique(rows // block) * block:
        sel = np.flatnonzero((rows >= r0) & (rows < r0 + block))
        c0, c1 = cols[sel].min(), cols[sel].max() + 1
        r1 = rows[sel].max() + 1
        chunk = var[t, ..., r0:r1, c0:c1].values
        vals = chunk[..., rows[sel] - r0, cols[sel] - c0]
        if out is None:
            out = np.empty(vals.shape[:-1] + (len(rows),), vals.dtype)
        out[..., sel] = vals
    return out


def pixel_series(cube: xr.Dataset, mask: xr.DataArray | None, rows: np.ndarray,
                 cols: np.ndarray, desc: str) -> np.ndarray:
    """Time series (npix, time, band) of the cube at pixels, NaN where ``mask`` is 0
    (``mask`` None: every value is kept)."""
    nt, nb = cube.sizes["time"], cube.sizes["band"]
    out = np.full((len(rows), nt, nb), np.nan, np.float32)
    if len(rows) == 0:
        return out
    # Blocks of dates (one read per block, bounded memory), not one read per date.
    window = nb * min(cube.sizes["y"], 256) * cube.sizes["x"] * cube["data"].dtype.itemsize
    step = max(1, SAMPLE_BLOCK_BYTES // window)
    with tqdm(total=nt, desc=desc, unit="date", leave=False) as bar:
        for t0 in range(0, nt, step):
            dates = slice(t0, min(nt, t0 + step))
            vals = gather(cube["data"], dates, rows, cols).transpose(2, 0, 1)  # (npix, t, b)
            if mask is None:
                out[:, dates] = vals
            else:
                ok = gather(mask, dates, rows, cols).astype(bool).T             # (npix, t)
                np.copyto(out[:, dates], vals, where=ok[..., None])
            bar.update(dates.stop - dates.start)
    return out


def _check_int(name: str, value: int, minimum: int) -> None:
    if int(value) < minimum:
        raise InputError(f"{name} = {value} < {minimum}", field=name,
                         fix=f"set {name} to an integer >= {minimum}")


def _tile_cubes(tile: str, spec: dict, opened: list[xr.Dataset]) -> tuple[dict, dict, tuple]:
    """Open a tile's cubes and masks (appended to ``opened``, for the caller to close); all on
    one grid (else InputError naming both cubes)."""
    cubes, masks = {}, {}
    for s, p in spec["cubes"].items():
        cubes[s] = open_cube(p)
        opened.append(cubes[s])
    if not cubes:
        raise InputError(f"tile {tile} has no cube", field="cubes",
                         fix="list at least one sensor cube for the tile")
    first = fine_sensor(cubes)
    grid = cube_grid(cubes[first])
    for s, ds in cubes.items():
        g = cube_grid(ds)  # the tile's grid, or a coarse sensor's (Landsat, MODIS)
        if not (same_grid(g, grid) or is_coarser(grid, g)):
            raise InputError(f"cubes {spec['cubes'][first]} and {spec['cubes'][s]} of "
                             f"tile {tile} are on different grids", file=spec["cubes"][s],
                             field="grid", fix="extract all sensors of a tile with one AOI "
                             "(coarse sensors: on the tile's CRS, e.g. format landsat)")
    for s, ds in cubes.items():
        path = (spec.get("masks") or {}).get(s)
        if path is None:
            log.warning("%s %s: no mask file given, using the cube's valid", tile, s)
            masks[s] = ds["valid"]
        else:
            opened.append(open_mask(path, ds))
            masks[s] = opened[-1]["valid"]
    return cubes, masks, grid


@no_chunk_cache()
def sample_pixels(inputs: dict[str, dict], out: Path, *, class_field: str, id_field: str,
                  per_class: int, per_parcel_cap: int, erosion_px: int,
                  split_fractions: dict[str, float], seed: int, years: list[int] | None = None,
                  classes: list[str] | None = None, span: Span | dict | None = None) -> Path:
    """Draw labelled pixels from every tile and write the pixel dataset.

    ``inputs``: tile -> {"cubes": {sensor: path}, "masks": {sensor: path}, "parcels": gpkg,
    "truth": truth cube or None, "region": str}. ``classes`` fixes the label order (parcels
    of other classes are not sampled); None = sorted unique classes found. ``span`` (a
    :class:`~gpvae.data.span.Span` or the config's ``sample`` section; default calendar years):
    what one sample covers; the spans are those of the optical / index cubes' dates (of all
    cubes when there is none, and always for ``all``). ``years`` None = every span; else the
    spans whose year (gpvae.data.span.label_year) is listed.
    """
    span = span if isinstance(span, Span) else Span.from_config(span)
    _check_int("per_class", per_class, 1)
    _check_int("per_parcel_cap", per_parcel_cap, 1)
    _check_int("erosion_px", erosion_px, 0)
    if not inputs:
        raise InputError("no tile to sample", field="inputs", fix="configure at least one tile")
    split_seq, draw_seq = np.random.SeedSequence(seed).spawn(2)
    tiles = {}
    opened: list[xr.Dataset] = []
    try:  # close every cube and mask explicitly (netCDF-C is unsafe with GC closes)
        frames = []
        for tile, spec in sorted(inputs.items()):
            cubes, masks, (crs, transform, h, w) = _tile_cubes(tile, spec, opened)
            tiles[tile] = (cubes, masks, spec)
            bounds = (transform.c, transform.f + h * transform.e, transform.c + w * transform.a,
                      transform.f)
            parcels = read_parcels(spec["parcels"], id_field=id_field, class_field=class_field,
                                   crs=crs, bounds=bounds)
            ids = rasterize_parcels(parcels, transform, h, w)
            rows, cols = np.nonzero(interior(ids, erosion_px))
            idx = ids[rows, cols] - 1
            frames.append(pd.DataFrame({"tile": tile, "row": rows.astype(np.int32),
                                        "col": cols.astype(np.int32),
                                        "parcel_id": parcels["parcel_id"].to_numpy()[idx],
                                        "class": parcels["class"].to_numpy()[idx]}))
            log.info("%s: %d parcels, %d interior pixels (erosion %d px)", tile, len(parcels),
                     len(rows), erosion_px)
        cand = pd.concat(frames, ignore_index=True)
        class_names = sorted(cand["class"].unique()) if classes is None else [str(c) for c in
                                                                              classes]
        parcel_files = ", ".join(str(s["parcels"]) for s in inputs.values())
        absent = sorted(set(class_names) - set(cand["class"]))
        if classes is not None and absent:
            raise InputError(f"sample.classes lists classes with no parcel interior pixel: "
                             f"{absent[:10]} (classes there: {sorted(set(cand['class']))[:20]})",
                             file=parcel_files, field="sample.classes",
                             fix=f"correct the spelling (class field {class_field!r}), remove "
                                 "them, or lower erosion_px if their parcels are small")
        other = ~cand["class"].isin(class_names)
        if other.any():
            log.info("%d interior pixels of classes outside %s not sampled", other.sum(),
                     class_names)
        cand = cand[~other]
        if cand.empty:
            raise InputError("no parcel interior pixel to sample", field="classes/erosion_px",
                             fix="check the class names, lower erosion_px or use larger parcels")
        cand["label"] = pd.Categorical(cand["class"], categories=class_names).codes.astype(np.int16)
        parcel_class = cand.drop_duplicates("parcel_id")
        split_of = split_parcels(parcel_class["parcel_id"].to_numpy(),
                                 parcel_class["label"].to_numpy(), split_fractions, split_seq)
        picked = draw_pixels(cand, per_class=per_class, per_parcel_cap=per_parcel_cap,
                             rng=np.random.default_rng(draw_seq))
        log.info("drew %d pixels: %s", len(picked),
                 picked.groupby("class").size().to_dict())
        check_coverage(class_names, picked["label"].to_numpy(),
                       picked["parcel_id"].map(split_of).to_numpy(), split_fractions,
                       file=parcel_files)
        return _write_samples(out, tiles, picked, split_of, class_names, years, span, attrs={
            "seed": int(seed), "class_field": class_field, "id_field": id_field,
            "per_class": int(per_class), "per_parcel_cap": int(per_parcel_cap),
            "erosion_px": int(erosion_px), "split_fractions": json.dumps(split_fractions),
            "inputs": json.dumps(inputs, default=str), "span": span.to_attr()})
    finally:
        for ds in opened:
            ds.close()


def fine_sensor(cubes: dict[str, xr.Dataset]) -> str:
    """The sensor whose grid is the tile's (pixels are sampled on it): S2, else the cube
    with the smallest pixel (first in order on ties)."""
    if "S2" in cubes:
        return "S2"
    return min(cubes, key=lambda s: pixel_size(cube_grid(cubes[s])[1]))


def _definitions(tiles: dict) -> SensorRegistry:
    """The sensors of the tiles' cubes (their recorded definitions, else the built-ins)."""
    found = dict(builtin_sensors())
    for cubes, _, _ in tiles.values():
        for s, ds in cubes.items():
            definition = cube_sensor(ds)
            if definition is None:
                raise InputError(f"cube of sensor {s!r} records no sensor definition and {s} "
                                 "is not a built-in", file=ds.encoding.get("source"),
                                 field="sensor_definition",
                                 fix="re-extract the cube with this gpvae version")
            found[s] = definition
    return SensorRegistry(found)


def _spans(span: Span, times: dict[str, np.ndarray], registry: SensorRegistry,
           years: list[int] | None) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) of the sample spans: those holding dates of the optical / index sensors
    (of every sensor when there is none, and for ``all``), filtered by ``years``."""
    ref = [t for s, t in times.items() if registry[s].kind != "sar"]
    if span.kind == "all" or not ref:
        ref = list(times.values())
    starts, ends = span.windows(np.concatenate(ref))
    if years is not None:
        keep = np.isin(label_year(starts, ends), [int(y) for y in years])
        starts, ends = starts[keep], ends[keep]
    if starts.size == 0:
        raise InputError(f"no {span.describe()} span of the data is in years {years}",
                         field="sample.years", fix="check sample.years against the data's dates")
    check_dates_per_span(starts, ends, np.concatenate(ref), span)
    return starts, ends


def _write_samples(out: Path, tiles: dict, picked: pd.DataFrame, split_of: dict[int, str],
                   class_names: list[str], years: list[int] | None, span: Span,
                   attrs: dict) -> Path:
    """Read the drawn pixels' series, expand them to one sample per span, write pixels.nc."""
    registry = _definitions(tiles)
    sensors = sorted({s for cubes, _, _ in tiles.values() for s in cubes},
                     key=lambda s: (s != "S2", s))
    times = {s: np.unique(np.concatenate([c[s]["time"].values for c, _, _ in tiles.values()
                                          if s in c])) for s in sensors}
    bands = {}
    for s in sensors:
        found = {tuple(map(str, c[s]["band"].values)) for c, _, _ in tiles.values() if s in c}
        if len(found) > 1:
            raise InputError(f"{s} cubes of different tiles have different bands {found}",
                             field="band", fix="extract every tile with the same bands")
        bands[s] = list(found.pop())
    starts, ends = _spans(span, times, registry, years)
    series = {s: np.full((len(picked), len(times[s]), len(bands[s])), np.nan, np.float32)
              for s in sensors}
    truth = None
    xs, ys = np.empty(len(picked)), np.empty(len(picked))
    cells: dict[str, np.ndarray] = {}  # coarse sensor -> cell id of each picked pixel
    for k, (tile, (cubes, masks, spec)) in enumerate(tiles.items()):
        sel = np.flatnonzero(picked["tile"].to_numpy() == tile)
        rows, cols = picked["row"].to_numpy()[sel], picked["col"].to_numpy()[sel]
        fine = cubes[fine_sensor(cubes)]
        xs[sel], ys[sel] = fine["x"].values[cols], fine["y"].values[rows]
        for s, ds in cubes.items():
            pos = np.searchsorted(times[s], ds["time"].values)
            r, c, inside = rows, cols, None
            if not same_grid(cube_grid(ds), cube_grid(fine)):  # a coarse sensor's cells
                r, c, inside = cells_of(cube_grid(fine), cube_grid(ds), rows, cols)
                cells.setdefault(s, np.full(len(picked), -1, np.int64))[sel] = cell_ids(
                    k, cube_grid(ds), r, c, inside)
            values = pixel_series(ds, masks[s], r, c, f"{s} {tile}")
            if inside is not None:
                values[~inside] = np.nan
            series[s][np.ix_(sel, pos)] = values
        if spec.get("truth") and "S2" in sensors:
            truth = _truth(truth, spec["truth"], sel, rows, cols, times["S2"], series["S2"])
    nspan = starts.size
    which = np.tile(np.arange(nspan), len(picked))
    sample_start, sample_end = starts[which], ends[which]
    pix = np.repeat(np.arange(len(picked)), nspan)
    keep = np.zeros(len(pix), bool)
    values = {}
    # One pixel-span copy per array, blanked in place outside its span; each per-pixel
    # series is released once expanded (peak memory: about one copy of the samples).
    for s in sensors:
        values[s] = _in_span(series.pop(s), pix, times[s], sample_start, sample_end)
        keep |= np.isfinite(values[s]).any(axis=(1, 2))
    if truth is not None:
        truth = _in_span(truth, pix, times["S2"], sample_start, sample_end)
    n_drop = int((~keep).sum())
    if n_drop:
        log.warning("dropped %d of %d pixel-span samples with no valid date in their span",
                    n_drop, len(keep))
    if not keep.any():
        raise InputError(f"no sampled pixel has a valid date in its span ({span.describe()}, "
                         f"years {years or 'all'})", field="sample.years",
                         fix="check the years and the masks (too cloudy?)")
    if n_drop:  # one array at a time
        for s in sensors:
            values[s] = values[s][keep]
        truth = None if truth is None else truth[keep]
    p = picked.iloc[pix[keep]]
    samples = {"x": xs[pix[keep]], "y": ys[pix[keep]], "row": p["row"], "col": p["col"],
               "tile": p["tile"], "parcel_id": p["parcel_id"], "label": p["label"],
               "split": p["parcel_id"].map(split_of), "region":
               p["tile"].map({t: str(spec.get("region") or t) for t, (_, _, spec)
                              in tiles.items()}),
               "year": label_year(sample_start, sample_end)[keep],
               "start": sample_start[keep], "end": sample_end[keep],
               **{f"cell_{s}": ids[pix[keep]] for s, ids in cells.items()}}
    samples = {k: np.asarray(v) for k, v in samples.items()}
    log.info("writing %d samples (%s) to %s", keep.sum(),
             pd.Series(samples["split"]).value_counts().to_dict(), out)
    return write_pixels(out, values=values, times=times,
                        bands=bands, samples=samples, class_names=class_names, truth=truth,
                        attrs=attrs, definitions=registry)


def _in_span(series: np.ndarray, pix: np.ndarray, times: np.ndarray, start: np.ndarray,
             end: np.ndarray) -> np.ndarray:
    """Pixel-span samples ``series[pix]`` (sample, time, band), NaN at dates outside each
    sample's span [start, end)."""
    out = series[pix]
    t = times.astype("datetime64[D]")[None, :]
    out[(t < start[:, None]) | (t >= end[:, None])] = np.nan
    return out


def _truth(truth: np.ndarray | None, path: Path, sel: np.ndarray, rows: np.ndarray,
           cols: np.ndarray, times: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """Fill the truth series (npix, time_S2, band) of one tile's pixels (dates matched)."""
    with open_cube(path) as ds:
        if ds.sizes["band"] != s2.shape[2]:
            raise InputError(f"truth cube has {ds.sizes['band']} bands, the S2 cubes "
                             f"{s2.shape[2]}", file=path, field="band",
                             fix="regenerate the truth cube with the S2 bands")
        truth = np.full_like(s2, np.nan) if truth is None else truth
        pos = np.clip(np.searchsorted(times, ds["time"].values), 0, len(times) - 1)
        match = times[pos] == ds["time"].values
        if not match.all():
            log.warning("%s: %d truth dates not in the S2 cubes, ignored", path,
                        (~match).sum())
        full = pixel_series(ds, None, rows, cols, "truth")
    truth[np.ix_(sel, pos[match])] = full[:, match]
    return truth
