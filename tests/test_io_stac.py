"""STAC input: a static catalog of small S2 L2A COGs, read locally and over HTTP ranges."""

from __future__ import annotations

import datetime as dt
import functools
import http.server
import os
import re
import threading

import affine
import numpy as np
import pytest
import rasterio

from gpvae.errors import InputError
from gpvae.io.cube import open_cube
from gpvae.io.stac import EARTH_SEARCH_KEYS, extract_stac

pystac = pytest.importorskip("pystac")
from example_fixtures import save_catalog  # noqa: E402

H = W = 32
CRS = "EPSG:32631"
T10 = affine.Affine(10.0, 0.0, 400000.0, 0.0, -10.0, 5100000.0)
BANDS = ["B03", "B04", "B08", "B8A", "B12"]


def write_cog(path, array, transform):
    with rasterio.open(path, "w", driver="COG", height=array.shape[0], width=array.shape[1],
                       count=1, dtype=array.dtype.name, crs=CRS, transform=transform,
                       BLOCKSIZE=16) as dst:
        dst.write(array, 1)


def make_item(root, day: str, baseline: str, seed: int, *, drop: str | None = None,
              tile=("31", "T", "CJ")):
    """An Earth-search-like item: COG per band (DN with the baseline's +1000 offset)."""
    rng = np.random.default_rng(seed)
    item_id = f"S2B_{tile[0]}{tile[1]}{tile[2]}_{day.replace('-', '')}_0_L2A"
    folder = root / item_id
    folder.mkdir()
    truth = {}
    add = 1000 if float(baseline) >= 4 else 0
    item = pystac.Item(id=item_id, geometry=None, bbox=None, properties={
        "platform": "sentinel-2b", "s2:processing_baseline": baseline,
        "earthsearch:boa_offset_applied": True,  # wrong on purpose: must be ignored
        "mgrs:utm_zone": int(tile[0]), "mgrs:latitude_band": tile[1],
        "mgrs:grid_square": tile[2], "sat:relative_orbit": 8},
        datetime=dt.datetime.fromisoformat(day + "T10:40:00+00:00"),
        collection="sentinel-2-l2a")
    for band in [*BANDS, "SCL"]:
        key = EARTH_SEARCH_KEYS[band]
        if key == drop:
            continue
        n = H if band in ("B03", "B04", "B08") else H // 2
        transform = T10 if n == H else T10 @ affine.Affine.scale(2)
        if band == "SCL":
            arr = rng.choice([4, 5, 8, 9], (n, n)).astype(np.uint8)
        else:
            dn = rng.integers(100, 6000, (n, n))
            truth[band] = dn / 10000.0
            arr = (dn + add).astype(np.uint16)
        write_cog(folder / f"{band}.tif", arr, transform)
        item.add_asset(key, pystac.Asset(href=f"./{band}.tif",
                                         media_type=pystac.MediaType.COG, roles=["data"]))
    return item, truth


def make_catalog(root, *, drop=None):
    root.mkdir(exist_ok=True)
    cat = pystac.Catalog(id="test", description="small S2 L2A COGs")
    truths = {}
    for day, baseline, seed in (("2023-05-10", "05.09", 1), ("2023-05-02", "03.01", 2),
                                ("2023-06-20", "05.10", 3)):
        item, truth = make_item(root, day, baseline, seed, drop=drop if seed == 1 else None)
        cat.add_item(item)
        truths[day] = truth
    other, _ = make_item(root, "2023-05-12", "05.09", 4, tile=("32", "U", "LU"))
    cat.add_item(other)
    return save_catalog(cat, root), truths


def check_cube(ds, truths):
    assert list(ds.time.values.astype("datetime64[D]").astype(str)) == ["2023-05-02",
                                                                          "2023-05-10"]
    assert list(ds.band.values) == BANDS and ds.attrs["reader"] == "stac"
    assert ds.attrs["quality_kind"] == "scl"
    assert set(ds.platform.values) == {"SENTINEL2B"} and set(ds.relative_orbit.values) == {8}
    for t, day in enumerate(("2023-05-02", "2023-05-10")):
        # 10 m bands exact: the +1000 DN offset of baseline 05.09 is removed, none for 03.01
        np.testing.assert_allclose(ds.data.sel(band="B04").values[t], truths[day]["B04"],
                                   atol=1e-6)
        b12 = ds.data.sel(band="B12").values[t]
        assert truths[day]["B12"].min() - 1e-6 <= np.nanmin(b12)
        assert np.nanmax(b12) <= truths[day]["B12"].max() + 1e-6
    assert set(np.unique(ds.quality.values)) <= {4, 5, 8, 9}


def test_static_catalog_local_files(tmp_path):
    catalog, truths = make_catalog(tmp_path / "stac")
    ds = open_cube(extract_stac(str(catalog), "T31TCJ", tmp_path / "S2.nc", bands=BANDS,
                                end="2023-05-31"))
    check_cube(ds, truths)


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single-range ``Range: bytes=a-b`` support (HTTP 206)."""

    ranges_served: list[str] = []

    def send_head(self):
        rng = self.headers.get("Range")
        path = self.translate_path(self.path)
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng or "")
        if m is None or not os.path.isfile(path):
            self._remaining = None
            return super().send_head()
        size = os.path.getsize(path)
        if m[1]:
            start, end = int(m[1]), min(int(m[2]) if m[2] else size - 1, size - 1)
        else:
            start, end = max(0, size - int(m[2])), size - 1
        f = open(path, "rb")  # noqa: SIM115 (closed by the base class)
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self._remaining = end - start + 1
        RangeHandler.ranges_served.append(self.path)
        return f

    def copyfile(self, source, outputfile):
        if self._remaining is None:
            return super().copyfile(source, outputfile)
        outputfile.write(source.read(self._remaining))

    def log_message(self, *args):
        pass


@pytest.fixture
def http_root(tmp_path, monkeypatch):
    """Serve tmp_path on 127.0.0.1 (free port); the server stops at teardown."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR")
    handler = functools.partial(RangeHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_static_catalog_over_http_range_reads(tmp_path, http_root):
    _, truths = make_catalog(tmp_path / "stac")
    RangeHandler.ranges_served.clear()
    ds = open_cube(extract_stac(f"{http_root}/stac/catalog.json", "T31TCJ",
                                tmp_path / "S2.nc", bands=BANDS, end="2023-05-31"))
    check_cube(ds, truths)
    assert any(p.endswith(".tif") for p in RangeHandler.ranges_served)
    assert "http://127.0.0.1" in ds.attrs["source_files"]


def test_item_missing_an_asset(tmp_path):
    catalog, _ = make_catalog(tmp_path / "stac", drop="nir08")
    with pytest.raises(InputError, match="no asset for band B8A") as err:
        extract_stac(str(catalog), "T31TCJ", tmp_path / "S2.nc", bands=BANDS)
    assert "nir08" in str(err.value)
    assert not (tmp_path / "S2.nc").exists()
    # without that band the catalog reads fine
    ds = open_cube(extract_stac(str(catalog), "T31TCJ", tmp_path / "S2.nc",
                                bands=["B04", "B12"]))
    assert ds.sizes["time"] == 3


def test_unknown_tile_and_collection(tmp_path):
    catalog, _ = make_catalog(tmp_path / "stac")
    with pytest.raises(InputError, match="no STAC item of T30TXM"):
        extract_stac(str(catalog), "T30TXM", tmp_path / "S2.nc")
    with pytest.raises(InputError, match="collection landsat"):
        extract_stac(str(catalog), "T31TCJ", tmp_path / "S2.nc", collection="landsat")
    ds = open_cube(extract_stac(str(catalog), "32ULU", tmp_path / "S2.nc", bands=["B04"],
                                collection="sentinel-2-l2a"))
    assert ds.sizes["time"] == 1


def test_stac_api_search_through_pystac_client(tmp_path, monkeypatch):
    pystac_client = pytest.importorskip("pystac_client")
    catalog, truths = make_catalog(tmp_path / "stac")
    items = list(pystac.read_file(str(catalog)).get_items(recursive=True))
    calls = {}

    class FakeSearch:
        def items(self):
            return iter(items)

    class FakeClient:
        def search(self, **kw):
            calls.update(kw)
            return FakeSearch()

    monkeypatch.setattr(pystac_client.Client, "open", staticmethod(lambda url: FakeClient()))
    ds = open_cube(extract_stac("https://stac.example/v1", "T31TCJ", tmp_path / "S2.nc",
                                bands=BANDS, start="2023-05-01", end="2023-05-31",
                                collection="sentinel-2-l2a"))
    check_cube(ds, truths)
    assert calls["collections"] == ["sentinel-2-l2a"]
    assert calls["datetime"] == "2023-05-01/2023-05-31"
    assert calls["query"]["mgrs:grid_square"] == {"eq": "CJ"}
