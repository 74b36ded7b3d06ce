"""Forecasting's time column as something that sorts: numbers stay numbers, text is read as dates in
one format, and a day/month order that no value settles is refused rather than guessed (sorting
'31/12/2020' as text would put the future in the train split)."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format

from ..errors import UserError

DAY_MONTH = r"^\s*(\d{1,2})([/.\-])(\d{1,2})\2(\d{4}|\d{2})(?!\d)"
HOW = "set data.time_format to a strftime format, e.g. '%Y-%m-%d' or '%d/%m/%Y'"


def time_key(s: pd.Series, column: str, time_format: str | None = None, locate=None) -> tuple[pd.Series, str]:
    """(sortable values, how they were read: "number", "datetime" or a format for pd.to_datetime).

    `locate(value)` names where a bad value is ("FILE line N") or returns None (then: its row number)."""
    s = s.reset_index(drop=True)
    time_format = None if time_format == "datetime" else time_format
    if pd.api.types.is_datetime64_any_dtype(s):
        return s, "datetime"
    numeric = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
    if time_format in (None, "number"):
        nums = s if numeric else pd.to_numeric(s, errors="coerce")
        if time_format == "number" or nums[s.notna()].notna().all():
            _refuse(s, s.notna() & nums.isna(), column, "is not a number (data.time_format: number)", locate)
            return nums.astype("float64"), "number"
    text = _as_text(s)
    present = text.notna()
    dayfirst = _dayfirst(text[present], column) if time_format in (None, "mixed") else False
    fmt, first = time_format, text[present].iloc[0]
    if fmt is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fmt = guess_datetime_format(first, dayfirst=dayfirst) or "mixed"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        key = pd.to_datetime(text, format=fmt, dayfirst=dayfirst, errors="coerce", utc=True)
    why = f"does not match data.time_format {fmt!r}" if time_format else \
        f"is neither a number nor a date written like the first value {first!r} ({fmt})"
    _refuse(s, present & key.isna(), column, why, locate)
    return key, fmt


def _as_text(s: pd.Series) -> pd.Series:
    """Integral floats (a CSV's 20201231.0) lose their '.0', so '%Y%m%d' can read them."""
    if pd.api.types.is_float_dtype(s) and (s.dropna() % 1 == 0).all():
        s = s.astype("Int64")
    return s.astype(object).where(s.notna(), None).map(lambda v: None if v is None else str(v).strip())


def _dayfirst(text: pd.Series, column: str) -> bool:
    """Whether dd/mm values come day first; a UserError when the values cannot tell or disagree."""
    parts = text.astype(str).str.extract(DAY_MONTH).dropna()
    if parts.empty:
        return False
    a, b = parts[0].astype(int), parts[2].astype(int)
    day_first, month_first = (a > 12).any(), (b > 12).any()
    if day_first and month_first:
        raise UserError(f"data.time_column: {column!r} mixes day/month orders ({text[(a > 12).idxmax()]!r} and "
                        f"{text[(b > 12).idxmax()]!r}); write one order, or {HOW}")
    if day_first or month_first:
        return bool(day_first)
    if (a != b).any():
        i = (a != b).idxmax()
        sep, year = parts.loc[i, 1], "%Y" if len(parts.loc[i, 3]) == 4 else "%y"
        raise UserError(f"data.time_column: {column!r} values such as {text[i]!r} read as day/month or month/day "
                        f"and no value tells which; set data.time_format: '%d{sep}%m{sep}{year}' (day first) "
                        f"or '%m{sep}%d{sep}{year}'")
    return False


def _refuse(s: pd.Series, bad: pd.Series, column: str, why: str, locate) -> None:
    if not bad.any():
        return
    pos = int(np.flatnonzero(bad.to_numpy())[0])
    value = s.iloc[pos]
    where = locate(str(value)) if locate else None
    more = f" ({int(bad.sum())} values in all)" if bad.sum() > 1 else ""
    fix = "fix the values or data.time_format" if "time_format" in why else f"fix the values or {HOW}"
    raise UserError(f"data.time_column: {column!r} {'at ' + where if where else f'row {pos + 1}'}: {value!r} "
                    f"{why}{more}; {fix}")


def sort_by(pdf: pd.DataFrame, key: pd.Series) -> pd.DataFrame:
    """Rows in key order (stable: equal times keep their file order; missing times last)."""
    order = key.reset_index(drop=True).sort_values(kind="stable", na_position="last").index
    return pdf.iloc[order.to_numpy()]
