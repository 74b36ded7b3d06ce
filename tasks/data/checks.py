"""Checks of a source before anything is fitted: columns and dtypes from metadata, then one pass of rows."""
from __future__ import annotations

import dask
import dask.dataframe as dd
import pandas as pd

from ..errors import UserError
from ..spec import Data
from .preprocessor import ROW, plain_label


def check_columns(columns: list[str], dtypes: dict, data: Data) -> tuple[list[str], list[str], list[str]]:
    """Schema checks on metadata alone. Returns (features, numeric, categorical)."""
    where = data.source
    if data.target and data.target not in columns:
        raise UserError(f"data.target: column {data.target!r} not found in {where}; columns are {columns}")
    if data.time_column and data.time_column not in columns:
        raise UserError(f"data.time_column: column {data.time_column!r} not found in {where}; columns are {columns}")
    unknown = [c for c in data.drop if c not in columns]
    if unknown:
        raise UserError(f"data.drop: columns {unknown} not found in {where}; columns are {columns}")
    exclude = {data.time_column, *data.drop}
    if data.task != "forecasting":
        exclude.add(data.target)
    if data.features is not None:
        missing = [c for c in data.features if c not in columns]
        if missing:
            raise UserError(f"data.features: columns {missing} not found in {where}; columns are {columns}")
        features = list(data.features)
        if data.task == "forecasting" and data.target not in features:
            features.append(data.target)  # the series' own past is an input
    else:
        features = [c for c in columns if c not in exclude and c != ROW]
    if not features:
        raise UserError(f"data.features: no input columns left in {where}")
    numeric, categorical = [], []
    for c in features:
        dt = dtypes[c]
        if pd.api.types.is_bool_dtype(dt) or pd.api.types.is_numeric_dtype(dt) or pd.api.types.is_datetime64_any_dtype(dt):
            numeric.append(c)
        else:
            categorical.append(c)
    if categorical and data.preprocessing.categorical == "none":
        raise UserError(f"data.preprocessing.categorical: 'none' but columns {categorical} hold text; "
                        "choose onehot or ordinal, or leave them out of data.features")
    if data.task == "regression" and not pd.api.types.is_numeric_dtype(dtypes[data.target]):
        raise UserError(f"data.target: column {data.target!r} is {dtypes[data.target]}, regression needs numbers")
    if data.task == "forecasting" and data.target in categorical:
        raise UserError(f"data.target: column {data.target!r} is {dtypes[data.target]}, forecasting needs numbers")
    if data.shape is not None and data.task == "forecasting":
        raise UserError("data.shape: forecasting inputs are shaped [window, features]; remove data.shape")
    return features, numeric, categorical


def check_rows(ddf: dd.DataFrame, features: list[str], data: Data) -> dict:
    """Checks that need one pass over the rows: empty data, all-missing columns, one class."""
    cols = list(dict.fromkeys(features + ([data.target] if data.target else [])))
    todo = {"rows": ddf.shape[0], "missing": ddf[cols].isna().sum()}
    if data.task == "classification":
        todo["classes"] = ddf[data.target].dropna().drop_duplicates().head(1001, npartitions=-1, compute=False)
    got = dask.compute(todo)[0]
    if got["rows"] == 0:
        raise UserError(f"data.source: {data.source!r} holds no rows")
    empty = [c for c, n in got["missing"].items() if n == got["rows"]]
    if empty:
        raise UserError(f"data: column(s) {empty} hold only missing values; leave them out of data.features "
                        "or fix the source")
    if data.task == "classification":
        labels = got["classes"]
        if len(labels) < 2:
            shown = plain_label(labels.iloc[0]) if len(labels) else None
            raise UserError(f"data.target: column {data.target!r} has one class ({shown!r}); "
                            "classification needs at least two")
        if len(labels) > 1000:
            raise UserError(f"data.target: column {data.target!r} has over 1000 classes; "
                            "is this a regression target? set data.task: regression")
    if data.preprocessing.impute == "none":
        holes = [c for c in features if got["missing"][c] > 0]
        if holes:
            raise UserError(f"data.preprocessing.impute: 'none' but columns {holes} have missing values; "
                            "choose mean, median, most_frequent or drop")
    return got
