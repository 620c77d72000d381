"""Cells of a sample table parsed strictly: a bad value is an InputError naming its row and
column (``12O4`` as a number, ``33,54`` with a decimal comma, ``y2017`` as a year, an
unparsable date, a missing label, a split called ``training``), never a pandas traceback or a
silent NaN."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from gpvae.errors import InputError

#: Split names of the pixel dataset (docs/contracts.md section 2).
SPLIT_NAMES = ("train", "val", "test")


def is_csv(file: object) -> bool:
    """Whether ``file`` is a text table (rows are then also given as file lines)."""
    name = Path(str(file)).name.lower()
    return name.endswith((".csv", ".txt", ".csv.gz"))


def where(rows: np.ndarray, file: object, limit: int = 3) -> str:
    """Human row numbers of 0-based data rows: ``row 4 (line 5)`` (CSV: header on line 1)."""
    rows = np.asarray(rows)
    shown = [f"row {r + 1} (line {r + 2})" if is_csv(file) else f"row {r + 1}"
             for r in rows[:limit].tolist()]
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return ", ".join(shown) + more


def _values(raw: object) -> pd.Series:
    return raw.reset_index(drop=True) if isinstance(raw, pd.Series) else pd.Series(
        np.asarray(raw, dtype=object) if np.asarray(raw).dtype.kind in "OSU" else raw)


def _number_hint(text: str) -> str:
    """What is probably wrong with a cell that should be a number."""
    if re.fullmatch(r"\s*[-+]?\d+,\d+\s*", text):
        return "use a dot as the decimal separator (33.54, not 33,54), or re-export the table"
    if re.search(r"\d", text) and re.fullmatch(r"[-+.\deE0OoIl]+", text.strip()):
        return "a letter where a digit belongs (O for 0, l or I for 1?): correct the value"
    return "correct the value or remove the row (an empty cell means missing)"


def numbers(raw: object, *, file: object, column: str, hint: str | None = None) -> np.ndarray:
    """float64 values of a column; empty cells are NaN, anything else not a number is an
    InputError naming the rows."""
    s = _values(raw)
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
        return s.to_numpy(np.float64)
    parsed = pd.to_numeric(s.where(~s.astype(str).str.strip().eq(""), np.nan),
                           errors="coerce")
    bad = np.flatnonzero(parsed.isna().to_numpy() & s.notna().to_numpy()
                         & ~s.astype(str).str.strip().eq("").to_numpy())
    if bad.size:
        text = str(s.iloc[bad[0]])
        raise InputError(f"column {column!r} holds {bad.size} value(s) that are not numbers, "
                         f"e.g. {text!r} at {where(bad, file)}", file=file, field=column,
                         fix=hint or _number_hint(text))
    return parsed.to_numpy(np.float64)


def required(raw: object, *, file: object, column: str, role: str) -> pd.Series:
    """A column that must have a value on every row (e.g. the label)."""
    s = _values(raw)
    empty = np.flatnonzero(s.isna().to_numpy() | s.astype(str).str.strip().eq("").to_numpy())
    if empty.size:
        raise InputError(f"{empty.size} row(s) have no {role} in column {column!r}: "
                         f"{where(empty, file)}", file=file, field=column,
                         fix=f"give every sample a {role}, or remove those rows")
    return s


def integers(raw: object, *, file: object, column: str, role: str) -> np.ndarray:
    """int64 values of a column holding whole numbers on every row (e.g. the year)."""
    hint = f"write the {role} as a whole number, e.g. 2017"
    values = numbers(required(raw, file=file, column=column, role=role), file=file,
                     column=column, hint=hint)
    frac = np.flatnonzero(values % 1 != 0)
    if frac.size:
        raise InputError(f"column {column!r} ({role}) holds non-integers: "
                         f"{values[frac[0]]!r} at {where(frac, file)}", file=file,
                         field=column, fix=hint)
    return values.astype(np.int64)


#: A date written with day and month as numbers before the year: 05/03/2020, 5.3.20.
_NUMERIC_DMY = re.compile(r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](?:\d{4}|\d{2})(?:[ T].*)?$")


def _day_first_rows(text: pd.Series, *, file: object, column: str) -> np.ndarray:
    """Rows holding numeric dates (``05/03/2020``) that put the day first (none when they put
    the month first); an order that no value decides (every day <= 12), or values that
    contradict each other, stops."""
    extracted = text.str.extract(_NUMERIC_DMY)
    numeric = extracted[0].notna().to_numpy()
    parts = extracted[numeric].astype(int)
    if parts.empty:
        return numeric
    first, second = parts[0].to_numpy(), parts[1].to_numpy()
    day_first, month_first = bool((first > 12).any()), bool((second > 12).any())
    example = str(text.loc[parts.index[0]])
    fix = "write dates as YYYY-MM-DD (ISO 8601)"
    if day_first and month_first:
        rows = np.flatnonzero(text.index.isin(parts.index[(second > 12)]))
        raise InputError(f"column {column!r} mixes day/month and month/day dates: "
                         f"{str(text.iloc[rows[0]])!r} at {where(rows, file)} has a month "
                         f"above 12 where other rows put the day first", file=file,
                         field=column, fix=fix)
    if not (day_first or month_first):
        raise InputError(f"column {column!r} holds dates such as {example!r} whose day and "
                         "month order no value decides (every number is 12 or less)",
                         file=file, field=column, fix=fix)
    return numeric & day_first


def dates(raw: object, *, file: object, column: str) -> np.ndarray:
    """datetime64[ns] of a column of dates; every row must hold a parsable date."""
    s = required(raw, file=file, column=column, role="date")
    if pd.api.types.is_datetime64_any_dtype(s):
        return s.to_numpy("datetime64[ns]")
    text = s.astype(str).str.strip()
    parsed = pd.to_datetime(text, errors="coerce", format="mixed")
    day_first = _day_first_rows(text, file=file, column=column)  # ISO dates keep their order
    if day_first.any():
        parsed[day_first] = pd.to_datetime(text[day_first], errors="coerce", format="mixed",
                                           dayfirst=True)
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        raise InputError(f"column {column!r} holds {bad.size} value(s) that are not dates, "
                         f"e.g. {str(s.iloc[bad[0]])!r} at {where(bad, file)}", file=file,
                         field=column, fix="write dates as YYYY-MM-DD (ISO 8601)")
    return parsed.dt.tz_localize(None).to_numpy("datetime64[ns]") if parsed.dt.tz else \
        parsed.to_numpy("datetime64[ns]")


def splits(raw: object, *, file: object, column: str) -> np.ndarray:
    """Split names of a column: each one of train, val, test."""
    s = required(raw, file=file, column=column, role="split").astype(str).str.strip()
    bad = np.flatnonzero(~s.isin(SPLIT_NAMES).to_numpy())
    if bad.size:
        found = sorted(set(s.iloc[bad].tolist()))[:5]
        raise InputError(f"split column {column!r} holds {found}, not only "
                         f"{'/'.join(SPLIT_NAMES)}: {where(bad, file)}", file=file,
                         field=column, fix="rename the values to train, val and test (or "
                         "drop columns.split to split by sample.split fractions)")
    return s.to_numpy(str)


def separator_hint(columns: object) -> str:
    """A fix for a CSV read with the wrong separator: a single column holding ';' or tabs."""
    cols = [str(c) for c in columns]
    if len(cols) == 1 and any(sep in cols[0] for sep in (";", "\t", "|")):
        return "the file seems to use ';' (or tabs) between values: save it with commas. "
    return ""
