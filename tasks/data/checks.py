"""Checks of a source before anything is fitted: columns and dtypes from metadata, then one pass of rows."""
from __future__ import annotations

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from ..errors import UserError
from ..spec import Data
from .preprocessor import ROW, label_text, plain_label


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
        _check_listed(data)
        features = list(data.features)
        if data.task == "forecasting" and data.target not in features:
            features.append(data.target)  # the series' own past is an input
    else:
        features = [c for c in columns if c not in exclude and c != ROW]
    if not features:
        raise UserError(f"data.features: no input columns left in {where}")
    numeric = [c for c in features if is_number(dtypes[c])]
    categorical = [c for c in features if c not in numeric]
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


def is_number(dt) -> bool:
    """Read as a number by the preprocessor (booleans and datetimes too); anything else is text."""
    return bool(pd.api.types.is_bool_dtype(dt) or pd.api.types.is_numeric_dtype(dt)
                or pd.api.types.is_datetime64_any_dtype(dt))


def _check_listed(data: Data) -> None:
    twice = sorted({c for c in data.features if data.features.count(c) > 1})
    if twice:
        raise UserError(f"data.features: {twice} listed more than once; list each column once")
    if data.task != "forecasting" and data.target in data.features:
        raise UserError(f"data.features: lists the target {data.target!r}; a model that reads its answer learns "
                        "nothing; remove it from data.features")


def check_rows(ddf: dd.DataFrame, features: list[str], data: Data) -> dict:
    """Checks that need one pass over the rows: empty data, all-missing columns, infinities, text columns
    that look like ids, one class. Returns what it counted (rows, missing, classes, labels)."""
    return judge_rows(dask.compute(row_checks(ddf, features, data))[0], features, data)


def row_checks(ddf: dd.DataFrame, features: list[str], data: Data) -> dict:
    """What check_rows counts, lazily: preprocessing computes it in the same pass as its statistics."""
    cols = list(dict.fromkeys(features + ([data.target] if data.target else [])))
    dtypes = dict(ddf.dtypes.items())
    real = [c for c in cols if pd.api.types.is_numeric_dtype(dtypes[c]) and not pd.api.types.is_bool_dtype(dtypes[c])]
    texts = [c for c in features if not is_number(dtypes[c])] \
        if data.features is None and data.preprocessing.categorical == "onehot" else []
    todo = {"rows": ddf.shape[0], "missing": ddf[cols].isna().sum(),
            "inf": (ddf[real].abs() == np.inf).sum() if real else None,
            "distinct": {c: ddf[c].map_partitions(few_distinct, meta=ddf[c]._meta) for c in texts}}
    if data.task == "classification":
        # split_out=1: a tree reduction, no shuffle (a target of over 1000 values is refused anyway)
        todo["classes"] = ddf[data.target].dropna().drop_duplicates(split_out=1).head(1001, npartitions=-1,
                                                                                        compute=False)
        # rows without a label are dropped before the split: counted here, a text column's <NA> read as a label
        todo["labels"] = ddf[data.target].dropna().map_partitions(label_text, meta=(data.target, "object")) \
            .value_counts(split_out=1)
    return todo


DISTINCT_MAX = 1000  # a text column with more distinct values is refused (one-hot would make a column of each)


def few_distinct(s: pd.Series) -> pd.Series:
    """Up to DISTINCT_MAX + 1 of the distinct values of one partition's column: their union over the partitions
    counts a column's distinct values exactly up to DISTINCT_MAX (cheaper than hashing every value for Dask's
    nunique_approx)."""
    return s.dropna().drop_duplicates().iloc[:DISTINCT_MAX + 1]


def judge_rows(got: dict, features: list[str], data: Data) -> dict:
    """Refuse a source by what row_checks counted (UserError); returns the counts."""
    if got["rows"] == 0:
        raise UserError(f"data.source: {data.source!r} holds no rows")
    empty = [c for c, n in got["missing"].items() if n == got["rows"]]
    if empty:
        raise UserError(f"data: column(s) {empty} hold only missing values; leave them out of data.features "
                        "or fix the source")
    _check_values(got, data)
    if data.preprocessing.impute == "none":
        holes = [c for c in features if got["missing"][c] > 0]
        if holes:
            raise UserError(f"data.preprocessing.impute: 'none' but columns {holes} have missing values; "
                            "choose mean, median, most_frequent or drop")
    return got


def _check_values(got: dict, data: Data) -> None:
    where = data.source
    if got["inf"] is not None and (got["inf"] > 0).any():
        bad = {c: int(n) for c, n in got["inf"].items() if n > 0}
        raise UserError(f"data: infinite values (inf/-inf) in {where}, count per column {bad}; "
                        "fix them or mark them missing (empty) so data.preprocessing.impute fills them")
    rows = got["rows"]
    for c, values in got["distinct"].items():
        n = int(values.nunique())  # exact up to DISTINCT_MAX; past it, at least DISTINCT_MAX + 1
        if n > DISTINCT_MAX or (n > 0.5 * rows and n >= 20):
            shown = f"over {DISTINCT_MAX}" if n > DISTINCT_MAX else n
            raise UserError(f"data.features: text column {c!r} of {where} has {shown} distinct values in {rows} "
                            f"rows (an id, a name, an e-mail?); one-hot would make a column of each: name it in "
                            "data.drop or list data.features")
    if data.task == "classification":
        labels = got["classes"]
        if len(labels) < 2:
            shown = plain_label(labels.iloc[0]) if len(labels) else None
            raise UserError(f"data.target: column {data.target!r} has one class ({shown!r}); "
                            "classification needs at least two")
        if len(labels) > 1000:
            raise UserError(f"data.target: column {data.target!r} has over 1000 classes; "
                            "is this a regression target? set data.task: regression")
