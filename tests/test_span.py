"""Sample spans (gpvae.data.span): calendar years, seasons, the whole range."""

from __future__ import annotations

import numpy as np
import pytest

from gpvae.data.span import Span, check_dates_per_span, days_between, label_year
from gpvae.errors import InputError

D = np.datetime64


def dates(*days: str) -> np.ndarray:
    return np.array([D(d, "D") for d in days])


def test_year_season_and_all_windows():
    t = dates("2021-03-05", "2021-10-01", "2022-02-01")
    s, e = Span().windows(t)
    assert list(s.astype(str)) == ["2021-01-01", "2022-01-01"]
    assert list(e.astype(str)) == ["2022-01-01", "2023-01-01"]
    s, e = Span("season", "09-01").windows(t)
    assert list(s.astype(str)) == ["2020-09-01", "2021-09-01"]
    assert list(label_year(s, e)) == [2021, 2022]
    s, e = Span("season", "04-01", "11-01").windows(t)  # growing season Apr-Oct
    assert list(s.astype(str)) == ["2021-04-01"] and list(e.astype(str)) == ["2021-11-01"]
    s, e = Span("all").windows(t)
    assert list(s.astype(str)) == ["2021-03-05"] and list(e.astype(str)) == ["2022-02-02"]
    assert days_between(s, e)[0] == 334.0


def test_containing_and_of_year():
    span = Span("season", "09-01")
    s, e = span.containing(dates("2013-09-14", "2014-08-29"))
    assert set(s.astype(str)) == {"2013-09-01"} and set(e.astype(str)) == {"2014-09-01"}
    s, _ = span.of_year(np.array([2014, 2016]))
    assert list(s.astype(str)) == ["2013-09-01", "2015-09-01"]
    s, _ = Span().containing(dates("2020-12-31", "2021-01-01"))
    assert list(s.astype(str)) == ["2020-01-01", "2021-01-01"]


def test_bad_spans():
    with pytest.raises(InputError, match="sample.season_start"):
        Span("season", "02-29")
    with pytest.raises(InputError, match="unknown span"):
        Span("decade")
    one_each = dates("2021-03-01", "2022-03-01")
    s, e = Span().windows(one_each)
    with pytest.raises(InputError, match="fewer than 2 dates"):
        check_dates_per_span(s, e, one_each, Span())
    check_dates_per_span(*Span("all").windows(one_each), one_each, Span("all"))


def test_span_roundtrip_and_config():
    span = Span.from_config({"span": "season", "season_start": "10-15", "season_end": None})
    assert Span.from_attr(span.to_attr()) == span
    assert Span.from_attr(None) == Span() == Span.from_config({"season_start": "09-01"})
