"""A request body → a DataFrame of raw rows, checked column by column before the model sees it.

Accepted bodies: a list of records `[{"age": 41, "plan": "pro"}, ...]`, one record `{"age": 41, ...}`,
or columns `{"age": [41, 52], "plan": ["pro", null]}`. Values stay raw: the run's preprocessor
imputes holes and maps unseen categories exactly as `conductor predict` does. Every refusal is a
`BadRequest` naming the field and what is allowed; the API turns it into a 4xx JSON answer.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pandas as pd

SCALARS = (str, int, float, bool, type(None))


class BadRequest(Exception):
    """A client's mistake: HTTP `status`, the `field` (column, header or body) and what is allowed."""

    def __init__(self, status: int, field: str, message: str):
        super().__init__(message)
        self.status, self.field, self.message = status, field, message

    def body(self) -> dict:
        return {"error": self.message, "field": self.field}


@dataclass(frozen=True)
class Columns:
    """What the model reads: every feature, and which ones are numbers (and which of those are times)."""

    features: tuple[str, ...]  # every column a request must carry (forecasting: the time column too)
    numeric: frozenset[str]
    datetime: frozenset[str]
    time: str | None = None  # forecasting's ordering column: numbers or times, sorted as given


def parse_json(raw: bytes) -> object:
    if not raw.strip():
        raise BadRequest(400, "body", "empty body: send JSON rows, e.g. [{\"column\": value, ...}]")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(400, "body", f"body is not JSON ({e})") from None


def to_records(payload: object) -> list[dict]:
    """The three accepted shapes → a list of records."""
    if isinstance(payload, list):
        bad = next((i for i, r in enumerate(payload) if not isinstance(r, dict)), None)
        if bad is not None:
            raise BadRequest(422, f"body[{bad}]", "a list body holds records: objects of column → value")
        return payload
    if not isinstance(payload, dict):
        raise BadRequest(422, "body", "send a list of records, one record, or an object of column → list of values")
    lists = [k for k, v in payload.items() if isinstance(v, list)]
    if not lists:
        return [payload]
    if len(lists) != len(payload):
        mixed = next(k for k in payload if k not in lists)
        raise BadRequest(422, mixed, "in a columns body every value is a list (one value per row)")
    lengths = {k: len(payload[k]) for k in lists}
    if len(set(lengths.values())) > 1:
        raise BadRequest(422, "body", f"columns have different lengths: {lengths}")
    n = next(iter(lengths.values()))
    return [{k: payload[k][i] for k in lists} for i in range(n)]


def _numbers(col: str, values: list, is_time: bool) -> list:
    """Numbers (or numeric strings) and nulls as floats/None; times stay text until the frame is built."""
    out = []
    for i, v in enumerate(values):
        if v is None or (is_time and isinstance(v, str)):
            out.append(v)
            continue
        if isinstance(v, str):
            try:
                v = float(v)
            except ValueError:
                v = None
                out.append(_not_number(col, i, values[i]))
        if isinstance(v, bool | int | float):
            if not math.isfinite(v):
                raise BadRequest(422, col, f"row {i}: {v} is not finite; send a number or null")
            out.append(float(v))
        else:
            _not_number(col, i, v)
    return out


def _not_number(col: str, i: int, v) -> None:
    raise BadRequest(422, col, f"row {i}: {json.dumps(v)[:60]} is not a number; the column is numeric "
                               "(a number, a numeric string or null)")


def _texts(col: str, values: list) -> list:
    for i, v in enumerate(values):
        if not isinstance(v, SCALARS):
            raise BadRequest(422, col, f"row {i}: a {type(v).__name__} where a category (text, number or null) "
                                       "is expected")
    return values


def _times(col: str, values: list) -> list:
    if any(v is None for v in values):
        raise BadRequest(422, col, f"row {values.index(None)}: the time column orders the series; it cannot be null")
    kinds = {str if isinstance(v, str) else float if isinstance(v, int | float) and not isinstance(v, bool) else None
             for v in values}
    if len(kinds) != 1 or None in kinds:
        raise BadRequest(422, col, "the time column holds numbers (e.g. years) or times as text, one kind throughout")
    return values


def check(records: list[dict], columns: Columns, max_rows: int, id_column: str | None = None) -> dict[str, list]:
    """Records → checked value lists per model column (plus the id column), or BadRequest."""
    if not records:
        raise BadRequest(422, "body", "no rows: send at least one record")
    if len(records) > max_rows:
        raise BadRequest(413, "body", f"{len(records)} rows is over the limit of {max_rows} per request "
                                      "(conductor serve --max-rows)")
    present = set().union(*(r.keys() for r in records))
    missing = [c for c in columns.features if c not in present]
    if missing:
        raise BadRequest(422, missing[0], f"missing column(s) {missing}; the model reads {list(columns.features)}")
    if id_column is not None and id_column not in present:
        raise BadRequest(422, "id", f"id column {id_column!r} is not in the rows")
    data = {}
    for col in columns.features:
        values = [r.get(col) for r in records]
        data[col] = (_numbers(col, values, col in columns.datetime) if col in columns.numeric
                     else _texts(col, values) if col != columns.time else _times(col, values))
    if id_column is not None and id_column not in data:
        data[id_column] = _texts(id_column, [r.get(id_column) for r in records])
    return data


def to_frame(data: dict[str, list], columns: Columns) -> pd.DataFrame:
    """Checked value lists → the raw DataFrame the preprocessor reads (numbers float64, text object)."""
    out = {}
    for col, values in data.items():
        if col == columns.time and col not in columns.numeric:
            out[col] = pd.Series(values)
        elif col in columns.datetime:
            try:
                out[col] = pd.to_datetime(pd.Series(values, dtype=object))
            except (ValueError, TypeError) as e:
                raise BadRequest(422, col, f"cannot read the column as times ({e})") from None
        elif col in columns.numeric:
            out[col] = pd.Series([math.nan if v is None else v for v in values], dtype="float64")
        else:
            out[col] = pd.Series(values, dtype=object)
    return pd.DataFrame(out)
