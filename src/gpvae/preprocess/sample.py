"""Sample stage: cubes + masks + parcels -> pixel dataset (docs/contracts.md section 2).

Four steps, each a job of its own in the pipeline (one per tile where it can), memory bounded
by a block of rows or by the samples, never by the tile:

1. :func:`tile_candidates` (per tile): parcels rasterised on the tile grid in bands of rows,
   eroded by ``erosion_px`` pixels; every interior pixel gets a random key, a hash of (seed,
   tile, row, col), and each parcel keeps its ``per_parcel_cap`` smallest keys.
2. :func:`draw_samples` (all tiles): parcels are split train/val/test (stratified by class,
   grouped by parcel); per class the ``per_class`` smallest keys among the pixels that are
   within their parcel's cap over all tiles are drawn; the sample spans (gpvae.data.span: a
   calendar year by default, a season, or the whole range) come from every cube's dates.
   The draw is written as a small JSON plan.
3. :func:`sample_tile` (per tile): the drawn pixels' series, one sample per span (values from
   the cube where the mask is valid, NaN elsewhere and outside the span), written as the
   tile's shard of the pixel dataset; samples with no valid observation in any sensor during
   their span are dropped (the count is logged).
4. :func:`gpvae.io.pixels.merge_pixels`: the shards, streamed into ``pixels.nc``.

A coarse sensor (a cube on a coarser grid of the tile's CRS: Landsat 30 m, MODIS 250 m) gives
each pixel the series of the cell holding it, and the sample the cell's id
(``cell_<sensor>``, gpvae.io.coarse). :func:`sample_pixels` runs the four in one process.
The hash keys make the draw independent of how the work is split: a tile's candidates are
exactly the pixels the global draw can take.
"""

from __future__ import annotations

import json
import logging
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from rasterio.windows import Window
from scipy import ndimage
from tqdm.auto import tqdm

from gpvae.data.span import Span, check_dates_per_span, label_year
from gpvae.errors import InputError
from gpvae.io.atomic import atomic_path
from gpvae.io.coarse import cell_ids, cells_of, is_coarser, pixel_size, same_grid
from gpvae.io.cube import cube_grid, cube_sensor, no_chunk_cache, open_cube
from gpvae.io.maskfile import open_mask
from gpvae.io.parcels import rasterize_parcels, read_parcels
from gpvae.io.pixels import merge_pixels, write_pixels
from gpvae.io.sensors import SensorRegistry, builtin_sensors
from gpvae.io.window import window_transform
from gpvae.preprocess.split import split_parcels
from gpvae.preprocess.split_check import check_coverage

log = logging.getLogger(__name__)
#: Memory budget of one block of dates read from a cube by the sample stage (bytes).
SAMPLE_BLOCK_BYTES = 16 * 2**20
#: Rows of the tile rasterised at once when looking for candidate pixels.
CANDIDATE_ROWS = 1024
CANDIDATE_COLUMNS = ("tile", "row", "col", "parcel_id", "class", "key")


def interior(ids: np.ndarray, erosion_px: int) -> np.ndarray:
    """Pixels whose (2e+1)^2 neighbourhood lies in one parcel (image edges are no border)."""
    inside = ids > 0
    if erosion_px <= 0:
        return inside
    size = 2 * int(erosion_px) + 1
    lo = ndimage.minimum_filter(ids, size=size, mode="nearest")
    hi = ndimage.maximum_filter(ids, size=size, mode="nearest")
    return inside & (lo == hi)


def _mix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser (Steele et al. 2014) on uint64: a bijective bit mixer."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def pixel_keys(seed: int, tile: str, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Random-looking uint64 keys of pixels, a pure function of (seed, tile, row, col): the
    draw order, whatever job computes it."""
    base = np.uint64((int(seed) & 0xFFFFFFFF) << 32 | zlib.crc32(tile.encode()))
    pos = np.asarray(rows, np.uint64) << np.uint64(32) | np.asarray(cols, np.uint64)
    with np.errstate(over="ignore"):
        return _mix64(_mix64(pos + _mix64(np.full(pos.shape, base, np.uint64))))


def cap_per_parcel(frame: pd.DataFrame, cap: int) -> pd.DataFrame:
    """The ``cap`` rows of smallest ``key`` of each parcel, sorted by key."""
    frame = frame.sort_values("key", kind="stable")
    return frame[frame.groupby("parcel_id").cumcount() < cap]


def tile_candidates(tile: str, cube: Path, parcels: Path, *, class_field: str, id_field: str,
                    erosion_px: int, per_parcel_cap: int, seed: int,
                    rows_per_band: int | None = None) -> pd.DataFrame:
    """Candidate pixels of one tile (step 1): interior pixels of parcels on the grid of
    ``cube``, each parcel's ``per_parcel_cap`` smallest :func:`pixel_keys`; columns
    :data:`CANDIDATE_COLUMNS`. Parcels are rasterised in bands of rows (plus an erosion halo),
    so memory follows the parcels, not the tile."""
    _check_int("per_parcel_cap", per_parcel_cap, 1)
    _check_int("erosion_px", erosion_px, 0)
    with open_cube(cube) as ds:
        crs, transform, h, w = cube_grid(ds)
    bounds = (transform.c, transform.f + h * transform.e, transform.c + w * transform.a,
              transform.f)
    gdf = read_parcels(parcels, id_field=id_field, class_field=class_field, crs=crs,
                       bounds=bounds)
    step = int(rows_per_band or CANDIDATE_ROWS)
    halo = int(erosion_px)
    kept = pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
        CANDIDATE_COLUMNS, ("str", "int32", "int32", "int64", "str", "uint64"), strict=True)})
    n_interior = 0
    for r0 in range(0, h, step):
        r1 = min(h, r0 + step)
        a0, a1 = max(0, r0 - halo), min(h, r1 + halo)
        win_transform = window_transform(Window(0, a0, w, a1 - a0), transform)
        ids = rasterize_parcels(gdf, win_transform, a1 - a0, w)
        inner = interior(ids, erosion_px)[r0 - a0:r1 - a0]
        rows, cols = np.nonzero(inner)
        idx = ids[r0 - a0:r1 - a0][rows, cols] - 1
        rows = rows + r0
        n_interior += rows.size
        band = pd.DataFrame({"tile": tile, "row": rows.astype(np.int32),
                             "col": cols.astype(np.int32),
                             "parcel_id": gdf["parcel_id"].to_numpy()[idx],
                             "class": gdf["class"].to_numpy()[idx],
                             "key": pixel_keys(seed, tile, rows, cols)})
        kept = cap_per_parcel(pd.concat([kept, band], ignore_index=True), per_parcel_cap)
    log.info("%s: %d parcels, %d interior pixels (erosion %d px), %d candidates (cap %d "
             "per parcel)", tile, len(gdf), n_interior, erosion_px, len(kept), per_parcel_cap)
    return kept.sort_values(["row", "col"]).reset_index(drop=True)


def draw_pixels(candidates: pd.DataFrame, *, per_class: int, per_parcel_cap: int
                ) -> pd.DataFrame:
    """Per class the ``per_class`` rows of smallest key among those within their parcel's
    ``per_parcel_cap`` smallest keys; sorted by tile, row, col."""
    capped = cap_per_parcel(candidates, per_parcel_cap)
    drawn = capped.groupby("label", sort=True).head(per_class)
    return drawn.sort_values(["tile", "row", "col"]).reset_index(drop=True)


def _check_int(name: str, value: int, minimum: int) -> None:
    if int(value) < minimum:
        raise InputError(f"{name} = {value} < {minimum}", field=name,
                         fix=f"set {name} to an integer >= {minimum}")


def _definitions(cubes: dict[str, xr.Dataset]) -> SensorRegistry:
    """The built-ins plus the sensors of ``cubes`` (their recorded definitions)."""
    found = dict(builtin_sensors())
    for s, ds in cubes.items():
        definition = cube_sensor(ds)
        if definition is None:
            raise InputError(f"cube of sensor {s!r} records no sensor definition and {s} is "
                             "not a built-in", file=ds.encoding.get("source"),
                             field="sensor_definition",
                             fix="re-extract the cube with this gpvae version")
        found[s] = definition
    return SensorRegistry(found)


def _cube_times(inputs: dict[str, dict]) -> tuple[dict[str, np.ndarray], SensorRegistry]:
    """Every sensor's union of dates over the tiles, and the cubes' sensor definitions."""
    found: dict = {}
    times: dict[str, list[np.ndarray]] = {}
    for _tile, spec in sorted(inputs.items()):
        for s, path in spec["cubes"].items():
            with open_cube(path) as ds:
                found.update(_definitions({s: ds}))
                times.setdefault(s, []).append(ds["time"].values)
    return {s: np.unique(np.concatenate(t)) for s, t in times.items()}, SensorRegistry(found)


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


def draw_samples(inputs: dict[str, dict], candidates: dict[str, pd.DataFrame], *,
                 per_class: int, per_parcel_cap: int, split_fractions: dict[str, float],
                 seed: int, years: list[int] | None = None, classes: list[str] | None = None,
                 span: Span | dict | None = None, attrs: dict | None = None) -> dict:
    """The draw (step 2) as a JSON-able plan: ``class_names``, the sample spans ``starts`` /
    ``ends`` (ISO), ``regions`` (tile -> region), the drawn ``pixels`` (columns tile, row, col,
    parcel_id, label, split) and the ``attrs`` of the pixel dataset. ``inputs``: tile ->
    {"cubes": {sensor: path}, "region": str, ...} (only the cubes' dates are read)."""
    span = span if isinstance(span, Span) else Span.from_config(span)
    _check_int("per_class", per_class, 1)
    _check_int("per_parcel_cap", per_parcel_cap, 1)
    split_seq, _ = np.random.SeedSequence(seed).spawn(2)
    cand = pd.concat([candidates[t] for t in sorted(candidates)], ignore_index=True)
    class_names = sorted(cand["class"].unique()) if classes is None else [str(c) for c in
                                                                          classes]
    parcel_files = ", ".join(str(spec["parcels"]) for spec in inputs.values()
                             if spec.get("parcels")) or None
    absent = sorted(set(class_names) - set(cand["class"]))
    if classes is not None and absent:
        class_field = (attrs or {}).get("class_field", "class")
        raise InputError(f"sample.classes lists classes with no parcel interior pixel: "
                         f"{absent[:10]} (classes there: {sorted(set(cand['class']))[:20]})",
                         file=parcel_files, field="sample.classes",
                         fix=f"correct the spelling (class field {class_field!r}), remove "
                             "them, or lower erosion_px if their parcels are small")
    other = ~cand["class"].isin(class_names)
    if other.any():
        log.info("%d candidate pixels of classes outside %s not sampled", other.sum(),
                 class_names)
    cand = cand[~other].copy()
    if cand.empty:
        raise InputError("no parcel interior pixel to sample", field="classes/erosion_px",
                         fix="check the class names, lower erosion_px or use larger parcels")
    cand["label"] = pd.Categorical(cand["class"], categories=class_names).codes.astype(np.int16)
    parcel_class = cand.drop_duplicates("parcel_id")
    split_of = split_parcels(parcel_class["parcel_id"].to_numpy(),
                             parcel_class["label"].to_numpy(), split_fractions, split_seq)
    picked = draw_pixels(cand, per_class=per_class, per_parcel_cap=per_parcel_cap)
    log.info("drew %d pixels: %s", len(picked), picked.groupby("class").size().to_dict())
    check_coverage(class_names, picked["label"].to_numpy(),
                   picked["parcel_id"].map(split_of).to_numpy(), split_fractions,
                   file=parcel_files)
    times, registry = _cube_times(inputs)
    starts, ends = _spans(span, times, registry, years)
    return {"class_names": class_names,
            "starts": [str(v) for v in starts.astype("datetime64[ns]")],
            "ends": [str(v) for v in ends.astype("datetime64[ns]")],
            "regions": {t: str(spec.get("region") or t) for t, spec in inputs.items()},
            "pixels": {"tile": picked["tile"].astype(str).tolist(),
                       "row": picked["row"].astype(int).tolist(),
                       "col": picked["col"].astype(int).tolist(),
                       "parcel_id": picked["parcel_id"].astype(int).tolist(),
                       "label": picked["label"].astype(int).tolist(),
                       "split": picked["parcel_id"].map(split_of).tolist()},
            "attrs": {"seed": int(seed), "per_class": int(per_class),
                      "per_parcel_cap": int(per_parcel_cap),
                      "split_fractions": json.dumps(split_fractions), "span": span.to_attr(),
                      **(attrs or {})}}


def write_plan(plan: dict, out: Path) -> Path:
    """Write the draw's plan (JSON) atomically."""
    with atomic_path(out) as tmp:
        Path(tmp).write_text(json.dumps(plan))
    return Path(out)


def read_plan(path: Path) -> dict:
    """The draw's plan (:func:`draw_samples`)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("sample draw not found", file=path, fix="run the draw stage first")
    return json.loads(path.read_text())


def gather(var: xr.DataArray, t: int | slice, rows: np.ndarray, cols: np.ndarray,
           block: int = 256) -> np.ndarray:
    """``var[t, ..., rows, cols]`` -> (..., npix), reading ``block`` x ``block`` windows
    (lazy-file friendly, memory independent of the tile); ``t`` a slice of dates keeps the
    time axis first."""
    out = None
    cells = (rows // block) * (1 << 20) + cols // block
    for cell in np.unique(cells):
        sel = np.flatnonzero(cells == cell)
        r0, c0 = rows[sel].min(), cols[sel].min()
        r1, c1 = rows[sel].max() + 1, cols[sel].max() + 1
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
    window = nb * min(cube.sizes["y"], 256) * min(cube.sizes["x"], 256) * \
        cube["data"].dtype.itemsize
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


def fine_sensor(cubes: dict[str, xr.Dataset]) -> str:
    """The sensor whose grid is the tile's (pixels are sampled on it): S2, else the cube
    with the smallest pixel (first in order on ties)."""
    if "S2" in cubes:
        return "S2"
    return min(cubes, key=lambda s: pixel_size(cube_grid(cubes[s])[1]))


def _tile_cubes(tile: str, spec: dict, opened: list[xr.Dataset]) -> tuple[dict, dict]:
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
    return cubes, masks


@no_chunk_cache()
def sample_tile(tile: str, spec: dict, plan: dict, out: Path) -> Path:
    """The shard of ``tile`` (step 3): its drawn pixels' series, one sample per span of the
    plan, written like the pixel dataset (its own dates); samples with no valid date in their
    span are dropped. ``spec``: {"cubes": {sensor: path}, "masks": {...}, "truth": path or
    None}."""
    px = pd.DataFrame(plan["pixels"])
    px = px[px["tile"] == tile].reset_index(drop=True) if len(px) else px
    starts = np.array(plan["starts"], "datetime64[ns]")
    ends = np.array(plan["ends"], "datetime64[ns]")
    opened: list[xr.Dataset] = []
    try:  # close every cube and mask explicitly (netCDF-C is unsafe with GC closes)
        cubes, masks = _tile_cubes(tile, spec, opened)
        sensors = sorted(cubes, key=lambda s: (s != "S2", s))
        registry = _definitions(cubes)
        rows, cols = px["row"].to_numpy(np.int64), px["col"].to_numpy(np.int64)
        fine = cubes[fine_sensor(cubes)]
        xs, ys = fine["x"].values[cols], fine["y"].values[rows]
        times = {s: cubes[s]["time"].values for s in sensors}
        bands = {s: [str(b) for b in cubes[s]["band"].values] for s in sensors}
        series, cells = {}, {}  # cells: coarse sensor -> cell id of each drawn pixel
        tile_index = sorted(plan["regions"]).index(tile)
        for s in sensors:
            r, c, inside = rows, cols, None
            if not same_grid(cube_grid(cubes[s]), cube_grid(fine)):  # a coarse sensor's cells
                r, c, inside = cells_of(cube_grid(fine), cube_grid(cubes[s]), rows, cols)
                cells[s] = cell_ids(tile_index, cube_grid(cubes[s]), r, c, inside)
            series[s] = pixel_series(cubes[s], masks[s], r, c, f"{s} {tile}")
            if inside is not None:
                series[s][~inside] = np.nan
        truth = None
        if spec.get("truth") and "S2" in sensors:
            truth = _truth(spec["truth"], rows, cols, times["S2"], series["S2"])
    finally:
        for ds in opened:
            ds.close()
    nspan = starts.size
    which = np.tile(np.arange(nspan), len(px))
    sample_start, sample_end = starts[which], ends[which]
    pix = np.repeat(np.arange(len(px)), nspan)
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
        log.warning("%s: dropped %d of %d pixel-span samples with no valid date in their span",
                    tile, n_drop, len(keep))
        for s in sensors:
            values[s] = values[s][keep]
        truth = None if truth is None else truth[keep]
    p = px.iloc[pix[keep]]
    samples = {"x": xs[pix[keep]], "y": ys[pix[keep]], "row": p["row"], "col": p["col"],
               "tile": p["tile"], "parcel_id": p["parcel_id"], "label": p["label"],
               "split": p["split"], "region": p["tile"].map(plan["regions"]),
               "year": label_year(sample_start, sample_end)[keep],
               "start": sample_start[keep], "end": sample_end[keep],
               **{f"cell_{s}": ids[pix[keep]] for s, ids in cells.items()}}
    samples = {k: np.asarray(v) for k, v in samples.items()}
    log.info("%s: %d samples (%s) -> %s", tile, keep.sum(),
             pd.Series(samples["split"]).value_counts().to_dict(), out)
    return write_pixels(out, values=values, times=times, bands=bands, samples=samples,
                        class_names=plan["class_names"], truth=truth, attrs=plan["attrs"],
                        definitions=registry)


def _in_span(series: np.ndarray, pix: np.ndarray, times: np.ndarray, start: np.ndarray,
             end: np.ndarray) -> np.ndarray:
    """Pixel-span samples ``series[pix]`` (sample, time, band), NaN at dates outside each
    sample's span [start, end)."""
    out = series[pix]
    t = times.astype("datetime64[D]")[None, :]
    out[(t < start[:, None]) | (t >= end[:, None])] = np.nan
    return out


def _truth(path: Path, rows: np.ndarray, cols: np.ndarray, times: np.ndarray,
           s2: np.ndarray) -> np.ndarray:
    """The truth series (npix, time_S2, band) of one tile's pixels (dates matched)."""
    with open_cube(path) as ds:
        if ds.sizes["band"] != s2.shape[2]:
            raise InputError(f"truth cube has {ds.sizes['band']} bands, the S2 cubes "
                             f"{s2.shape[2]}", file=path, field="band",
                             fix="regenerate the truth cube with the S2 bands")
        truth = np.full_like(s2, np.nan)
        pos = np.clip(np.searchsorted(times, ds["time"].values), 0, len(times) - 1)
        match = times[pos] == ds["time"].values
        if not match.all():
            log.warning("%s: %d truth dates not in the S2 cube, ignored", path,
                        (~match).sum())
        full = pixel_series(ds, None, rows, cols, "truth")
    truth[:, pos[match]] = full[:, match]
    return truth


def sample_pixels(inputs: dict[str, dict], out: Path, *, class_field: str, id_field: str,
                  per_class: int, per_parcel_cap: int, erosion_px: int,
                  split_fractions: dict[str, float], seed: int, years: list[int] | None = None,
                  classes: list[str] | None = None, span: Span | dict | None = None) -> Path:
    """The four steps in one process: draw labelled pixels from every tile and write the
    pixel dataset (the pipeline runs them as separate jobs, one per tile where it can).

    ``inputs``: tile -> {"cubes": {sensor: path}, "masks": {sensor: path}, "parcels": gpkg,
    "truth": truth cube or None, "region": str}. ``classes`` fixes the label order (parcels
    of other classes are not sampled); None = sorted unique classes found. ``span`` (a
    :class:`~gpvae.data.span.Span` or the config's ``sample`` section; default calendar years):
    what one sample covers; the spans are those of the optical / index cubes' dates (of all
    cubes when there is none, and always for ``all``). ``years`` None = every span; else the
    spans whose year (gpvae.data.span.label_year) is listed.
    """
    if not inputs:
        raise InputError("no tile to sample", field="inputs", fix="configure at least one tile")
    candidates = {t: tile_candidates(t, first_cube(spec), spec["parcels"],
                                     class_field=class_field, id_field=id_field,
                                     erosion_px=erosion_px, per_parcel_cap=per_parcel_cap,
                                     seed=seed)
                  for t, spec in sorted(inputs.items())}
    plan = draw_samples(inputs, candidates, per_class=per_class, per_parcel_cap=per_parcel_cap,
                        split_fractions=split_fractions, seed=seed, years=years,
                        classes=classes, span=span,
                        attrs=sample_attrs(inputs, class_field, id_field, erosion_px))
    with tempfile.TemporaryDirectory(dir=Path(out).parent if Path(out).parent.is_dir()
                                     else None) as tmp:
        shards = [sample_tile(t, spec, plan, Path(tmp) / f"{t}.nc")
                  for t, spec in sorted(inputs.items())]
        return merge_pixels(shards, out)


def first_cube(spec: dict) -> Path:
    """The cube whose grid a tile's parcels are rasterised on (S2, else the first)."""
    cubes = spec["cubes"]
    if not cubes:
        raise InputError("a tile has no cube", field="cubes",
                         fix="list at least one sensor cube for the tile")
    return Path(cubes["S2"] if "S2" in cubes else next(iter(cubes.values())))


def sample_attrs(inputs: dict, class_field: str, id_field: str, erosion_px: int) -> dict:
    """Provenance attributes of the pixel dataset (beside the draw's settings)."""
    return {"class_field": class_field, "id_field": id_field, "erosion_px": int(erosion_px),
            "inputs": json.dumps(inputs, default=str)}
