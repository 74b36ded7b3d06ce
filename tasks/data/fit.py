"""Fitting a Preprocessor on the train split, on Dask: imputation values, categories, clipping bounds,
class labels and weights, then the scaling statistics of the encoded columns."""
from __future__ import annotations

import math

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from ..errors import UserError
from ..spec import Data
from .preprocessor import Preprocessor, as_number, as_text, label_text, plain_label

MEDIAN_GRID = np.linspace(0.0, 1.0, 1001)  # its middle point is 0.5


def fit_columns(train: dd.DataFrame, features, numeric, categorical, data: Data, dtypes) -> Preprocessor:
    """Imputation, categories and clipping bounds from the raw train rows; scaling comes after."""
    p = data.preprocessing
    strategy = p.impute
    num = train[numeric].map_partitions(lambda d: d.apply(as_number)) if numeric else None
    todo = {}
    if numeric:
        todo["mean"], todo["std"] = num.mean(), num.std()
        # Dask merges each partition's summary of the asked quantiles: asked 0.5 alone, a median of partitions
        # whose values drift (a sorted or trending file) came out at rank 0.66 (dask/dask#731). Asked on a
        # grid of 1001, every partition is summarised finely and the merged median is within ~1e-3 in rank.
        todo["median"] = (num.quantile(list(MEDIAN_GRID))
                          if strategy in ("median", "drop", "interpolate", "none") else None)
        if strategy == "most_frequent":
            todo["mode"] = {c: num[c].value_counts() for c in numeric}
    todo["cats"] = {c: train[c].map_partitions(as_text, meta=(c, "object")).value_counts() for c in categorical}
    got = dask.compute(todo)[0]
    values, clip = {}, {}
    for c in numeric:
        if strategy == "mean":
            values[c] = float(got["mean"][c])
        elif strategy == "most_frequent":
            counts = got["mode"][c]
            values[c] = float(counts.sort_index().idxmax()) if len(counts) else float(got["mean"][c])
        else:  # median; also the fallback for drop/interpolate/none where a hole still turns up at predict time
            values[c] = float(got["median"][c].iloc[len(MEDIAN_GRID) // 2])
        if p.clip_outliers is not None:
            mu, sd = float(got["mean"][c]), float(got["std"][c] or 0.0)
            if sd > 0:
                clip[c] = [mu - p.clip_outliers * sd, mu + p.clip_outliers * sd]
        if not math.isfinite(values[c]):  # all missing in train: nothing better than zero
            values[c] = 0.0
    categories = {}
    for c in categorical:
        counts = got["cats"][c]
        categories[c] = sorted(str(k) for k in counts.index)
        if len(counts):
            values[c] = str(counts.sort_index().idxmax())  # most frequent, ties by name
    columns = list(numeric)
    for c in categorical:
        columns += [f"{c}={cat}" for cat in categories[c]] if p.categorical == "onehot" else [c]
    return Preprocessor(
        task=data.task, target=data.target, time_column=data.time_column, features=features, numeric=numeric,
        categorical=categorical, dtypes={c: str(dtypes[c]) for c in features},
        impute={"strategy": strategy, "values": values}, clip=clip, categories=categories,
        encoding=p.categorical if p.categorical != "none" else "onehot",
        columns=columns, sources=[col.split("=", 1)[0] for col in columns],
    )


def fit_scale(encoded: dd.DataFrame | pd.DataFrame, columns: list[str], kind: str) -> dict:
    """Scaling statistics of the encoded train columns (x0..), keyed by encoded column name."""
    if kind == "none":
        return {"kind": "none"}
    if kind == "standard":
        center, width = dask.compute(encoded.mean(), encoded.std(ddof=0))
    else:
        center, top = dask.compute(encoded.min(), encoded.max())
        width = top - center
    width = width.where(width > 1e-12, 1.0).fillna(1.0)
    return {"kind": kind,
            "center": {columns[i]: float(center.iloc[i]) for i in range(len(columns))},
            "scale": {columns[i]: float(width.iloc[i]) for i in range(len(columns))}}


def fit_target(prep: Preprocessor, train: dd.DataFrame, data: Data) -> None:
    """Classes (ordered numbers first, then text), counts and weights; or the regression target's scale."""
    if data.task == "classification":
        counts = train[data.target].map_partitions(label_text, meta=(data.target, "object")).value_counts().compute()
        by_text = {}
        for v in train[data.target].dropna().drop_duplicates().compute():
            by_text.setdefault(label_text(pd.Series([v])).iloc[0], plain_label(v))
        prep.classes = [by_text[t] for t in sorted(by_text, key=_label_order)]
        n, k = float(counts.sum()), len(prep.classes)
        prep.class_counts = [int(counts.get(str(c), 0)) for c in prep.classes]
        if k < 2:
            raise UserError(f"data.target: the train split of {data.target!r} holds one class; "
                            "classification needs at least two")
        if data.preprocessing.balance == "class_weight":
            prep.class_weight = [n / (k * max(c, 1)) for c in prep.class_counts]
        prep.output_dim = k
    elif data.task == "regression":
        if data.preprocessing.scale != "none":
            y = train[data.target].map_partitions(as_number)
            mu, sd = dask.compute(y.mean(), y.std(ddof=0))
            prep.target_scale = {"center": float(mu), "scale": float(sd) if sd > 1e-12 else 1.0}
        prep.output_dim = 1
    else:
        prep.output_dim = 0


def _label_order(t: str):
    try:
        return (False, float(t), "")
    except ValueError:
        return (True, 0.0, t)


def input_shape(data: Data, d: int) -> list[int]:
    if data.shape is None:
        return [d]
    if int(np.prod(data.shape)) != d:
        raise UserError(f"data.shape: {data.shape} holds {int(np.prod(data.shape))} values but the features "
                        f"encode to {d} columns")
    return list(data.shape)
