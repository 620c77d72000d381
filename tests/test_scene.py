"""Demo scene simulator (gpvae.scene): formats, determinism, clouds, dates, physics sanity."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import xarray as xr

import gpvae
from gpvae.errors import InputError
from gpvae.io.s1tiling import parse_s1tiling_name
from gpvae.io.theia import parse_theia_name
from gpvae.scene import clouds, phenology
from gpvae.scene.config import CLASSES, DEFAULT_SCENE, scene_config
from gpvae.scene.grid import block_mean_2x2, tile_transform, upsample_2x_bilinear
from gpvae.scene.parcels import coverage_matrix, make_parcels, parcel_raster
from gpvae.scene.simulate import simulate_tile
from gpvae.scene.spectra import ENDMEMBERS

TINY = {"size_px": 32, "years": [2022], "seed": 3}
TILES = ("T31TCJ", "T31UDQ")
JAN1_2022 = float(gpvae.to_days(np.array(["2022-01-01"], dtype="datetime64[ns]"))[0])


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, dict[str, Path]]:
    cfg = scene_config(TINY)
    root = tmp_path_factory.mktemp("scene")
    return cfg, {t: simulate_tile(cfg, t, root / t) for t in TILES}


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def s2_products(out: Path) -> list:
    return sorted((parse_theia_name(p) for p in (out / "S2").iterdir()),
                  key=lambda p: p.acquired)


def s1_images(out: Path) -> list:
    return [im for im in map(parse_s1tiling_name, sorted((out / "S1").glob("*.tif")))
            if im is not None]


def class_map(cfg: object, out: Path, tile: str) -> np.ndarray:
    gdf = gpd.read_file(out / "parcels.gpkg", layer="parcels")
    idx = parcel_raster(gdf, cfg, tile)
    return np.where(idx >= 0, gdf["class"].to_numpy()[np.maximum(idx, 0)], "road")


# ---------------------------------------------------------------- config


def test_default_config_is_complete_and_json() -> None:
    cfg = scene_config(None)
    assert json.loads(json.dumps(DEFAULT_SCENE)) == DEFAULT_SCENE
    assert cfg.years == (2022, 2023) and cfg.size_px == 128 and set(cfg.tiles) == set(TILES)
    assert cfg.tiles["T31UDQ"].phenology_shift_days > cfg.tiles["T31TCJ"].phenology_shift_days
    assert scene_config({"size_px": 64}).size_px == 64


@pytest.mark.parametrize("bad, key", [
    ({"sede": 1}, r"scene\.sede"),
    ({"size_px": 33}, r"scene\.size_px"),
    ({"size_px": "big"}, r"scene\.size_px"),
    ({"years": [2022, "x"]}, r"scene\.years"),
    ({"tiles": {"T31TCJ": {"epsg": "32631"}}}, r"scene\.tiles\.T31TCJ\.epsg"),
    ({"tiles": {"T31TCJ": {"class_weights": {"wheat": 1.0}}}},
     r"scene\.tiles\.T31TCJ\.class_weights\.wheat"),
    ({"tiles": {"T30XYZ": {"epsg": 32630}}}, r"scene\.tiles\.T30XYZ\.origin"),
    ({"noise_s2": True}, r"scene\.noise_s2"),
])
def test_config_errors_name_the_key(bad: dict, key: str) -> None:
    with pytest.raises(InputError, match=key):
        scene_config(bad)


def test_unknown_tile_raises_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="T30TXX"):
        simulate_tile(scene_config(TINY), "T30TXX", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- formats


def test_s2_products_shapes_ranges_and_grid(scene: tuple) -> None:
    cfg, outs = scene
    tcfg = cfg.tiles["T31TCJ"]
    prods = s2_products(outs["T31TCJ"])
    # 5-day revisit over one year minus ~10 % missing
    assert 60 <= len(prods) <= 70
    assert {p.platform for p in prods} == {"SENTINEL2A", "SENTINEL2B"}
    hours = np.array([p.acquired.astype("datetime64[m]").astype(int) % 1440 for p in prods])
    assert ((hours >= 630) & (hours <= 660)).all()
    p = prods[len(prods) // 2]
    with rasterio.open(p.band_file("B04")) as src:
        assert (src.height, src.width, src.dtypes[0]) == (32, 32, "int16")
        assert src.crs.to_epsg() == 32631 and src.transform == tile_transform(tcfg)
    with rasterio.open(p.band_file("B11")) as src:
        assert (src.height, src.width) == (16, 16) and src.transform.a == 20.0
    for band in ("B02", "B08", "B12"):
        dn = read(p.band_file(band))
        ok = dn != -10000
        assert ok.any() and dn[ok].min() >= 0 and dn[ok].max() <= 10000
    assert read(p.mask_file("CLM")).dtype == np.uint8


def test_partial_swath_dates_have_nodata(scene: tuple) -> None:
    cfg, outs = scene
    prods = [p for t in TILES for p in s2_products(outs[t])]
    edg = np.array([read(p.mask_file("EDG")).mean() for p in prods])
    assert 0 < (edg > 0).sum() < len(prods) / 3
    p = prods[int(np.argmax(edg))]
    assert (read(p.band_file("B04"))[read(p.mask_file("EDG")) == 1] == -10000).all()


def test_s1_images_and_dates(scene: tuple) -> None:
    cfg, outs = scene
    for tile in TILES:
        ims = s1_images(outs[tile])
        assert {im.orbit_direction for im in ims} == {"ASC", "DES"}
        assert {im.platform for im in ims} == {"s1a"} and {im.polarisation for im in ims} == {
            "VV", "VH"}
        s2_days = {p.acquired.astype("datetime64[D]") for p in s2_products(outs[tile])}
        s1_days = {im.acquired.astype("datetime64[D]") for im in ims}
        assert not s1_days & s2_days
        for d in ("ASC", "DES"):
            days = np.unique([im.acquired.astype("datetime64[D]") for im in ims
                              if im.orbit_direction == d])
            gaps = np.diff(days).astype(int)
            assert 25 <= len(days) <= 32 and np.isin(gaps, [11, 12, 13]).all()
            assert len({im.relative_orbit for im in ims if im.orbit_direction == d}) == 1
        overall = np.diff(np.unique(list(s1_days))).astype(int)
        assert overall.max() <= 12 and np.median(overall) >= 5
        im = ims[0]
        with rasterio.open(im.path) as src:
            assert src.dtypes[0] == "float32" and (src.height, src.width) == (32, 32)
            a = src.read(1)
        assert (a > 0).all() and np.isfinite(a).all()
        assert read(im.border_mask).min() == 1


def test_s1_backscatter_levels_by_class(scene: tuple) -> None:
    cfg, outs = scene
    cls = class_map(cfg, outs["T31TCJ"], "T31TCJ")
    vv = np.array([read(im.path) for im in s1_images(outs["T31TCJ"])
                   if im.polarisation == "VV"])
    vh = np.array([read(im.path) for im in s1_images(outs["T31TCJ"])
                   if im.polarisation == "VH"])

    def db(a: np.ndarray, c: str) -> float:
        return float(10 * np.log10(np.median(a[:, cls == c])))

    assert db(vv, "water") < -15 < db(vv, "maize") < db(vv, "urban")
    assert db(vh, "maize") < db(vv, "maize") - 3
    # speckle: single-date pixel values of a homogeneous parcel spread like Gamma(ENL)
    urban = vv[:, cls == "urban"]
    rel = urban / urban.mean(axis=1, keepdims=True)
    assert 0.3 < rel.std() < 0.8


def test_parcels_gpkg(scene: tuple) -> None:
    cfg, outs = scene
    frames = [gpd.read_file(outs[t] / "parcels.gpkg", layer="parcels") for t in TILES]
    for g in frames:
        assert list(g.columns[:2]) == ["parcel_id", "class"] and g.crs.to_epsg() == 32631
        assert g["parcel_id"].dtype.kind == "i" and g.geometry.is_valid.all()
    allp = gpd.pd.concat(frames)
    assert set(allp["class"]) == set(CLASSES)
    assert allp["parcel_id"].is_unique


def test_parcels_leave_roads_and_mixed_pixels() -> None:
    cfg = scene_config(None)
    gdf = make_parcels(cfg, "T31UDQ")
    w = coverage_matrix(gdf, tile_transform(cfg.tiles["T31UDQ"]), cfg.size_px)
    np.testing.assert_allclose(np.asarray(w.sum(axis=1)).ravel(), 1.0, atol=1e-9)
    mixed = np.asarray((w > 0).sum(axis=1)).ravel() > 1
    assert 0.05 < mixed.mean() < 0.6
    road = np.asarray(w[:, -1].todense()).ravel()
    assert 0.005 < road.mean() < 0.1
    # class mix follows the tile weights: UDQ has more winter cereal than sunflower
    counts = gdf["class"].value_counts()
    assert counts["winter_cereal"] > counts.get("sunflower", 0)


# ---------------------------------------------------------------- truth and clouds


def test_truth_cube(scene: tuple) -> None:
    cfg, outs = scene
    ds = xr.open_dataset(outs["T31TCJ"] / "truth_S2.nc")
    prods = s2_products(outs["T31TCJ"])
    assert ds["data"].shape == (len(prods), 10, 32, 32)
    np.testing.assert_array_equal(ds["time"].values, [p.acquired for p in prods])
    d = ds["data"].values
    assert np.isfinite(d).all() and d.min() >= 0 and d.max() <= 1
    assert ds.attrs["sensor"] == "S2" and ds.attrs["radiometry"] == "surface_reflectance"
    ds.close()


def test_clouds_present_and_mostly_flagged(scene: tuple) -> None:
    cfg, outs = scene
    ds = xr.open_dataset(outs["T31TCJ"] / "truth_S2.nc")
    truth = ds["data"].sel(band="B02").values
    ds.close()
    bright, flagged, thin_unflagged, clear_dates, overcast = 0, 0, 0, 0, 0
    for k, p in enumerate(s2_products(outs["T31TCJ"])):
        obs = read(p.band_file("B02")) / 1e4
        clm = read(p.mask_file("CLM"))
        edg = read(p.mask_file("EDG")) == 1
        delta = np.where(edg, 0.0, obs - truth[k])
        thick = delta > 0.15
        bright += thick.sum()
        flagged += (thick & (clm & 1 == 1)).sum()
        thin_unflagged += ((delta > 0.03) & (delta < 0.1) & (clm == 0)).sum()
        clear_dates += int((clm == 0).all() and (np.abs(delta) < 0.04).all())
        overcast += int((clm & 0b11 == 0b11).all() and (delta[~edg] > 0.15).all())
    assert bright > 0 and flagged / bright > 0.95
    assert thin_unflagged > 0
    assert clear_dates >= 3 and overcast >= 1


def test_clm_misses_the_faintest_thin_edges() -> None:
    rng = np.random.default_rng(0)
    layer = clouds.cloud_layer(0.4, 64, 200.0, rng)
    a = layer.alpha
    thin = (a > 0) & (a < clouds.THICK)
    for miss in (0.0, 0.3):
        clm = clouds.clm_byte(layer, miss)
        assert ((clm[a >= clouds.THICK] & 0b11) == 0b11).all()
        unflagged = thin & (clm & 0b10000 == 0)
        assert abs(unflagged.sum() / thin.sum() - miss) < 0.05
        if miss:
            assert a[unflagged].max() <= a[thin & ~unflagged].min()
    assert (layer.shadow > 0).any() and not (layer.shadow * (a >= 1)).any()


# ---------------------------------------------------------------- phenology


def ndvi_by_class(cfg: object, out: Path, tile: str) -> tuple[np.ndarray, dict]:
    ds = xr.open_dataset(out / "truth_S2.nc")
    red, nir = ds["data"].sel(band="B04").values, ds["data"].sel(band="B08").values
    times = ds["time"].values
    ds.close()
    ndvi = (nir - red) / (nir + red)
    cls = class_map(cfg, out, tile)
    return times, {c: ndvi[:, cls == c].mean(axis=1) for c in CLASSES if (cls == c).any()}


def test_phenology_peaks_in_the_right_season(scene: tuple) -> None:
    cfg, outs = scene
    for tile in TILES:
        times, nd = ndvi_by_class(cfg, outs[tile], tile)
        month = times.astype("datetime64[M]").astype(int) % 12 + 1
        peak = {c: month[np.argmax(v)] for c, v in nd.items()}
        assert 3 <= peak["winter_cereal"] <= 5, peak
        assert 6 <= peak["maize"] <= 9, peak
        assert 6 <= peak["deciduous_forest"] <= 9 or nd["deciduous_forest"][
            (month >= 6) & (month <= 8)].mean() > nd["deciduous_forest"][month <= 2].mean() + 0.2
        assert nd["maize"].max() > 0.75 and nd["maize"][month <= 3].mean() < 0.4
        assert nd["water"].max() < 0
        assert np.ptp(nd["urban"]) < 0.05


def test_rapeseed_flowering_is_yellow() -> None:
    ph = phenology.draw_phenology(np.array(["rapeseed"] * 50), (2022,), 0.0, {},
                                  np.random.default_rng(1))
    doy = np.arange(40.0, 170.0)
    fr = phenology.cover_fractions(ph, JAN1_2022 + doy)
    peak = doy[np.argmax(fr.flower, axis=1)]
    assert ((peak >= 88) & (peak <= 125)).all() and (fr.flower.max(axis=1) > 0.15).all()
    assert fr.flower[:, doy == 60].max() < 0.05
    # flowers raise green and red reflectance over the green canopy (yellow)
    assert (ENDMEMBERS["flower"][1:3] > 2 * ENDMEMBERS["green"][1:3]).all()


def test_tile_shift_delays_green_up() -> None:
    classes = np.array(["winter_cereal"] * 200)
    t = JAN1_2022 + np.arange(0.0, 180.0)
    half = []
    for shift in (0.0, 12.0):
        ph = phenology.draw_phenology(classes, (2022,), shift, {}, np.random.default_rng(5))
        g = phenology.cover_fractions(ph, t).green
        half.append(np.argmax(g > 0.6, axis=1).mean())
    assert 10.0 < half[1] - half[0] < 14.0


def test_resampling_helpers() -> None:
    a = np.random.default_rng(2).random((3, 8, 8))
    b = block_mean_2x2(a)
    assert b.shape == (3, 4, 4) and np.isclose(b[1, 2, 3], a[1, 4:6, 6:8].mean())
    # bilinear (pixel-centre aligned) reproduces a linear ramp exactly away from the edges
    i, j = np.mgrid[0:4, 0:4].astype(float)
    up = upsample_2x_bilinear(i + 2 * j)
    k, m = np.mgrid[0:8, 0:8].astype(float)
    ramp = (k / 2 - 0.25) + 2 * (m / 2 - 0.25)
    np.testing.assert_allclose(up[1:-1, 1:-1], ramp[1:-1, 1:-1], atol=1e-12)
    np.testing.assert_allclose(upsample_2x_bilinear(np.full((4, 4), 0.2)), 0.2)


# ---------------------------------------------------------------- determinism


def test_same_seed_same_files_other_seed_differs(scene: tuple, tmp_path: Path) -> None:
    cfg, outs = scene
    again = simulate_tile(cfg, "T31TCJ", tmp_path / "again")
    for rel in ("truth_S2.nc",):
        a = xr.open_dataset(outs["T31TCJ"] / rel)["data"].values
        b = xr.open_dataset(again / rel)["data"].values
        np.testing.assert_array_equal(a, b)
    names = sorted(p.name for p in (again / "S2").iterdir())
    assert names == sorted(p.name for p in (outs["T31TCJ"] / "S2").iterdir())
    for name in names[::10]:
        p, q = outs["T31TCJ"] / "S2" / name, again / "S2" / name
        for f in (f"{name}_FRE_B4.tif", f"{name}_FRE_B11.tif", f"MASKS/{name}_CLM_R1.tif"):
            np.testing.assert_array_equal(read(p / f), read(q / f))
    s1 = sorted(p.name for p in (again / "S1").glob("*.tif"))
    assert s1 == sorted(p.name for p in (outs["T31TCJ"] / "S1").glob("*.tif"))
    np.testing.assert_array_equal(read(again / "S1" / s1[0]), read(outs["T31TCJ"] / "S1" / s1[0]))
    other = simulate_tile(scene_config({**TINY, "seed": 4}), "T31TCJ", tmp_path / "other")
    c = xr.open_dataset(other / "truth_S2.nc")["data"].values
    assert c.shape[1:] != a.shape[1:] or not np.array_equal(c[: len(a)], a[: len(c)])
