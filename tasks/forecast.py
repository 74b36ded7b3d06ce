"""Forecasting rows: order by time, fit on the first (train) stretch, cut windows of `window` steps.

A window is assigned to the split of its first target step, so test windows may read context from
the end of validation, as a forecaster in production would.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import UserError
from .spec import Data


def order_by_time(pdf: pd.DataFrame, time_column: str | None) -> pd.DataFrame:
    if time_column:
        pdf = pdf.sort_values(time_column, kind="stable")
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


def window_frame(inputs, outputs, rows) -> pd.DataFrame:
    frame = pd.DataFrame(inputs, columns=[f"x{i}" for i in range(inputs.shape[1])])
    for h in range(outputs.shape[1]):
        frame[f"y{h}"] = outputs[:, h]
    frame["__row__"] = np.asarray(rows, dtype="int64")
    return frame


def series_xy(pdf: pd.DataFrame, state: dict) -> tuple[np.ndarray, np.ndarray]:
    """Encoded inputs (N, F) and the scaled target column (N,) of time-ordered raw rows."""
    from .preprocess import encode

    x = encode(pdf, state).to_numpy()
    return x, x[:, state["columns"].index(state["target"])]


def preprocess_series(pdf, features, numeric, categorical, data: Data, dtypes):
    from .preprocess import ROW, _fit_scale, _fit_state, encode

    sp, p = data.split, data.preprocessing
    pdf = order_by_time(pdf, data.time_column)
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
    import dask.dataframe as dd

    train_raw = dd.from_pandas(pdf.iloc[:n_train], npartitions=1, sort=False)
    state = _fit_state(train_raw, features, numeric, categorical, data, dtypes)
    state["scale"] = _fit_scale(encode(pdf.iloc[:n_train], state, scale=False), state, p.scale)
    target_col = state["columns"].index(data.target)
    col = state["columns"][target_col]
    if state["scale"]["kind"] != "none":
        state["target_scale"] = {"center": state["scale"]["center"][col], "scale": state["scale"]["scale"][col]}
    state.update(window=data.window, horizon=data.horizon, output_dim=data.horizon,
                 input_shape=[data.window, len(state["columns"])])
    x, target = series_xy(pdf, state)
    inputs, outputs, first = windows(x, target, data.window, data.horizon)
    which = np.where(first < n_train, 0, np.where(first < n_train + n_val, 1, 2))
    frames = {name: window_frame(inputs[which == i], outputs[which == i], first[which == i])
              for i, name in enumerate(("train", "val", "test"))}
    test_first = int(first[which == 2].min()) if (which == 2).any() else n
    # the raw rows that rebuild every test window: its context plus the test stretch
    frames["test_raw"] = pdf.iloc[max(0, test_first - data.window):]
    return state, frames
