"""Forecasting rows: order by time, fit on the first (train) stretch, cut windows of `window` steps.

A window is assigned to the split of its first target step, so test windows may read context from
the end of validation, as a forecaster in production would.
"""
from __future__ import annotations

import os
from functools import partial

import dask.dataframe as dd
import numpy as np
import pandas as pd

from cluster.settings import redact_url

from ..errors import UserError
from ..spec import Data
from .fit import fit_columns, fit_scale
from .preprocessor import ROW, Preprocessor
from .sources import value_line
from .times import sort_by, time_key

# Forecasting sorts the whole series by time and cuts its windows in one process's memory (prepare_series):
# a source above this many rows is refused, in one line, before it is loaded. The windows it then builds take
# window x features float32 values per row, so the memory needed grows past the series' own size.
FORECAST_MAX_ROWS = 5_000_000
FORECAST_ENV = "CONDUCTOR_FORECAST_MAX_ROWS"  # overrides FORECAST_MAX_ROWS


def forecast_limit() -> int:
    raw = os.environ.get(FORECAST_ENV, str(FORECAST_MAX_ROWS))
    try:
        limit = int(raw.replace("_", ""))
    except ValueError:
        limit = 0
    if limit < 1:
        raise UserError(f"{FORECAST_ENV}: {raw!r} is not a row count (a whole number >= 1, e.g. 5000000)")
    return limit


def check_series_size(data: Data, rows: int, nbytes: int) -> None:
    """Refuse a series too long to hold in memory, before it is loaded: `rows` and `nbytes` (its size as
    read) come from the pass that checked its rows."""
    limit = forecast_limit()
    if rows > limit:
        raise UserError(f"data.source: forecasting keeps the whole series in memory; {redact_url(data.source)!r} "
                        f"holds {rows:,} rows ({nbytes / 2**30:.2f} GB as read), above the limit of {limit:,} rows; "
                        "aggregate it to a coarser time step or keep a recent stretch of it, or raise the limit "
                        f"with {FORECAST_ENV} on a machine with the memory")


def order_by_time(pdf: pd.DataFrame, time_column: str | None, time_format: str | None = None,
                  locate=None) -> pd.DataFrame:
    """Rows in time order: numbers as numbers, text as dates (times.time_key); a bad value is a UserError."""
    if time_column:
        pdf = sort_by(pdf, time_key(pdf[time_column], time_column, time_format, locate)[0])
    return pdf.reset_index(drop=True)


def windows(x: np.ndarray, target: np.ndarray, window: int, horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x (N, F), target (N,) → inputs (M, window*F), outputs (M, horizon), index of each window's first target."""
    n = len(x)
    ends = np.arange(window - 1, n - horizon)  # last input step of each window
    if len(ends) == 0:
        return np.zeros((0, window * x.shape[1]), "float32"), np.zeros((0, horizon), "float32"), ends
    idx = ends[:, None] + np.arange(-window + 1, 1)[None, :]  # (M, window)
    inputs = x[idx].reshape(len(ends), -1)
    outputs = target[ends[:, None] + np.arange(1, horizon + 1)[None, :]]
    return inputs.astype("float32"), outputs.astype("float32"), ends + 1


def forecast_inputs(prep: Preprocessor, pdf: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Every window of time-ordered raw rows, the last one included: inputs (M, window*F), last step (M,)."""
    x, target = prep.series(pdf)
    # windows() wants room for the targets; forecast from every window, including the last one
    padded = np.concatenate([target, np.zeros(prep.horizon, target.dtype)])
    xp = np.concatenate([x, np.zeros((prep.horizon, x.shape[1]), x.dtype)])
    inputs, _, first = windows(xp, padded, prep.window, prep.horizon)
    last = first - 1
    keep = last < len(pdf)
    return inputs[keep], last[keep]


def window_frame(inputs, outputs, rows) -> pd.DataFrame:
    frame = pd.DataFrame(inputs, columns=[f"x{i}" for i in range(inputs.shape[1])])
    for h in range(outputs.shape[1]):
        frame[f"y{h}"] = outputs[:, h]
    frame[ROW] = np.asarray(rows, dtype="int64")
    return frame


def prepare_series(pdf: pd.DataFrame, features, numeric, categorical, data: Data, dtypes):
    """The whole series in memory → (Preprocessor, {train, val, test, test_raw} frames)."""
    sp, p = data.split, data.preprocessing
    time_format = None
    if data.time_column:
        key, time_format = time_key(pdf[data.time_column], data.time_column, data.time_format,
                                    partial(value_line, data.source, data.time_column))
        pdf = sort_by(pdf, key)
    pdf = pdf.reset_index(drop=True)
    if p.impute == "drop":
        pdf = pdf.dropna(subset=features).reset_index(drop=True)
    n = len(pdf)
    if n < data.window + data.horizon + 2:
        raise UserError(f"data.window: window ({data.window}) + horizon ({data.horizon}) is longer than the series "
                        f"({n} rows); use a shorter window or more data")
    pdf[ROW] = np.arange(n, dtype="int64")
    n_test = int(round(n * sp.test))
    n_val = int(round(n * sp.val))
    n_train = n - n_val - n_test
    if n_train < data.window + data.horizon + 1:
        raise UserError(f"data.window: the train stretch ({n_train} rows) is shorter than window + horizon "
                        f"({data.window + data.horizon}); use a shorter window or smaller val/test fractions")
    train_raw = dd.from_pandas(pdf.iloc[:n_train], npartitions=1, sort=False)
    prep = fit_columns(train_raw, features, numeric, categorical, data, dtypes)
    prep.scale = fit_scale(prep.transform(pdf.iloc[:n_train], scale=False), prep.columns, p.scale)
    if prep.scale["kind"] != "none":
        col = prep.columns[prep.target_column]
        prep.target_scale = {"center": prep.scale["center"][col], "scale": prep.scale["scale"][col]}
    prep.window, prep.horizon, prep.output_dim = data.window, data.horizon, data.horizon
    prep.time_format = time_format
    prep.input_shape = [data.window, len(prep.columns)]
    x, target = prep.series(pdf)
    inputs, outputs, first = windows(x, target, data.window, data.horizon)
    which = np.where(first < n_train, 0, np.where(first < n_train + n_val, 1, 2))
    frames = {name: window_frame(inputs[which == i], outputs[which == i], first[which == i])
              for i, name in enumerate(("train", "val", "test"))}
    test_first = int(first[which == 2].min()) if (which == 2).any() else n
    # the raw rows that rebuild every test window: its context plus the test stretch
    frames["test_raw"] = pdf.iloc[max(0, test_first - data.window):]
    return prep, frames
