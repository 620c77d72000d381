"""Sample tables (wide / long, parquet / CSV) straight to the pixel dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpvae.errors import InputError
from gpvae.io.pixels import open_pixels
from gpvae.io.sar import encode_db_uint16, linear_to_db
from gpvae.io.table_cells import dates
from gpvae.preprocess.table import table_to_pixels

WORLDCEREAL = (Path(__file__).parents[2] / "shared" / "data" / "real" / "worldcereal"
               / "worldcereal_public_extractions_2017.parquet")
SPLITS = {"train": 0.6, "val": 0.2, "test": 0.2}
TRAIN_VAL = {"train": 0.5, "val": 0.5, "test": 0.0}
WC_COLUMNS = {"x": "lon", "y": "lat", "label": "sampling_label", "tile": "tile",
              "year": "year", "bands": {
                  "S2": r"OPTICAL-(?P<band>B\w+)-ts(?P<t>\d+)-\d+m",
                  "S1_DES": r"SAR-(?P<band>V[VH])-ts(?P<t>\d+)-\d+m"}}
WC_ENCODING = {"S2": {"scale": 1e-4, "nodata": [65535]}, "S1_DES": {"sar_units": "db_uint16"}}


def worldcereal() -> Path:
    if not WORLDCEREAL.is_file():
        pytest.skip(f"real data absent: {WORLDCEREAL}")
    return WORLDCEREAL


def test_worldcereal_wide_parquet(tmp_path):
    src = worldcereal()
    out = table_to_pixels(src, tmp_path / "pixels.nc", layout="wide", columns=WC_COLUMNS,
                          encoding=WC_ENCODING, time_origin="start_date", time_step="1M",
                          split_fractions=SPLITS, seed=3, clip_to_year=False)
    ds = open_pixels(out)
    df = pd.read_parquet(src)
    assert ds.sizes["sample"] == len(df) == 500
    assert ds.attrs["sensors"] == "S2 S1_DES"
    assert list(ds.band_S2.values) == ["B02", "B03", "B04", "B05", "B06", "B07", "B08",
                                       "B8A", "B11", "B12"]
    # 12 monthly composites from start_date 2016-12-01
    t = ds.time_S2.values.astype("datetime64[M]").astype(str)
    assert t[0] == "2016-12" and t[-1] == "2017-11" and len(t) == 12
    # reflectance = DN / 10000, 65535 = missing
    dn = df["OPTICAL-B04-ts3-10m"].to_numpy().astype(float)
    got = ds.values_S2.sel(band_S2="B04").values[:, 3]
    np.testing.assert_allclose(got[dn != 65535], dn[dn != 65535] / 1e4, rtol=1e-6)
    assert np.isnan(got[dn == 65535]).all()
    s2 = ds.values_S2.values
    assert 0 < np.nanpercentile(s2, 1) and np.nanpercentile(s2, 99) < 1.0
    # S1: dB = 20 log10(DN) - 83; plausible median backscatter, VV above VH
    vv_dn = df["SAR-VV-ts5-20m"].to_numpy().astype(float)
    vv = ds.values_S1_DES.sel(band_S1_DES="VV").values[:, 5]
    ok = (vv_dn > 0) & (vv_dn < 65535)
    np.testing.assert_allclose(linear_to_db(vv[ok]), 20 * np.log10(vv_dn[ok]) - 83,
                               atol=1e-3)
    vv_db = np.nanmedian(linear_to_db(ds.values_S1_DES.sel(band_S1_DES="VV").values))
    vh_db = np.nanmedian(linear_to_db(ds.values_S1_DES.sel(band_S1_DES="VH").values))
    assert -20 < vv_db < -5 and vh_db < vv_db - 3
    # labels index class_name; splits stratified, every split present
    names = ds.class_name.values[ds.label.values]
    np.testing.assert_array_equal(names, df["sampling_label"].to_numpy().astype(str))
    assert set(ds.split.values) == {"train", "val", "test"}
    sorghum = names == "sorghum"
    frac = (ds.split.values[sorghum] == "train").mean()
    assert abs(frac - 0.6) < 0.05
    assert (ds.row.values == -1).all() and set(ds.year.values) == {2017}


def test_worldcereal_clip_to_year_and_unknown_classes(tmp_path):
    src = worldcereal()
    ds = open_pixels(table_to_pixels(
        src, tmp_path / "p.nc", layout="wide", columns=WC_COLUMNS, encoding=WC_ENCODING,
        time_origin="start_date", split_fractions=SPLITS, seed=0))
    # the contract's rule: values outside the sample's year (December 2016) are NaN
    assert np.isnan(ds.values_S2.values[:, 0]).all()
    assert np.isfinite(ds.values_S2.values[:, 1:]).any()
    with pytest.raises(InputError, match="class codes not in classes") as err:
        table_to_pixels(src, tmp_path / "q.nc", layout="wide", columns=WC_COLUMNS,
                        encoding=WC_ENCODING, time_origin="start_date",
                        split_fractions=SPLITS, seed=0, classes=["sorghum", "maize"])
    assert "sampling_label" in str(err.value)
    assert not (tmp_path / "q.nc").exists()


def long_table(rng, n_samples=12):
    """A long CSV: one row per (sample, date), 10-day dates, S2 red/nir + linear VV/VH."""
    days = pd.date_range("2021-01-05", "2021-12-25", freq="10D")
    rows = []
    for i in range(n_samples):
        for d in days[rng.random(len(days)) < 0.8]:  # missing dates per sample
            rows.append({"pid": f"P{i // 2}", "sid": i, "date": d.date().isoformat(),
                         "cls": ["wheat", "maize", "rapeseed"][i % 3],
                         "E": 500000.0 + 10 * i, "N": 4000000.0 - 10 * i,
                         "red": rng.uniform(0.02, 0.2), "nir": rng.uniform(0.2, 0.5),
                         "vv": rng.uniform(0.01, 0.2), "vh": rng.uniform(0.002, 0.05)})
    return pd.DataFrame(rows)


LONG_COLUMNS = {"sample_id": "sid", "time": "date", "x": "E", "y": "N", "label": "cls",
                "parcel_id": "pid", "bands": {"S2": {"B04": "red", "B08": "nir"},
                                              "S1_ASC": {"VV": "vv", "VH": "vh"}}}


def test_long_csv(tmp_path):
    df = long_table(np.random.default_rng(0))
    src = tmp_path / "series.csv"
    df.to_csv(src, index=False)
    # 6 parcels of mixed classes: grouped by parcel, each class gets 2 groups, too few for a
    # test split (an empty split stops the table stage), so this table splits train/val only
    ds = open_pixels(table_to_pixels(src, tmp_path / "p.nc", layout="long",
                                     columns=LONG_COLUMNS, split_fractions=TRAIN_VAL, seed=1,
                                     classes=["wheat", "maize", "rapeseed"]))
    assert ds.sizes["sample"] == 12 and list(ds.band_S2.values) == ["B04", "B08"]
    assert list(ds.class_name.values) == ["wheat", "maize", "rapeseed"]
    # every (sample, date, band) value lands in its cell; absent dates stay NaN
    times = ds.time_S2.values
    for i in (0, 5, 11):
        sub = df[df.sid == i]
        pos = np.searchsorted(times, pd.to_datetime(sub.date).to_numpy())
        np.testing.assert_allclose(ds.values_S2.values[i, pos, 1], sub.nir, rtol=1e-6)
        np.testing.assert_allclose(ds.values_S1_ASC.values[i, pos, 0], sub.vv, rtol=1e-6)
        assert np.isnan(np.delete(ds.values_S2.values[i, :, 0], pos)).all()
    # both pixels of a parcel share a split; year from the dates
    for p in range(6):
        assert len(set(ds.split.values[2 * p:2 * p + 2])) == 1
    assert set(ds.year.values) == {2021}
    np.testing.assert_allclose(ds.x.values, 500000.0 + 10 * np.arange(12))


def test_long_table_s1_in_db_where_linear_expected(tmp_path):
    df = long_table(np.random.default_rng(2))
    df["vv"] = 10 * np.log10(df["vv"])
    src = tmp_path / "series.csv"
    df.to_csv(src, index=False)
    with pytest.raises(InputError, match="look like backscatter in dB") as err:
        table_to_pixels(src, tmp_path / "p.nc", layout="long", columns=LONG_COLUMNS,
                        split_fractions=SPLITS, seed=1)
    assert "vv" in str(err.value)


def test_wide_csv_uint16_db_with_day_steps(tmp_path):
    rng = np.random.default_rng(4)
    lin = rng.uniform(0.005, 0.3, (6, 5))
    df = pd.DataFrame({"id": range(6), "lon": 1.0, "lat": 2.0, "crop": ["a", "b"] * 3,
                       "t0": ["2020-03-01", "2020-03-03"] * 3})
    for t in range(5):
        df[f"VV_{t}"] = encode_db_uint16(lin[:, t])
    src = tmp_path / "wide.csv"
    df.to_csv(src, index=False)
    ds = open_pixels(table_to_pixels(
        src, tmp_path / "p.nc", layout="wide",
        columns={"x": "lon", "y": "lat", "label": "crop",
                 "bands": {"S1_ASC": r"(?P<band>VV)_(?P<t>\d)"}},
        encoding={"S1_ASC": {"sar_units": "db_uint16"}}, time_origin="t0", time_step="12D",
        split_fractions=SPLITS, seed=0))
    # per-sample origins: the time axis is the union of both schedules
    assert ds.sizes["time_S1_ASC"] == 10
    first = ds.values_S1_ASC.values[0, :, 0]
    assert np.isfinite(first).sum() == 5
    np.testing.assert_allclose(first[np.isfinite(first)], lin[0], rtol=2e-4)


def test_bad_layout_and_missing_column(tmp_path):
    src = tmp_path / "t.csv"
    long_table(np.random.default_rng(0)).to_csv(src, index=False)
    with pytest.raises(InputError, match="layout"):
        table_to_pixels(src, tmp_path / "p.nc", layout="tall", columns=LONG_COLUMNS,
                        split_fractions=SPLITS, seed=0)
    bad = {**LONG_COLUMNS, "x": "easting"}
    with pytest.raises(InputError, match="'easting'"):
        table_to_pixels(src, tmp_path / "p.nc", layout="long", columns=bad,
                        split_fractions=SPLITS, seed=0)


# ---- any band, optional roles, groups, spans --------------------------------------------------
def index_table(rng, n_points=6, seasons=(2019, 2020)):
    """A long table of a MODIS-like index product: NDVI / EVI every 16 days over Sep-Aug
    seasons, several seasons per point, no x/y, a few rows without a label."""
    rows = []
    for p in range(n_points):
        for s, season in enumerate(seasons):
            dates = pd.date_range(f"{season}-09-14", f"{season + 1}-08-31", freq="16D")
            for d in dates:
                rows.append({"sid": f"{p}-{season}", "point": p, "season": s,
                             "date": d.date().isoformat(),
                             "label": None if p == 0 else ["soy", "pasture"][p % 2],
                             "ndvi": rng.uniform(0.2, 0.9), "evi": rng.uniform(0.1, 0.6)})
    return pd.DataFrame(rows)


INDEX_COLUMNS = {"sample_id": "sid", "time": "date", "label": "label", "group": "point",
                 "bands": {"MOD13Q1": {"NDVI": "ndvi", "EVI": "evi"}}}


def test_index_bands_groups_unlabelled_rows_and_season_spans(tmp_path):
    df = index_table(np.random.default_rng(0))
    src = tmp_path / "modis.parquet"
    df.to_parquet(src)
    ds = open_pixels(table_to_pixels(src, tmp_path / "p.nc", layout="long",
                                     columns=INDEX_COLUMNS, split_fractions=SPLITS, seed=0,
                                     span={"span": "season", "season_start": "09-01"}))
    assert ds.attrs["sensors"] == "MOD13Q1" and list(ds.band_MOD13Q1.values) == ["NDVI", "EVI"]
    assert ds.sizes["sample"] == 12
    # unlabelled rows: label -1, no class of their own
    assert list(ds.class_name.values) == ["pasture", "soy"]
    sid = pd.factorize(df["sid"])[1]
    assert (ds.label.values[np.asarray([s.startswith("0-") for s in sid])] == -1).all()
    assert (ds.label.values[np.asarray([not s.startswith("0-") for s in sid])] >= 0).all()
    # x / y absent: NaN; each point's seasons in one split
    assert np.isnan(ds.x.values).all() and np.isnan(ds.y.values).all()
    points = np.array([int(s.split("-")[0]) for s in sid])
    for p in range(6):
        assert len(set(ds.split.values[points == p])) == 1
    # season spans: origin Sep 1, year = the season's end year; every date inside
    start = ds.start.values.astype("datetime64[D]").astype(str)
    assert set(start) == {"2019-09-01", "2020-09-01"}
    assert set(ds.year.values.tolist()) == {2020, 2021}
    per_sample = df.groupby("sid", sort=False).size().to_numpy()
    np.testing.assert_array_equal(np.isfinite(ds.values_MOD13Q1.values[..., 0]).sum(axis=1),
                                  per_sample)  # clip_to_year keeps every date of the season
    defs = ds.attrs["sensor_definitions"]
    assert '"MOD13Q1"' in defs and '"NDVI"' in defs


def test_a_band_unknown_to_the_sensor_names_sensor_band_and_fix(tmp_path):
    df = index_table(np.random.default_rng(1)).rename(columns={"evi": "ndwi"})
    src = tmp_path / "t.csv"
    df.to_csv(src, index=False)
    cols = {**INDEX_COLUMNS, "bands": {"MOD13Q1": {"NDVI": "ndvi", "NDWI": "ndwi"}}}
    with pytest.raises(InputError, match="'NDWI' is not a band of sensor MOD13Q1") as err:
        table_to_pixels(src, tmp_path / "p.nc", layout="long", columns=cols,
                        split_fractions=SPLITS, seed=0)
    assert "declare it under sensors.MOD13Q1.bands" in str(err.value)
    # declared in the config, the band reads (and the file records the extended sensor)
    ds = open_pixels(table_to_pixels(
        src, tmp_path / "p.nc", layout="long", columns=cols, split_fractions=SPLITS, seed=0,
        sensors={"MOD13Q1": {"bands": {"NDWI": {"unit": "1", "range": [-1, 1]}}}}))
    assert list(ds.band_MOD13Q1.values) == ["NDVI", "NDWI"]
    assert "NDWI" in ds.attrs["sensor_definitions"]


def test_a_missing_group_column_is_named(tmp_path):
    src = tmp_path / "t.csv"
    index_table(np.random.default_rng(2)).to_csv(src, index=False)
    for group in ("plot", ["point", "plot"]):
        with pytest.raises(InputError, match="'plot'") as err:
            table_to_pixels(src, tmp_path / "p.nc", layout="long",
                            columns={**INDEX_COLUMNS, "group": group},
                            split_fractions=SPLITS, seed=0)
        assert "columns.group" in str(err.value)


def test_a_span_with_fewer_than_two_dates_is_refused(tmp_path):
    df = pd.DataFrame({"sid": [0, 1], "date": ["2021-03-01", "2022-03-01"],
                       "ndvi": [0.3, 0.5], "label": ["a", "b"]})
    src = tmp_path / "one.csv"
    df.to_csv(src, index=False)
    cols = {"sample_id": "sid", "time": "date", "label": "label",
            "bands": {"MOD13Q1": {"NDVI": "ndvi"}}}
    train_only = {"train": 1.0, "val": 0.0, "test": 0.0}  # 2 samples: no val/test split
    with pytest.raises(InputError, match="fewer than 2 dates") as err:
        table_to_pixels(src, tmp_path / "p.nc", layout="long", columns=cols,
                        split_fractions=train_only, seed=0)
    assert "sample.span" in str(err.value)
    # the whole range as one span holds both dates
    ds = open_pixels(table_to_pixels(src, tmp_path / "p.nc", layout="long", columns=cols,
                                     split_fractions=train_only, seed=0, span={"span": "all"}))
    assert set(ds.start.values.astype("datetime64[D]").astype(str)) == {"2021-03-01"}


def test_integer_columns_get_the_sensors_scale(tmp_path):
    df = index_table(np.random.default_rng(3))
    dn = np.round(df["ndvi"] * 1e4).astype(np.int16)
    df["ndvi"] = dn
    src = tmp_path / "dn.parquet"
    df.to_parquet(src)
    ds = open_pixels(table_to_pixels(src, tmp_path / "p.nc", layout="long",
                                     columns=INDEX_COLUMNS, split_fractions=SPLITS, seed=0,
                                     span={"span": "all"}))
    got = ds.values_MOD13Q1.sel(band_MOD13Q1="NDVI").values
    assert np.nanmax(got) <= 1.0 and np.nanmin(got) > 0.1  # DN * 1e-4 (MOD13Q1's scale)


@pytest.mark.parametrize("values, expected", [
    (["13/04/2021", "03/04/2021", "2021-01-05"], ["2021-04-13", "2021-04-03", "2021-01-05"]),
    (["04/13/2021", "04/03/2021"], ["2021-04-13", "2021-04-03"]),
    (["5.3.21", "25.3.21"], ["2021-03-05", "2021-03-25"]),
], ids=["day-first-beside-iso", "month-first", "dotted-two-digit-year"])
def test_numeric_dates_take_the_order_their_values_decide(values, expected):
    """A day above 12 decides day/month for the whole column; ISO dates keep their order."""
    got = dates(pd.Series(values), file="t.csv", column="date")
    assert got.astype("datetime64[D]").astype(str).tolist() == expected
