"""Baselines beside every result: what the model must beat, on the same test split and the same
preprocessed features it was scored on.

- classification: `majority` (the most frequent train class), `logistic` (scikit-learn LogisticRegression)
- regression: `mean` (the train mean), `ols` (LinearRegression, ordinary least squares)
- forecasting: `persistence` (the window's last target value at every horizon step, as test/persistence_r2),
  `seasonal_naive` (step h takes the window's value at t+h-s*ceil(h/s); the season s is data.season, or the
  lag in 2..window of highest autocorrelation of the train target series when that is at least
  MIN_AUTOCORRELATION, else the baseline is skipped and says why), `ar` (least squares of every horizon
  step on the window's target values, with intercept)
- generative: `mean_image` (every test row predicted as the train mean, in the scaled space the model sees)

They fit on at most BASELINE_ROWS = 100,000 train rows (a random sample seeded by data.split.seed), so they
stay cheap on large data; every test row is scored, TEST_BATCH rows at a time (only the predictions are kept,
so a test split larger than memory is scored in bounded memory; forecasting, refused above
CONDUCTOR_FORECAST_MAX_ROWS, reads its test windows whole). Keys are `baseline/<name>/<metric>`, regression and
forecasting in the target's own units; a baseline that cannot be fitted has `baseline/<name>/skipped`.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from ..data import ROW, Preprocessor
from ..data.stream import BATCH_ROWS, parquet_batches
from . import metrics as M
from .table import METRICS, baselines_of, verdict, versus  # noqa: F401 - their old home

BASELINE_ROWS = 100_000
TEST_BATCH = BATCH_ROWS
MIN_AUTOCORRELATION = 0.3
LOGISTIC_MAX_ITER = 1000


def read_split(path: str, columns: list[str], limit: int | None = None, seed: int = 0) -> pd.DataFrame:
    """Columns of one split's Parquet; above `limit` rows, a seeded random sample of `limit` rows."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    dataset = ds.dataset(path, format="parquet")
    n = dataset.count_rows()
    if limit is None or n <= limit:
        return dataset.to_table(columns=columns).to_pandas()
    rows = np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))
    # batch by batch, keeping the sampled rows: Dataset.take materialised whole columns (peak 601 vs 448 MiB at 10 M rows)
    parts, start = [], 0
    for batch in parquet_batches(path, columns, TEST_BATCH):
        lo, hi = np.searchsorted(rows, [start, start + batch.num_rows])
        if hi > lo:
            parts.append(batch.take(rows[lo:hi] - start))
        start += batch.num_rows
    return pa.Table.from_batches(parts).to_pandas()


def _x(prep: Preprocessor) -> list[str]:
    return [f"x{i}" for i in range(prep.n_inputs)]


def _window_columns(prep: Preprocessor) -> list[str]:
    """The target column's values over the window, oldest first (x{t*F+f} is feature f at step t)."""
    window, n_features = prep.input_shape
    return [f"x{t * n_features + prep.target_column}" for t in range(window)]


def test_parts(path: str, columns: list[str]):
    """One split's columns as pandas frames of at most TEST_BATCH rows, in file order."""
    for batch in parquet_batches(path, columns, TEST_BATCH):
        yield batch.to_pandas()


def _scored_test(path: str, columns: list[str], predictors: dict) -> tuple[np.ndarray, dict]:
    """Every test row's target and each predictor's output on it, read TEST_BATCH rows at a time."""
    ys, outs = [], {name: [] for name in predictors}
    for part in test_parts(path, columns):
        ys.append(part["y"].to_numpy())
        for name, predict in predictors.items():
            outs[name].append(predict(part))
    return np.concatenate(ys), {name: np.concatenate(parts) for name, parts in outs.items()}


def _classification(train: pd.DataFrame, test: str, prep: Preprocessor, data) -> dict:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    y, k = train["y"].to_numpy("int64"), len(prep.classes)
    # the train split's class counts before any oversampling, when the preprocessor kept them
    counts = prep.class_counts or np.bincount(y, minlength=k)
    predictors, skipped = {}, {}
    if len(np.unique(y)) < 2:
        skipped = {"logistic": {"skipped": "the sampled train rows hold one class"}}
    else:
        with warnings.catch_warnings():  # a baseline a few iterations short of convergence is still a baseline
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = LogisticRegression(max_iter=LOGISTIC_MAX_ITER).fit(train[_x(prep)].to_numpy("float64"), y)

        def logistic(part: pd.DataFrame) -> np.ndarray:
            proba = np.zeros((len(part), k))
            proba[:, model.classes_] = model.predict_proba(part[_x(prep)].to_numpy("float64"))
            return proba

        predictors["logistic"] = logistic
    y_test, outs = _scored_test(test, _x(prep) + ["y"], predictors)
    y_test = y_test.astype("int64")
    majority = np.zeros((len(y_test), k))
    majority[:, int(np.argmax(counts))] = 1.0
    return {"majority": M.classification(y_test, majority), **skipped,
            **{name: M.classification(y_test, proba) for name, proba in outs.items()}}


def _regression(train: pd.DataFrame, test: str, prep: Preprocessor, data) -> dict:
    from sklearn.linear_model import LinearRegression

    y = train["y"].to_numpy("float64")
    ols = LinearRegression().fit(train[_x(prep)].to_numpy("float64"), y)
    y_test, outs = _scored_test(test, _x(prep) + ["y"],
                                {"ols": lambda part: ols.predict(part[_x(prep)].to_numpy("float64"))})
    actual = prep.decode_target(y_test)
    return {"mean": M.regression(actual, prep.decode_target(np.full(len(y_test), y.mean()))),
            "ols": M.regression(actual, prep.decode_target(outs["ols"]))}


def autocorrelation(series: np.ndarray, lag: int) -> float:
    """The sample autocorrelation at `lag` (the denominator is the whole series' sum of squares)."""
    d = np.asarray(series, dtype="float64") - np.mean(series)
    denom = float(d @ d)
    return float(d[:-lag] @ d[lag:] / denom) if denom > 0 and lag < len(d) else float("nan")


def detect_season(series: np.ndarray, window: int) -> tuple[int | None, dict]:
    """The lag in 2..window of highest autocorrelation, if at least MIN_AUTOCORRELATION; else None and why."""
    acf = {lag: autocorrelation(series, lag) for lag in range(2, window + 1)}
    acf = {lag: v for lag, v in acf.items() if np.isfinite(v)}
    if not acf:
        return None, {"skipped": f"no lag in 2..{window} to detect a season on (data.window {window}, "
                                 f"{len(series)} train steps); set data.season"}
    lag = max(acf, key=acf.get)
    if acf[lag] < MIN_AUTOCORRELATION:
        return None, {"skipped": f"no season: the highest train autocorrelation at lags 2..{window} is "
                                 f"{acf[lag]:.2f} (lag {lag}), below {MIN_AUTOCORRELATION}; set data.season to force one"}
    return lag, {"autocorrelation": acf[lag]}


def seasonal_naive(windows: np.ndarray, season: int, horizon: int) -> np.ndarray:
    """(N, window) target values → (N, horizon): step h repeats the value one or more seasons back."""
    last = windows.shape[1] - 1  # the window's last step, t
    steps = [last + h - season * math.ceil(h / season) for h in range(1, horizon + 1)]
    return windows[:, steps]


def _forecasting(train: pd.DataFrame, test: pd.DataFrame, prep: Preprocessor, data, series: np.ndarray) -> dict:
    from sklearn.linear_model import LinearRegression

    cols, ycols = _window_columns(prep), [f"y{h}" for h in range(prep.horizon)]
    windows, actual = test[cols].to_numpy("float64"), prep.decode_target(test[ycols].to_numpy())

    def scored(pred: np.ndarray) -> dict:
        return M.regression(actual, prep.decode_target(pred))

    out = {"persistence": scored(np.repeat(windows[:, -1:], prep.horizon, axis=1))}
    season, info = (data.season, {}) if data.season else detect_season(series, prep.window)
    out["seasonal_naive"] = info if season is None else {
        "season": season, **info, **scored(seasonal_naive(windows, season, prep.horizon))}
    ar = LinearRegression().fit(train[cols].to_numpy("float64"), train[ycols].to_numpy("float64"))
    out["ar"] = scored(ar.predict(windows).reshape(len(test), prep.horizon))
    return out


def _generative(train: pd.DataFrame, test: str, prep: Preprocessor, data) -> dict:
    mean = train[_x(prep)].to_numpy("float64").mean(0)
    squares, cells = 0.0, 0
    for part in test_parts(test, _x(prep)):
        x = part.to_numpy("float64")
        squares, cells = squares + float(((x - mean) ** 2).sum()), cells + x.size
    return {"mean_image": {"recon_mse": squares / cells}}  # as test/recon_mse, the mean as output


def train_series(path: str, prep: Preprocessor, limit: int) -> np.ndarray:
    """The train stretch of the target series in time order (each window's last value): its last `limit` steps."""
    col = _window_columns(prep)[-1]
    frame = read_split(path, [col, ROW]).sort_values(ROW)
    return frame[col].to_numpy("float64")[-limit:]


def score_baselines(prepared_or_paths, prep: Preprocessor, spec) -> dict:
    """Fit the task's baselines on (a sample of) train and score them on test: flat `baseline/<name>/<metric>`.

    `prepared_or_paths` is a Prepared or {"train": path, "test": path}; `spec` a Spec (or its Data)."""
    paths = prepared_or_paths if isinstance(prepared_or_paths, dict) else \
        {s: prepared_or_paths.path(s) for s in ("train", "test")}
    data = getattr(spec, "data", spec)
    if prep.task == "forecasting":
        columns = _window_columns(prep) + [f"y{h}" for h in range(prep.horizon)]
    else:
        columns = _x(prep) + ([] if prep.task == "generative" else ["y"])
    import pyarrow.dataset as ds

    train = read_split(paths["train"], columns, BASELINE_ROWS, data.split.seed)
    if train.empty or ds.dataset(paths["test"], format="parquet").count_rows() == 0:
        return {}
    if prep.task == "forecasting":
        scores = _forecasting(train, read_split(paths["test"], columns), prep, data,
                              train_series(paths["train"], prep, BASELINE_ROWS))
    else:
        scores = {"classification": _classification, "regression": _regression,
                  "generative": _generative}[prep.task](train, paths["test"], prep, data)
    return {f"baseline/{name}/{key}": value for name, values in scores.items() for key, value in values.items()}
