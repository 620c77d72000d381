"""Sample stage and parcel split (docs/contracts.md section 2)."""

from __future__ import annotations

from pathlib import Path

import affine
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from gpvae.errors import InputError
from gpvae.io.cube import open_cube, write_cube
from gpvae.io.pixels import merge_pixels, open_pixels
from gpvae.preprocess.mask import compute_mask
from gpvae.preprocess.sample import draw_samples, sample_pixels, sample_tile, tile_candidates
from gpvae.preprocess.split import allocate, split_parcels

CRS = "EPSG:32631"
X0, Y0, N, P = 300000.0, 4800400.0, 40, 8     # 40x40 px tile, 8x8 px parcels (5x5 parcels)
TRANSFORM = affine.Affine(10.0, 0.0, X0, 0.0, -10.0, Y0)
CLASSES = ["wheat", "maize", "grass"]
S2_TIMES = np.array(["2021-03-01", "2021-06-01", "2021-09-01", "2022-03-01", "2022-06-01",
                     "2022-09-01"], "datetime64[ns]")
S1_TIMES = np.array(["2021-04-02T06:00", "2022-04-05T06:00", "2022-08-05T06:00"],
                    "datetime64[ns]")
S2_BANDS = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
DEAD = 7   # parcel id with no valid S2/S1 date in 2022


def coded(times, nb):
    """Cube values that encode (t, band, row, col) so tests can check where they came from."""
    t, b, r, c = np.meshgrid(np.arange(len(times)), np.arange(nb), np.arange(N), np.arange(N),
                             indexing="ij")
    return (1000 * t + 100 * b + r + c / 100).astype(np.float32)


def parcel_frame(crs=CRS):
    rows = []
    for i in range(N // P):
        for j in range(N // P):
            pid = i * (N // P) + j + 1
            x0, y0 = X0 + j * P * 10, Y0 - i * P * 10
            rows.append({"pid": pid, "crop": CLASSES[pid % 3],
                         "geometry": shapely.box(x0, y0 - P * 10, x0 + P * 10, y0)})
    gdf = gpd.GeoDataFrame(rows, crs=CRS)
    return gdf.to_crs(crs)


@pytest.fixture(scope="module")
def tile_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    rng = np.random.default_rng(0)
    valid2 = (rng.random((len(S2_TIMES), N, N)) > 0.2).astype(np.uint8)
    dead = np.zeros((N, N), bool)
    r, c = divmod(DEAD - 1, N // P)
    dead[r * P:(r + 1) * P, c * P:(c + 1) * P] = True
    valid2[3:, dead] = 0
    s2 = write_cube(root / "S2.nc", data=coded(S2_TIMES, 10), valid=valid2, times=S2_TIMES,
                    bands=S2_BANDS, crs=CRS, transform=TRANSFORM, sensor="S2", tile="T31TCJ",
                    radiometry="surface_reflectance",
                    quality=np.zeros((len(S2_TIMES), N, N), np.uint8))
    valid1 = np.ones((len(S1_TIMES), N, N), np.uint8)
    valid1[1:, dead] = 0
    s1 = write_cube(root / "S1_ASC.nc", data=coded(S1_TIMES, 2), valid=valid1, times=S1_TIMES,
                    bands=["VV", "VH"], crs=CRS, transform=TRANSFORM, sensor="S1_ASC",
                    tile="T31TCJ", radiometry="sigma0_linear")
    truth = write_cube(root / "truth_S2.nc", data=coded(S2_TIMES, 10) + 0.5,
                       valid=np.ones((len(S2_TIMES), N, N), np.uint8), times=S2_TIMES,
                       bands=S2_BANDS, crs=CRS, transform=TRANSFORM, sensor="S2",
                       tile="T31TCJ", radiometry="surface_reflectance")
    masks = {}
    for s, cube in (("S2", s2), ("S1_ASC", s1)):
        masks[s] = compute_mask(cube, root / f"mask_{s}.nc", root / f"mask_{s}.csv")
    parcel_frame().to_file(root / "parcels.gpkg", driver="GPKG")
    parcel_frame("EPSG:4326").to_file(root / "parcels_4326.gpkg", driver="GPKG")
    return {"T31TCJ": {"cubes": {"S2": s2, "S1_ASC": s1}, "masks": masks,
                       "parcels": root / "parcels.gpkg", "truth": truth, "region": "south"}}


KW = dict(class_field="crop", id_field="pid", per_class=20, per_parcel_cap=3, erosion_px=1,
          split_fractions={"train": 0.6, "val": 0.2, "test": 0.2}, seed=7)


def run(inputs, out, **kw):
    with open_pixels(sample_pixels(inputs, out, **{**KW, **kw})) as ds:
        return ds.load()  # closed here, not by the GC (netCDF-C is unsafe with GC closes)


@pytest.fixture(scope="module")
def pixels(tile_inputs, tmp_path_factory):
    return run(tile_inputs, tmp_path_factory.mktemp("out") / "pixels.nc")


def test_contract_layout(pixels):
    assert pixels.attrs["sensors"] == "S2 S1_ASC" and int(pixels.attrs["seed"]) == 7
    assert pixels["values_S2"].dims == ("sample", "time_S2", "band_S2")
    assert np.array_equal(pixels["time_S2"].values, S2_TIMES)
    assert list(pixels["band_S1_ASC"].values) == ["VV", "VH"]
    assert list(pixels["class_name"].values) == sorted(CLASSES)
    assert set(pixels["year"].values.tolist()) == {2021, 2022}
    assert (pixels["region"].values == "south").all() and (pixels["tile"] == "T31TCJ").all()
    assert pixels["label"].dtype == np.int16 and pixels["parcel_id"].dtype == np.int64


def test_values_come_from_the_right_pixel_date_and_year(pixels):
    v, rows, cols = pixels["values_S2"].values, pixels["row"].values, pixels["col"].values
    years = S2_TIMES.astype("datetime64[Y]").astype(int) + 1970
    t, b = np.meshgrid(np.arange(len(S2_TIMES)), np.arange(10), indexing="ij")
    for i in range(len(rows)):
        expected = 1000 * t + 100 * b + rows[i] + cols[i] / 100
        ok = np.isfinite(v[i])
        assert np.allclose(v[i][ok], expected[ok])
        assert not ok[years != pixels["year"].values[i]].any()
    assert np.allclose(pixels["x"].values, X0 + 10 * cols + 5)
    assert np.allclose(pixels["y"].values, Y0 - 10 * rows - 5)
    truth = pixels["truth_S2"].values
    same_year = years[None, :] == pixels["year"].values[:, None]
    assert np.isfinite(truth[same_year]).all() and np.isnan(truth[~same_year]).all()
    assert np.allclose(truth[np.isfinite(v)], v[np.isfinite(v)] + 0.5)


def test_labels_match_parcel_classes(pixels):
    names = pixels["class_name"].values
    for pid, lab in zip(pixels["parcel_id"].values, pixels["label"].values, strict=True):
        assert names[lab] == CLASSES[pid % 3]


def test_class_balance_cap_and_erosion(pixels):
    px = {(r, c): (p, lab) for r, c, p, lab in zip(pixels["row"].values, pixels["col"].values,
                                                   pixels["parcel_id"].values,
                                                   pixels["label"].values, strict=True)}
    labels = np.array([lab for _, lab in px.values()])
    parcels = np.array([p for p, _ in px.values()])
    assert np.bincount(labels).tolist() == [20, 20, 20]   # >= 7 parcels x cap 3 per class
    assert np.bincount(parcels).max() <= 3
    rows, cols = np.array(list(px)).T
    # eroded by 1 px from parcel borders; the tile edge is not a parcel border
    for a in (rows, cols):
        assert ((a % P >= 1) & (a % P <= P - 2) | (a == 0) | (a == N - 1)).all()


def test_splits_grouped_by_parcel_and_stratified(pixels):
    split_of = {}
    for p, s in zip(pixels["parcel_id"].values, pixels["split"].values, strict=True):
        assert split_of.setdefault(int(p), s) == s
    for lab in range(3):
        in_class = pixels["label"].values == lab
        assert set(pixels["split"].values[in_class]) == {"train", "val", "test"}


def test_pixel_without_valid_date_dropped(pixels, caplog):
    dead = pixels["parcel_id"].values == DEAD
    assert dead.any(), "fixture: the dead parcel should be sampled"
    assert (pixels["year"].values[dead] == 2021).all()
    n_pix = len({(r, c) for r, c in zip(pixels["row"].values, pixels["col"].values,
                                        strict=True)})
    assert pixels.sizes["sample"] == 2 * n_pix - dead.sum()


def test_deterministic_by_seed(tile_inputs, pixels, tmp_path):
    again = run(tile_inputs, tmp_path / "a.nc")
    assert np.array_equal(again["row"].values, pixels["row"].values)
    assert np.array_equal(again["split"].values, pixels["split"].values)
    other = run(tile_inputs, tmp_path / "b.nc", seed=8)
    assert not (np.array_equal(other["row"].values, pixels["row"].values)
                and np.array_equal(other["col"].values, pixels["col"].values))


def test_parcels_in_other_crs_are_reprojected(tile_inputs, pixels, tmp_path, caplog):
    inputs = {"T31TCJ": {**tile_inputs["T31TCJ"],
                         "parcels": tile_inputs["T31TCJ"]["parcels"].with_name(
                             "parcels_4326.gpkg")}}
    with caplog.at_level("INFO"):
        got = run(inputs, tmp_path / "p.nc")
    assert "reprojecting" in caplog.text
    assert np.array_equal(got["row"].values, pixels["row"].values)
    assert np.array_equal(got["parcel_id"].values, pixels["parcel_id"].values)


def test_classes_fix_label_order(tile_inputs, tmp_path):
    got = run(tile_inputs, tmp_path / "c.nc", classes=["wheat", "grass"])
    assert list(got["class_name"].values) == ["wheat", "grass"]
    assert set(got["label"].values.tolist()) == {0, 1}
    assert all(CLASSES[p % 3] in ("wheat", "grass") for p in got["parcel_id"].values)


def test_parcels_not_overlapping_tile(tile_inputs, tmp_path):
    far = parcel_frame()
    far["geometry"] = far.translate(1e5, 0)
    far.to_file(tmp_path / "far.gpkg", driver="GPKG")
    inputs = {"T31TCJ": {**tile_inputs["T31TCJ"], "parcels": tmp_path / "far.gpkg"}}
    with pytest.raises(InputError) as e:
        sample_pixels(inputs, tmp_path / "out.nc", **KW)
    assert "far.gpkg" in str(e.value) and "overlap" in str(e.value)
    assert not (tmp_path / "out.nc").exists()


def test_missing_id_field(tile_inputs, tmp_path):
    with pytest.raises(InputError) as e:
        sample_pixels(tile_inputs, tmp_path / "out.nc", **{**KW, "id_field": "ID_PARCEL"})
    assert "parcels.gpkg" in str(e.value) and "field: ID_PARCEL" in str(e.value)
    assert "pid" in str(e.value) and not (tmp_path / "out.nc").exists()


def test_bad_split_fractions(tile_inputs, tmp_path):
    with pytest.raises(InputError, match="split_fractions"):
        sample_pixels(tile_inputs, tmp_path / "out.nc",
                      **{**KW, "split_fractions": {"train": 0.8, "val": 0.8}})


def test_allocate_sums_and_minimum_one():
    for n in range(0, 30):
        counts = allocate(n, [0.7, 0.15, 0.15])
        assert sum(counts) == n
        if n >= 3:
            assert min(counts) >= 1
    assert allocate(10, [0.6, 0.2, 0.2]) == [6, 2, 2]
    assert allocate(5, [1.0, 0.0, 0.0]) == [5, 0, 0]


def test_split_every_parcel_once_and_seeded():
    ids = np.arange(40)
    cls = ids % 4
    fr = {"train": 0.7, "val": 0.15, "test": 0.15}
    a = split_parcels(ids, cls, fr, 3)
    assert sorted(a) == ids.tolist()
    for k in range(4):
        assert {a[i] for i in ids[cls == k]} == set(fr)
    assert a == split_parcels(ids, cls, fr, 3) and a != split_parcels(ids, cls, fr, 4)


def test_spans_all_and_season(tile_inputs, tmp_path):
    """``all``: one sample per pixel over the whole range; ``season``: one per Sep-Aug season,
    each with its own origin (``start``)."""
    whole = run(tile_inputs, tmp_path / "all.nc", span={"span": "all"})
    pix = set(zip(whole["row"].values, whole["col"].values, strict=True))
    assert whole.sizes["sample"] == len(pix)  # one sample per drawn pixel
    assert set(whole["start"].values.astype("datetime64[D]").astype(str)) == {"2021-03-01"}
    assert set(whole["end"].values.astype("datetime64[D]").astype(str)) == {"2022-09-02"}
    assert np.isfinite(whole["values_S2"].values).any(axis=2).sum(axis=1).max() == 6
    season = run(tile_inputs, tmp_path / "season.nc",
                 span={"span": "season", "season_start": "08-01"})
    starts = season["start"].values.astype("datetime64[D]")
    assert set(starts.astype(str)) == {"2020-08-01", "2021-08-01", "2022-08-01"}
    t = S2_TIMES.astype("datetime64[D]")
    inside = (t[None, :] >= starts[:, None]) & (t[None, :] < season["end"].values.astype(
        "datetime64[D]")[:, None])
    assert not np.isfinite(season["values_S2"].values[~inside]).any()
    # the span's year: the year of its middle day (Aug 2021 - Jul 2022 -> 2022)
    assert set(season["year"].values[starts == np.datetime64("2021-08-01")]) == {2022}
    assert season.attrs["span"] and "season" in season.attrs["span"]


def test_candidates_do_not_depend_on_the_row_bands(tile_inputs):
    spec = tile_inputs["T31TCJ"]
    kw = dict(class_field="crop", id_field="pid", erosion_px=1, per_parcel_cap=3, seed=7)
    whole = tile_candidates("T31TCJ", spec["cubes"]["S2"], spec["parcels"], **kw)
    banded = tile_candidates("T31TCJ", spec["cubes"]["S2"], spec["parcels"],
                             rows_per_band=7, **kw)
    pd.testing.assert_frame_equal(whole, banded)
    assert whole.groupby("parcel_id").size().max() == 3
    assert len(set(whole["key"])) == len(whole)  # the hash keys do not collide here


def test_tiles_are_sampled_apart_and_merged(tile_inputs, tmp_path):
    """Two tiles (the second with half the S2 dates): one shard each, merged on the union of
    dates; per_class counts over both tiles; merging in chunks of 5 samples changes nothing."""
    a = tile_inputs["T31TCJ"]
    root = Path(a["cubes"]["S2"]).parent
    with open_cube(a["cubes"]["S2"]) as ds:
        half = ds.isel(time=slice(0, None, 2)).load()
    s2b = write_cube(tmp_path / "S2b.nc", data=half["data"].values, valid=half["valid"].values,
                     times=half["time"].values, bands=S2_BANDS, crs=CRS, transform=TRANSFORM,
                     sensor="S2", tile="T31UDQ", radiometry="surface_reflectance")
    inputs = {"T31TCJ": a, "T31UDQ": {"cubes": {"S2": s2b, "S1_ASC": a["cubes"]["S1_ASC"]},
                                      "masks": {"S1_ASC": a["masks"]["S1_ASC"]},
                                      "parcels": root / "parcels.gpkg", "truth": None}}
    got = run(inputs, tmp_path / "two.nc")
    np.testing.assert_array_equal(got["time_S2"].values, S2_TIMES)
    assert set(got["tile"].values) == {"T31TCJ", "T31UDQ"}
    pixels = {(t, r, c, lab) for t, r, c, lab in zip(got["tile"].values, got["row"].values,
                                                     got["col"].values, got["label"].values,
                                                     strict=True)}
    assert np.bincount([lab for *_, lab in pixels]).tolist() == [20, 20, 20]
    b = got["tile"].values == "T31UDQ"
    assert not np.isfinite(got["values_S2"].values[b][:, 1::2]).any()  # dates it lacks
    assert np.isfinite(got["values_S2"].values[b][:, 0::2]).any()
    assert np.isnan(got["truth_S2"].values[b]).all() and np.isfinite(
        got["truth_S2"].values[~b]).any()
    shards = []
    plan = draw_samples(inputs, {t: tile_candidates(t, s["cubes"]["S2"], s["parcels"],
                                                    class_field="crop", id_field="pid",
                                                    erosion_px=1, per_parcel_cap=3, seed=7)
                                 for t, s in inputs.items()},
                        per_class=20, per_parcel_cap=3, seed=7,
                        split_fractions=KW["split_fractions"])
    for t, spec in sorted(inputs.items()):
        shards.append(sample_tile(t, spec, plan, tmp_path / f"{t}.nc"))
    with open_pixels(merge_pixels(shards, tmp_path / "m5.nc", chunk=5)) as m5:
        np.testing.assert_array_equal(m5["values_S2"].values, got["values_S2"].values)
        np.testing.assert_array_equal(m5["row"].values, got["row"].values)
        assert m5["values_S2"].encoding["chunksizes"][0] == 5
