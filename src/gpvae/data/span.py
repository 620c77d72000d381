"""What one sample covers in time: its span, and each sample's time origin.

A sample is a pixel (or a table row) over one span: a calendar ``year`` (the default), a
``season`` (from ``season_start`` to ``season_end``, MM-DD, e.g. 09-01 for a Sep-Aug season) or
``all`` (the whole extracted range, many years). The pixel dataset stores each sample's span as
per-sample coordinates ``start`` (its time origin: model times are days since it) and ``end``
(exclusive), plus the span rule as the attribute ``span``. Defaults that depend on time (the
sparse prior's inducing range, the banded grid, the reference dates of embeddings) follow the
data's span: days 0 to the longest sample span.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from gpvae.errors import InputError

#: Span kinds (config ``sample.span``).
SPAN_KINDS = ("year", "season", "all")
DAY = np.timedelta64(1, "D")


def _mmdd(value: str, field: str) -> str:
    text = str(value)
    try:
        np.datetime64(f"2001-{text}", "D")  # a day of a non-leap year
    except ValueError as err:
        raise InputError(f"{field} {text!r} is not a MM-DD day of the year (29 Feb excluded)",
                         field=field, fix="e.g. 09-01 for a season starting on 1 September"
                         ) from err
    return text


@dataclasses.dataclass(frozen=True)
class Span:
    """The span rule of a pixel dataset (see the module docstring)."""

    kind: str = "year"
    season_start: str = "01-01"
    season_end: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in SPAN_KINDS:
            raise InputError(f"unknown span {self.kind!r}", field="sample.span",
                             fix=f"use one of {', '.join(SPAN_KINDS)}")
        _mmdd(self.season_start, "sample.season_start")
        if self.season_end is not None:
            _mmdd(self.season_end, "sample.season_end")

    @classmethod
    def from_config(cls, sample: dict | None) -> Span:
        """The rule of the config's ``sample:`` section (``span``, ``season_start``,
        ``season_end``); a ``year`` span ignores the season keys."""
        s = sample or {}
        kind = s.get("span") or "year"
        if kind != "season":
            return cls(kind)
        return cls(kind, s.get("season_start") or "01-01", s.get("season_end"))

    def to_attr(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_attr(cls, text: str | None) -> Span:
        """The rule recorded in a file (files without one hold calendar years)."""
        return cls(**json.loads(text)) if text else cls()

    def _starts_ends(self, first_year: int, last_year: int
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Season windows starting in ``first_year`` .. ``last_year`` (year = a season from
        Jan 1)."""
        begin = self.season_start if self.kind == "season" else "01-01"
        years = np.arange(first_year, last_year + 1)
        starts = np.array([np.datetime64(f"{y:04d}-{begin}", "D") for y in years])
        if self.kind == "season" and self.season_end is not None:
            ends = np.array([np.datetime64(f"{y:04d}-{self.season_end}", "D") for y in years])
            ends = np.where(ends <= starts,
                            [np.datetime64(f"{y + 1:04d}-{self.season_end}", "D")
                             for y in years], ends)
        else:
            ends = np.array([np.datetime64(f"{y + 1:04d}-{begin}", "D") for y in years])
        return starts, ends

    def windows(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(start, end) datetime64[D] of the spans holding at least one of ``times``
        (``all``: one span from the first to the day after the last date), increasing."""
        days = np.unique(np.asarray(times).astype("datetime64[D]"))
        if days.size == 0:
            return np.array([], "datetime64[D]"), np.array([], "datetime64[D]")
        if self.kind == "all":
            return days[:1], days[-1:] + DAY
        years = days.astype("datetime64[Y]").astype(int) + 1970
        starts, ends = self._starts_ends(int(years.min()) - 1, int(years.max()))
        held = [((days >= s) & (days < e)).any() for s, e in zip(starts, ends, strict=True)]
        return starts[held], ends[held]

    def containing(self, times: np.ndarray, *, all_times: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Per date, (start, end) of its span: the latest span starting on or before it
        (``all``: the span of ``all_times``, default ``times``)."""
        days = np.asarray(times).astype("datetime64[D]")
        if self.kind == "all":
            s, e = self.windows(days if all_times is None else all_times)
            return np.full(days.shape, s[0]), np.full(days.shape, e[0])
        years = days.astype("datetime64[Y]").astype(int) + 1970
        starts, ends = self._starts_ends(int(years.min()) - 1, int(years.max()))
        pos = np.searchsorted(starts, days, side="right") - 1
        return starts[pos], ends[pos]

    def of_year(self, year: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(start, end) of the span whose label year (:func:`label_year`) is ``year``."""
        year = np.asarray(year, dtype=np.int64)
        starts, ends = self._starts_ends(int(year.min()) - 1, int(year.max()))
        labels = label_year(starts, ends)
        pos = np.searchsorted(labels, year)
        if not (labels[np.clip(pos, 0, labels.size - 1)] == year).all():
            raise InputError(f"no {self.kind} span labelled with the years {np.unique(year)}",
                             field="year", fix="check the year column and sample.span")
        return starts[pos], ends[pos]

    def describe(self) -> str:
        if self.kind == "season":
            return f"season from {self.season_start} to {self.season_end or self.season_start}"
        return {"year": "calendar year", "all": "the whole extracted range"}[self.kind]


def label_year(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """The year of a span (``year`` coordinate): the year holding its middle day (a calendar
    year is itself; a Sep 2013 - Aug 2014 season is 2014)."""
    start = np.asarray(start).astype("datetime64[D]")
    end = np.asarray(end).astype("datetime64[D]")
    mid = start + (end - start) // 2
    return mid.astype("datetime64[Y]").astype(int) + 1970


def check_dates_per_span(starts: np.ndarray, ends: np.ndarray, times: np.ndarray,
                         span: Span, *, file: object = None) -> None:
    """InputError unless some span (the per-sample ``starts`` / ``ends``, repeats allowed)
    holds at least 2 distinct ``times`` (a series needs 2)."""
    days = np.unique(np.asarray(times).astype("datetime64[D]"))
    pairs = np.unique(np.stack([np.asarray(starts).astype("datetime64[D]").astype(np.int64),
                                np.asarray(ends).astype("datetime64[D]").astype(np.int64)]),
                      axis=1).astype("datetime64[D]")
    counts = [int(((days >= s) & (days < e)).sum()) for s, e in pairs.T]
    if max(counts, default=0) < 2:
        raise InputError(f"every span ({span.describe()}) holds fewer than 2 dates of the data "
                         f"(most: {max(counts, default=0)}); a time series needs at least 2",
                         file=file, field="sample.span",
                         fix="widen the span (sample.span, season_start, season_end) or give "
                         "more dates")


def days_between(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Length in days (float64) of spans."""
    delta = np.asarray(end).astype("datetime64[ns]") - np.asarray(start).astype("datetime64[ns]")
    return delta.astype("timedelta64[ns]").astype(np.float64) / 86400e9
