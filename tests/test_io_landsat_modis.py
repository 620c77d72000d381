"""Landsat 8/9 C2 L2 products and AppEEARS MOD13Q1 GeoTIFFs: the demo simulator writes them
in the real layouts, the readers warp them onto the tile's grid at their resolution, the
sample stage and tile maps read each 10 m pixel's cell."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import rasterio
import xarray as xr

from gpvae.errors import InputError
from gpvae.evaluate.tile_inputs import TileInputs
from gpvae.io.appeears import APPEEARS_NAME
from gpvae.io.coarse import cells_of
from gpvae.io.cube import cube_grid, open_cube
from gpvae.io.landsat import LANDSAT_ID, find_landsat_products
from gpvae.io.readers import extract_cube
from gpvae.preprocess.mask import compute_mask
from gpvae.preprocess.sample import sample_pixels
from gpvae.scene.config import scene_config
from gpvae.scene.grid import block_mean
from gpvae.scene.landsat import FROM_S2 as LANDSAT_FROM_S2
from gpvae.scene.modis import FROM_S2 as MODIS_FROM_S2
from gpvae.scene.simulate import build_landscape, simulate_tile, surface_reflectance

TILE = "T31TCJ"
S2_ORDER = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 32 x 32 px, one-year demo tile with Landsat and MODIS, and its S2, LANDSAT and
    MOD13Q1 cubes and masks."""
    root = tmp_path_factory.mktemp("coarse")
    cfg = scene_config({"seed": 5, "years": [2022], "size_px": 32, "landsat": True,
                        "modis": True, "min_parcels": 12, "tiles": {TILE: {}}})
    simulate_tile(cfg, TILE, root / TILE)
    cubes = {}
    for sensor, fmt, folder in (("S2", "theia", "S2"), ("LANDSAT", "landsat", "LANDSAT"),
                                ("MOD13Q1", "appeears", "MODIS")):
        opts = {"grid": root / "S2.nc"} if fmt != "theia" else {}
        cubes[sensor] = extract_cube(fmt, sensor, root / TILE / folder, TILE,
                                     root / f"{sensor}.nc", options=opts)
        compute_mask(cubes[sensor], root / f"{sensor}_mask.nc", root / f"{sensor}.csv",
                     dilation_px=1 if sensor == "S2" else 0)
    return cfg, root, cubes


def test_products_follow_the_real_layouts(scene):
    _, root, _ = scene
    products = sorted((root / TILE / "LANDSAT").iterdir())
    assert products and all(LANDSAT_ID.match(p.name) for p in products)
    first = products[0]
    names = {f.name.removeprefix(first.name + "_") for f in first.iterdir()}
    assert names == {f"SR_B{i}.TIF" for i in range(1, 8)} | {"QA_PIXEL.TIF", "QA_RADSAT.TIF",
                                                            "MTL.xml"}
    with rasterio.open(first / f"{first.name}_SR_B4.TIF") as src:
        assert src.dtypes[0] == "uint16" and src.res == (30.0, 30.0) and src.nodata == 0
    platforms = {p.name[:4] for p in products}
    assert platforms == {"LC08", "LC09"}
    days = np.array([np.datetime64(f"{p.name[17:21]}-{p.name[21:23]}-{p.name[23:25]}")
                     for p in products])
    assert set(np.diff(np.sort(days)).astype(int)) == {8}  # L8, L9: 16 days each, 8 apart
    modis = sorted((root / TILE / "MODIS").iterdir())
    assert all(APPEEARS_NAME.match(f.name) for f in modis)
    assert len(modis) == 23 * 7  # 23 composites x (6 layers + reliability)
    with rasterio.open(modis[0]) as src:
        assert "sinu" in src.crs.to_proj4() and src.res[0] == pytest.approx(231.656, abs=1e-3)


def test_landsat_cube_is_the_30m_mean_of_the_surface(scene):
    cfg, root, cubes = scene
    s2, ls = open_cube(cubes["S2"]), open_cube(cubes["LANDSAT"])
    (_, t2, _, _), (_, t30, h30, w30) = cube_grid(s2), cube_grid(ls)
    assert (t30.a, t30.c, t30.f) == (30.0, t2.c, t2.f) and (h30, w30) == (11, 11)
    assert ls.attrs["quality_kind"] == "boolean"
    assert set(ls["platform"].values) == {"LANDSAT_8", "LANDSAT_9"}
    land = build_landscape(cfg, TILE)
    truth = surface_reflectance(land, ls["time"].values, 32)  # (T, S2 band, 32, 32)
    index = [S2_ORDER.index(b) for b in LANDSAT_FROM_S2.values()]
    expected = block_mean(truth[:, index], 3)  # (T, 7, 11, 11)
    data, valid = ls["data"].values, ls["valid"].values.astype(bool)
    clear = valid & (ls["quality"].values == 0)
    diff = np.abs(data - expected).transpose(0, 2, 3, 1)[clear]
    assert clear.mean() > 0.2
    assert np.median(diff) < 0.006  # noise 0.004 and DN rounding; thin clouds unflagged
    cloudy = valid & (ls["quality"].values == 1)
    assert cloudy.any()
    assert np.median(np.abs(data - expected).transpose(0, 2, 3, 1)[cloudy]) > 0.02
    s2.close(), ls.close()


def test_landsat_tar_and_mtl_scale(scene, tmp_path):
    """A .tar product reads as its folder; the MTL's REFLECTANCE_MULT/ADD are applied."""
    from gpvae.io.landsat import write_landsat_product

    _, root, cubes = scene
    crs, transform = rasterio.crs.CRS.from_epsg(32631), rasterio.Affine(30, 0, 330000, 0,
                                                                        -30, 4840000)
    refl = {f"SR_B{i}": np.full((4, 4), 0.1 * i, np.float32) for i in range(1, 8)}
    qa = np.full((4, 4), 1 << 6, np.uint16)
    kw = dict(spacecraft=9, wrs_path=199, wrs_row=30, reflectance=refl, qa_pixel=qa,
              qa_radsat=np.zeros_like(qa), crs=crs.to_wkt(), transform=transform)
    write_landsat_product(tmp_path / "p", acquired=np.datetime64("2022-05-01T10:30"), **kw)
    write_landsat_product(tmp_path / "p", acquired=np.datetime64("2022-05-09T10:30"),
                          tar=True, **kw)
    products = find_landsat_products(tmp_path / "p")
    assert [p.location.suffix for p in products] == ["", ".tar"]
    out = extract_cube("landsat", "LANDSAT", tmp_path / "p", TILE, tmp_path / "ls.nc")
    with open_cube(out) as ds:
        v = ds["data"].values
        assert ds["time"].values.astype("datetime64[m]").tolist()[0].hour == 10
    np.testing.assert_allclose(v[0], v[1])
    np.testing.assert_allclose(v[0, :, 0, 0], 0.1 * np.arange(1, 8), atol=3e-5)
    mtl = products[0].location / f"{products[0].product_id}_MTL.xml"
    mtl.write_text(mtl.read_text().replace("<REFLECTANCE_ADD_BAND_4>-0.200000",
                                           "<REFLECTANCE_ADD_BAND_4>-0.100000"))
    out = extract_cube("landsat", "LANDSAT", tmp_path / "p", TILE, tmp_path / "ls2.nc")
    with open_cube(out) as ds:
        assert float(ds["data"].values[0, 3, 0, 0]) == pytest.approx(0.5, abs=3e-5)
    shutil.rmtree(tmp_path / "p")
    (tmp_path / "p").mkdir()
    with pytest.raises(InputError, match="no Landsat Collection 2"):
        extract_cube("landsat", "LANDSAT", tmp_path / "p", TILE, tmp_path / "ls3.nc")


def test_modis_cube_is_warped_to_250m_with_the_reliability(scene):
    cfg, _, cubes = scene
    with open_cube(cubes["MOD13Q1"]) as md, open_cube(cubes["S2"]) as s2:
        _, t250, h, w = cube_grid(md)
        assert (t250.a, t250.c, t250.f) == (250.0, cube_grid(s2)[1].c, cube_grid(s2)[1].f)
        assert (h, w) == (2, 2)
        days = md["time"].values.astype("datetime64[D]")
        assert days[0] == np.datetime64("2022-01-09")  # composite of day 1, given day 9
        assert (np.diff(days).astype(int) == 16).all()
        assert md.attrs["quality_kind"] == "classes" and md.attrs["quality_invalid"] == "[2, 3]"
        ndvi = md["data"].sel(band="NDVI").values
        land = build_landscape(cfg, TILE)
        truth = surface_reflectance(land, md["time"].values, 32)
        red, nir = (truth[:, S2_ORDER.index(MODIS_FROM_S2[b])] for b in ("RED", "NIR"))
        cell_ndvi = block_mean((nir - red) / (nir + red), 25)  # the 250 m cells of the tile
        ok = md["valid"].values.astype(bool) & (md["quality"].values == 0)
        assert ok.mean() > 0.5
        # a composite's day is within 8 days of its date and the warp mixes the sinusoidal
        # pixels: close to the cells' NDVI, not equal
        r = np.corrcoef(ndvi[ok], cell_ndvi[ok])[0, 1]
        assert r > 0.8 and np.median(np.abs(ndvi[ok] - cell_ndvi[ok])) < 0.08


def test_pixels_read_their_cells_in_samples_and_tile_maps(scene, tmp_path):
    _, root, cubes = scene
    sensors = ["S2", "LANDSAT", "MOD13Q1"]
    inputs = {TILE: {"cubes": {s: str(cubes[s]) for s in sensors},
                     "masks": {s: str(root / f"{s}_mask.nc") for s in sensors},
                     "parcels": str(root / TILE / "parcels.gpkg"), "truth": None,
                     "region": TILE}}
    out = sample_pixels(inputs, tmp_path / "pixels.nc", class_field="class",
                        id_field="parcel_id", per_class=40, per_parcel_cap=20, erosion_px=0,
                        split_fractions={"train": 0.5, "val": 0.5, "test": 0.0}, seed=0)
    ds = xr.open_dataset(out)
    assert {"cell_LANDSAT", "cell_MOD13Q1"} <= set(ds.coords)
    rows, cols = ds["row"].values, ds["col"].values
    with open_cube(cubes["S2"]) as s2, open_cube(cubes["LANDSAT"]) as ls:
        r, c, inside = cells_of(cube_grid(s2), cube_grid(ls), rows, cols)
    assert inside.all()
    ids = ds["cell_LANDSAT"].values
    assert np.array_equal(ids % (1 << 40), r * 11 + c)
    values = ds["values_MOD13Q1"].values
    for cell in np.unique(ds["cell_MOD13Q1"].values):  # one series per cell
        same = values[ds["cell_MOD13Q1"].values == cell]
        np.testing.assert_array_equal(np.isnan(same), np.isnan(same[:1]).repeat(len(same), 0))
        np.testing.assert_array_equal(np.nan_to_num(same), np.nan_to_num(same[:1]).repeat(
            len(same), 0))
    bands = {s: list(ds[f"band_{s}"].values) for s in sensors}
    with TileInputs({s: cubes[s] for s in sensors},
                    {s: root / f"{s}_mask.nc" for s in sensors}, bands) as tiles:
        window = tiles.window(slice(0, 32), slice(0, 32))
        for s in ("LANDSAT", "MOD13Q1"):
            got = window[s][rows * 32 + cols]
            np.testing.assert_array_equal(np.nan_to_num(got), np.nan_to_num(
                ds[f"values_{s}"].values))
    ds.close()
