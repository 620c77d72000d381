"""Pixel dataset reading, transforms, normalisation and batching (gpvae.data.dataset/normalise)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from fixtures_pixels import S1_BANDS, S2_BANDS, write_pixels

from gpvae import to_days
from gpvae.data.dataset import (
    BlockSampler,
    PixelDataset,
    compact_series,
    sensor_bands_from_config,
    year_origin,
)
from gpvae.data.normalise import Normalisation, RunningMoments, from_db, to_db
from gpvae.errors import InputError

BANDS = {"S2": S2_BANDS, "S1_ASC": S1_BANDS, "S1_DES": S1_BANDS}


@pytest.fixture(scope="module")
def pixels(tmp_path_factory) -> Path:
    return write_pixels(tmp_path_factory.mktemp("px") / "pixels.nc", n_samples=24,
                        years=(2021, 2022), seed=3)


@pytest.fixture(scope="module")
def dataset(pixels):
    with PixelDataset(pixels, BANDS) as ds:
        ds.normalisation = ds.compute_normalisation("train")
        yield ds


def _rewrite(src: Path, dst: Path, edit) -> Path:
    with xr.open_dataset(src) as ds:
        ds = ds.load()
    edit(ds)
    ds.to_netcdf(dst)
    return dst


def test_year_origin_is_january_first():
    origin = year_origin(np.array([2000, 2001, 2022]))
    assert origin[0] == 0.0
    assert origin[1] == 366.0  # 2000 is a leap year
    assert origin[2] == to_days(np.array(["2022-01-01"], dtype="datetime64[ns]"))[0]


def test_compaction_against_raw_file(pixels, dataset):
    idx = np.array([7, 2, 11, 0])
    batch = dataset[idx]
    assert batch.index.tolist() == idx.tolist()
    with xr.open_dataset(pixels) as raw:
        for sensor, bands in BANDS.items():
            sb = batch.sensors[sensor]
            values = raw[f"values_{sensor}"].sel({f"band_{sensor}": bands}).values[idx]
            days = to_days(raw[f"time_{sensor}"].values)
            n = sb.t.shape[1]
            assert sb.x.shape == (4, n, len(bands)) and sb.m.shape == sb.x.shape
            for b, i in enumerate(idx):
                observed = ~np.isnan(values[b]).all(axis=-1)
                k = int(observed.sum())
                assert k > 0
                # observed dates first, in increasing order, then padding
                assert sb.obs[b, :k].all() and not sb.obs[b, k:].any()
                want_t = days[observed] - year_origin(raw["year"].values[[i]])[0]
                np.testing.assert_allclose(sb.t[b, :k].numpy(), want_t, atol=1e-3)
                assert np.all(np.diff(sb.t[b, :k].numpy()) > 0)
                assert (sb.t[b, k:] == sb.t[b, k - 1]).all()  # pad t = last valid t
                # mask is NaN-ness; x is 0 where missing
                np.testing.assert_array_equal(sb.m[b, :k].numpy(),
                                              ~np.isnan(values[b][observed]))
                assert not sb.m[b, k:].any() and (sb.x[b, k:] == 0).all()
                assert (sb.x[b][~sb.m[b]] == 0).all()
                back, _ = dataset.normalisation.denormalise(sensor, sb.x[b, :k].numpy())
                phys = values[b][observed]
                ok = ~np.isnan(phys)
                want = 10 * np.log10(phys) if sensor.startswith("S1") else phys
                np.testing.assert_allclose(back[ok], want[ok], rtol=1e-4, atol=1e-4)
                # all dates of the sample fall in its year: 0 <= t < 366
                assert sb.t[b, :k].min() >= 0 and sb.t[b, :k].max() < 366


def test_compact_series_handles_pixel_without_observation():
    t = np.array([10.0, 20.0, 30.0])
    values = np.full((2, 3, 1), np.nan, dtype=np.float32)
    values[1, [0, 2], 0] = [1.0, 2.0]
    sb = compact_series(t, values, np.array([0.0, 5.0]))
    assert sb.t.shape == (2, 2)
    assert not sb.obs[0].any() and (sb.t[0] == 0).all()
    assert sb.obs[1].tolist() == [True, True]
    assert sb.t[1].tolist() == [5.0, 25.0] and sb.x[1, :, 0].tolist() == [1.0, 2.0]


def test_db_transform_and_floor():
    lin = np.array([1.0, 0.1, 1e-3, 1e-9, np.nan])
    db = to_db(lin)
    np.testing.assert_allclose(db[:3], [0.0, -10.0, -30.0])
    assert db[3] == pytest.approx(-50.0)  # clipped to the floor first
    assert np.isnan(db[4])
    np.testing.assert_allclose(from_db(db[:3]), lin[:3])


def test_normalisation_matches_direct_computation(pixels, dataset):
    with xr.open_dataset(pixels) as raw:
        train = raw["split"].values == "train"
        vals = raw["values_S1_DES"].values[train].reshape(-1, 2)
    db = 10 * np.log10(vals)
    stats = dataset.normalisation.sensors["S1_DES"]
    np.testing.assert_allclose(stats.mean, np.nanmean(db, axis=0), rtol=1e-6)
    np.testing.assert_allclose(stats.std, np.nanstd(db, axis=0), rtol=1e-5)
    assert stats.count.tolist() == (~np.isnan(db)).sum(axis=0).tolist()


def test_running_moments_chunked_equals_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (101, 7, 3))
    x[rng.random(x.shape) < 0.4] = np.nan
    mom = RunningMoments.zeros(3)
    for start in range(0, 101, 13):
        mom.update(x[start:start + 13])
    flat = x.reshape(-1, 3)
    np.testing.assert_allclose(mom.mean, np.nanmean(flat, axis=0), rtol=1e-12)
    np.testing.assert_allclose(mom.std, np.nanstd(flat, axis=0), rtol=1e-10)


def test_normalisation_uses_train_split_only(pixels, dataset, tmp_path):
    def scale_other_splits(ds):
        other = ds["split"].values != "train"
        for s in BANDS:
            ds[f"values_{s}"].values[other] *= 1.7

    changed = _rewrite(pixels, tmp_path / "other.nc", scale_other_splits)
    with PixelDataset(changed, BANDS) as ds:
        stats = ds.compute_normalisation("train")
    for s in BANDS:
        np.testing.assert_array_equal(stats.sensors[s].mean,
                                      dataset.normalisation.sensors[s].mean)
        np.testing.assert_array_equal(stats.sensors[s].std,
                                      dataset.normalisation.sensors[s].std)

    def scale_train(ds):
        ds["values_S2"].values[ds["split"].values == "train"] *= 1.7

    changed = _rewrite(pixels, tmp_path / "train.nc", scale_train)
    with PixelDataset(changed, BANDS) as ds:
        stats = ds.compute_normalisation("train")
    assert not np.allclose(stats.sensors["S2"].mean, dataset.normalisation.sensors["S2"].mean)


def test_normalisation_json_roundtrip(dataset, tmp_path):
    path = dataset.normalisation.save(tmp_path / "normalisation.json")
    back = Normalisation.load(path)
    for s in BANDS:
        np.testing.assert_array_equal(back.sensors[s].mean, dataset.normalisation.sensors[s].mean)
        assert back.sensors[s].bands == BANDS[s]
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="bad.json"):
        Normalisation.load(tmp_path / "bad.json")


def test_missing_sensor_or_band_is_an_input_error(tmp_path):
    path = write_pixels(tmp_path / "s2only.nc", n_samples=8, sensors=("S2",))
    with pytest.raises(InputError, match="S1_ASC") as err:
        PixelDataset(path, {"S2": S2_BANDS, "S1_ASC": S1_BANDS})
    assert "s2only.nc" in str(err.value)
    with pytest.raises(InputError, match="B99") as err:
        PixelDataset(path, {"S2": ["B02", "B99"]})
    assert "s2only.nc" in str(err.value) and "band_S2" in str(err.value)


@pytest.mark.parametrize(("sensor", "bad", "match"), [
    ("S2", np.inf, "infinite"), ("S1_ASC", 0.0, "<= 0"), ("S1_ASC", -0.01, "<= 0"),
    ("S2", 2500.0, "reflectance outside"),
])
def test_absurd_values_are_input_errors(pixels, tmp_path, sensor, bad, match):
    def poison(ds):
        values = ds[f"values_{sensor}"].values
        i, j = np.argwhere(~np.isnan(values[..., 0]))[0]
        values[i, j, 0] = bad

    path = _rewrite(pixels, tmp_path / "bad.nc", poison)
    with PixelDataset(path, {sensor: BANDS[sensor]}) as ds, \
            pytest.raises(InputError, match=match) as err:
        ds.read(sensor, np.arange(len(ds)))
    assert f"values_{sensor}" in str(err.value) and "bad.nc" in str(err.value)


def test_missing_split_coordinate(pixels, tmp_path):
    path = _rewrite(pixels, tmp_path / "nosplit.nc", lambda ds: ds.__delitem__("split"))
    with pytest.raises(InputError, match="split"):
        PixelDataset(path, {"S2": S2_BANDS})


def test_block_sampler_order_depends_on_seed_and_epoch_only():
    idx = np.arange(10, 60)
    a = BlockSampler(idx, 8, seed=1)
    b = BlockSampler(idx, 8, seed=1)
    a.set_epoch(3)
    b.set_epoch(3)
    blocks = list(a)
    assert len(blocks) == len(a) == 7
    assert all(np.array_equal(x, y) for x, y in zip(blocks, list(b), strict=True))
    assert sorted(np.concatenate(blocks).tolist()) == idx.tolist()
    b.set_epoch(4)
    assert not np.array_equal(np.concatenate(list(b)), np.concatenate(blocks))
    windowed = BlockSampler(idx, 8, seed=1, window=16)
    order = windowed.order()
    assert sorted(order.tolist()) == idx.tolist() and not np.array_equal(order, idx)
    # each window of 16 consecutive samples stays together
    assert {int(v - 10) // 16 for v in order[:16]} == {int(order[0] - 10) // 16}
    assert np.array_equal(np.concatenate(list(BlockSampler(idx, 8, shuffle=False))), idx)


def test_sensor_bands_from_config():
    assert sensor_bands_from_config({"sensors": ["S2", "S1_DES"]}) == {
        "S2": S2_BANDS, "S1_DES": S1_BANDS}
    assert sensor_bands_from_config({"sensors": ["S2"], "bands": {"S2": ["B04", "B08"]}}) == {
        "S2": ["B04", "B08"]}
    with pytest.raises(InputError, match="S3"):
        sensor_bands_from_config({"sensors": ["S3"]})
    with pytest.raises(InputError, match="sensors"):
        sensor_bands_from_config({})


def test_default_bands_are_those_present_in_the_dataset():
    present = {"S2": ["B04", "B08", "B11"]}
    assert sensor_bands_from_config({"sensors": ["S2", "S1_DES"]}, present=present) == {
        "S2": ["B04", "B08", "B11"], "S1_DES": S1_BANDS}
    # explicit bands win over what the file has
    assert sensor_bands_from_config({"sensors": ["S2"], "bands": {"S2": ["B08"]}},
                                    present=present) == {"S2": ["B08"]}


@pytest.mark.parametrize("limit", [0.0, 1e-6, 64.0])
def test_in_memory_reads_equal_file_reads(pixels, dataset, limit):
    """Batches served from the in-memory copy equal those read from the file (any order)."""
    bands = {"S2": ["B04", "B08"], "S1_DES": S1_BANDS}
    idx = np.array([17, 3, 3, 20, 0])
    expected = {s: dataset.read(s, idx)[..., dataset.sensor_bands[s].index(b)]
                for s, bs in bands.items() for b in bs[:1]}
    with PixelDataset(pixels, bands, in_memory_mb=limit) as mem:
        for sensor, first in expected.items():
            np.testing.assert_array_equal(mem.read(sensor, idx)[..., 0], first)
        assert bool(mem._cache) == (limit >= 1.0)  # the tiny limit keeps reading the file


def test_in_memory_copy_is_still_checked(pixels, tmp_path):
    def poison(ds):
        ds["values_S2"].values[2, :, 0] = 7.0  # reflectance 7: absurd

    path = _rewrite(pixels, tmp_path / "bad.nc", poison)
    with PixelDataset(path, {"S2": S2_BANDS}, in_memory_mb=64) as ds:
        ds.read("S2", np.array([0, 1]))
        with pytest.raises(InputError, match="values_S2"):
            ds.read("S2", np.array([2]))
