"""Fitting a Preprocessor on the train split, on Dask: imputation values, categories, clipping bounds,
class labels and weights, then the scaling statistics of the encoded columns.

Each fit comes in two halves: `*_todo` says lazily what to count, `*_from` turns the counts into the fitted
values, so that tasks/data/prepare.py computes the counts of several fits in one pass over the source.
`fit_columns` and `fit_scale` do both at once (forecasting's in-memory series, tasks/data/series.py)."""
from __future__ import annotations

import json
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
    got = dask.compute(columns_todo(train, numeric, categorical, data))[0]
    return columns_from(got, features, numeric, categorical, data, dtypes)


def columns_todo(train: dd.DataFrame, numeric, categorical, data: Data) -> dict:
    strategy = data.preprocessing.impute
    num = train[numeric].map_partitions(lambda d: d.apply(as_number)) if numeric else None
    todo = {}
    if numeric:
        todo["moments"] = moments(num)
        # Dask merges each partition's summary of the asked quantiles: asked 0.5 alone, a median of partitions
        # whose values drift (a sorted or trending file) came out at rank 0.66 (dask/dask#731). Asked on a
        # grid of 1001, every partition is summarised finely and the merged median is within ~1e-3 in rank.
        todo["median"] = (num.quantile(list(MEDIAN_GRID))
                          if strategy in ("median", "drop", "interpolate", "none") else None)
        if strategy == "most_frequent":
            todo["mode"] = {c: num[c].value_counts(split_out=1) for c in numeric}
    todo["cats"] = {c: train[c].map_partitions(as_text, meta=(c, "object")).value_counts(split_out=1)
                    for c in categorical}
    return todo


def columns_from(got: dict, features, numeric, categorical, data: Data, dtypes) -> Preprocessor:
    p = data.preprocessing
    strategy = p.impute
    values, clip = {}, {}
    if numeric:
        got = {**got, **dict(zip(("mean", "std"), mean_sd(got["moments"], numeric, ddof=1), strict=True))}
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
    return scale_from(dask.compute(scale_todo(encoded, kind))[0], columns, kind)


def scale_todo(encoded: dd.DataFrame | pd.DataFrame, kind: str) -> dict:
    if kind == "none":
        return {}
    if kind == "standard":
        return {"moments": moments(encoded)}
    return {"center": encoded.min(), "top": encoded.max()}


def scale_from(got: dict, columns: list[str], kind: str) -> dict:
    if kind == "none":
        return {"kind": "none"}
    if kind == "standard":
        center, width = mean_sd(got["moments"], columns, ddof=0)
    else:
        center, width = got["center"], got["top"] - got["center"]
    width = width.where(width > 1e-12, 1.0).fillna(1.0)
    return {"kind": kind,
            "center": {columns[i]: float(center.iloc[i]) for i in range(len(columns))},
            "scale": {columns[i]: float(width.iloc[i]) for i in range(len(columns))}}


MOMENTS_META = pd.DataFrame({"i": pd.Series(dtype="int64"), "n": pd.Series(dtype="float64"),
                             "mean": pd.Series(dtype="float64"), "m2": pd.Series(dtype="float64")})


def moments(frame: dd.DataFrame | pd.DataFrame):
    """Per partition and column (by position i): the count, mean and sum of squared deviations of the values
    (missing ones skipped), in float64 (the encoded columns are float32). mean_sd merges them."""
    if isinstance(frame, pd.DataFrame):
        return _moments(frame)
    return frame.map_partitions(_moments, meta=MOMENTS_META)


def _moments(pdf: pd.DataFrame) -> pd.DataFrame:
    n, mean, m2 = [], [], []
    for i in range(pdf.shape[1]):  # a column at a time: no copy of the whole partition in float64
        v = pdf.iloc[:, i].to_numpy(dtype="float64", na_value=np.nan)
        v = v[~np.isnan(v)]
        mu = v.mean() if len(v) else np.nan
        n.append(len(v))
        mean.append(mu)
        m2.append(float(np.square(v - mu).sum()) if len(v) else 0.0)
    return pd.DataFrame({"i": np.arange(pdf.shape[1], dtype="int64"), "n": np.asarray(n, dtype="float64"),
                         "mean": np.asarray(mean, dtype="float64"), "m2": np.asarray(m2, dtype="float64")})


def mean_sd(parts: pd.DataFrame, columns: list[str], ddof: int) -> tuple[pd.Series, pd.Series]:
    """The partitions' moments merged: each column's mean and standard deviation (NaN where no value, or one
    value and ddof 1), as pandas gives them. Merged exactly: m2 = sum of m2_p + n_p (mean_p - mean)^2."""
    i, n_p = parts["i"].to_numpy(), parts["n"].to_numpy()
    mean_p = np.where(n_p > 0, parts["mean"].to_numpy(), 0.0)
    k = len(columns)
    n = np.bincount(i, weights=n_p, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(i, weights=n_p * mean_p, minlength=k) / n
        m2 = np.bincount(i, weights=parts["m2"].to_numpy() + n_p * np.square(mean_p - mean[i]), minlength=k)
        sd = np.where(n - ddof > 0, np.sqrt(m2 / (n - ddof)), np.nan)
    return pd.Series(mean, index=columns), pd.Series(sd, index=columns)


LABELS_META = pd.DataFrame({"text": pd.Series(dtype="str"), "label": pd.Series(dtype="str"),
                            "n": pd.Series(dtype="int64")})


def label_summary(y: pd.Series) -> pd.DataFrame:
    """One partition's labels: each label's text once, in order of first appearance, with the first raw value
    that reads so (as JSON, as plain_label keeps it) and how many rows hold it."""
    text = label_text(y)
    keep = text.notna().to_numpy()
    codes, uniques = pd.factorize(text[keep])
    first = np.unique(codes, return_index=True)[1] if len(codes) else np.zeros(0, dtype=int)
    raw = y[keep].iloc[first]
    return pd.DataFrame({"text": pd.Series(np.asarray(uniques, dtype=object), dtype="str"),
                         "label": pd.Series([json.dumps(plain_label(v)) for v in raw], dtype="str"),
                         "n": np.bincount(codes, minlength=len(uniques)).astype("int64")})


def target_todo(train: dd.DataFrame, data: Data) -> dict:
    if data.task == "classification":
        return {"labels": train[data.target].map_partitions(label_summary, meta=LABELS_META)}
    if data.task == "regression" and data.preprocessing.scale != "none":
        y = train[data.target].map_partitions(as_number)
        return {"mean": y.mean(), "std": y.std(ddof=0)}
    return {}


def target_from(prep: Preprocessor, got: dict, data: Data) -> None:
    if data.task == "classification":
        labels = got["labels"]
        counts = labels.groupby("text", sort=False)["n"].sum()
        first = labels.drop_duplicates("text")  # the raw value a label's text first comes from, in source order
        by_text = {t: json.loads(raw) for t, raw in zip(first["text"], first["label"], strict=True)}
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
            mu, sd = got["mean"], got["std"]
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
