"""Baselines against oracles computed here (scikit-learn, numpy least squares, the raw series by hand), on
small synthetic sets through the real preprocessing (Dask's threaded scheduler, no engines)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from tasks.data import ROW, preprocess
from tasks.errors import UserError
from tasks.evaluate import baselines as B
from tasks.evaluate import score_baselines, verdict, versus
from tasks.spec import Data, validate


def r2_rmse_mae(actual: np.ndarray, pred: np.ndarray) -> dict:
    a, p = np.ravel(actual), np.ravel(pred)
    return {"r2": 1 - ((a - p) ** 2).sum() / ((a - a.mean()) ** 2).sum(),
            "rmse": np.sqrt(((a - p) ** 2).mean()), "mae": np.abs(a - p).mean()}


def assert_metrics(got: dict, name: str, want: dict, rel: float = 1e-6) -> None:
    for k, v in want.items():
        assert got[f"baseline/{name}/{k}"] == pytest.approx(v, rel=rel, abs=1e-9), f"{name}/{k}"


def model_rows(path: str) -> tuple[np.ndarray, pd.DataFrame]:
    frame = pd.read_parquet(path)
    return frame.filter(regex=r"^x\d+$").to_numpy("float64"), frame


def test_classification_majority_and_logistic(tmp_path):
    rng = np.random.default_rng(0)
    n = 600
    a, b = rng.normal(size=n), rng.normal(size=n)
    label = np.where(a + 0.5 * b > 0.6, "spam", np.where(a < -1.2, "eggs", "ham"))  # ham is the majority
    src = tmp_path / "c.csv"
    pd.DataFrame({"a": a, "b": b, "c": rng.choice(["x", "y"], n), "label": label}).to_csv(src, index=False)
    data = Data(source=str(src), target="label")
    prepared = preprocess(data, tmp_path / "home")
    prep = prepared.preprocessor
    got = score_baselines(prepared, prep, data)

    x, train = model_rows(prepared.path("train"))
    xt, test = model_rows(prepared.path("test"))
    majority = np.full(len(test), np.bincount(train["y"]).argmax())
    assert prep.classes[majority[0]] == "ham"
    logistic = LogisticRegression(max_iter=1000).fit(x, train["y"]).predict(xt)
    for name, pred in (("majority", majority), ("logistic", logistic)):
        assert_metrics(got, name, {"accuracy": accuracy_score(test["y"], pred),
                                   "f1_macro": f1_score(test["y"], pred, average="macro", zero_division=0),
                                   "balanced_accuracy": balanced_accuracy_score(test["y"], pred)})
    assert got["baseline/logistic/accuracy"] > got["baseline/majority/accuracy"]
    assert set(got) == {f"baseline/{n}/{m}" for n in ("majority", "logistic")
                        for m in ("accuracy", "f1_macro", "balanced_accuracy")}


def test_regression_mean_and_ols_in_target_units(tmp_path):
    rng = np.random.default_rng(1)
    n = 500
    a, b = rng.normal(size=n), rng.uniform(0, 10, size=n)
    src = tmp_path / "r.csv"
    pd.DataFrame({"a": a, "b": b, "price": 1000 + 300 * a - 20 * b + rng.normal(0, 50, n)}).to_csv(src, index=False)
    data = Data(source=str(src), task="regression", target="price")
    prepared = preprocess(data, tmp_path / "home")
    prep = prepared.preprocessor
    got = score_baselines(prepared, prep, data)

    x, train = model_rows(prepared.path("train"))
    xt, test = model_rows(prepared.path("test"))
    y, actual = prep.decode_target(train["y"]), prep.decode_target(test["y"])  # dollars, not z-scores
    coef, *_ = np.linalg.lstsq(np.c_[np.ones(len(x)), x], y, rcond=None)  # closed-form least squares
    assert_metrics(got, "ols", r2_rmse_mae(actual, np.c_[np.ones(len(xt)), xt] @ coef))
    assert_metrics(got, "mean", r2_rmse_mae(actual, np.full(len(xt), y.mean())))
    assert got["baseline/ols/r2"] > 0.9 and got["baseline/mean/rmse"] > 250  # in the target's units


def series_csv(tmp_path, values: np.ndarray):
    src = tmp_path / "s.csv"
    pd.DataFrame({"t": np.arange(len(values)), "value": values}).to_csv(src, index=False)
    return src


def forecast_oracle(prepared, values: np.ndarray, window: int, horizon: int, season: int) -> dict:
    """Every baseline straight from the raw series: window row r holds steps r-window..r-1, targets r..r+h-1."""
    rows = {s: pd.read_parquet(prepared.path(s))[ROW].to_numpy() for s in ("train", "test")}
    steps = np.arange(1, horizon + 1)
    actual = values[rows["test"][:, None] + steps[None, :] - 1]
    last = values[rows["test"] - 1]
    seasonal = values[rows["test"][:, None] - 1 + steps[None, :] - season * np.ceil(steps / season).astype(int)]
    inputs = {s: values[r[:, None] + np.arange(-window, 0)[None, :]] for s, r in rows.items()}
    outputs = values[rows["train"][:, None] + steps[None, :] - 1]
    coef, *_ = np.linalg.lstsq(np.c_[np.ones(len(outputs)), inputs["train"]], outputs, rcond=None)
    return {"persistence": r2_rmse_mae(actual, np.repeat(last[:, None], horizon, axis=1)),
            "seasonal_naive": r2_rmse_mae(actual, seasonal),
            "ar": r2_rmse_mae(actual, np.c_[np.ones(len(actual)), inputs["test"]] @ coef)}


@pytest.mark.parametrize("season", [None, 5])
def test_forecasting_persistence_seasonal_naive_and_ar(season, tmp_path):
    rng = np.random.default_rng(2)
    n, window, horizon = 400, 10, 3
    t = np.arange(n)
    values = 50 + 10 * np.sin(2 * np.pi * t / 7) + 0.02 * t + rng.normal(0, 1, n)  # a weekly season
    data = Data(source=str(series_csv(tmp_path, values)), task="forecasting", target="value", time_column="t",
                window=window, horizon=horizon, season=season)
    prepared = preprocess(data, tmp_path / "home")
    got = score_baselines(prepared, prepared.preprocessor, data)

    used = season or 7  # detected: the period of the sine
    assert got["baseline/seasonal_naive/season"] == used
    assert ("baseline/seasonal_naive/autocorrelation" in got) == (season is None)
    for name, want in forecast_oracle(prepared, values, window, horizon, used).items():
        assert_metrics(got, name, want, rel=1e-4)  # float32 Parquet, decoded
    if season is None:
        assert got["baseline/seasonal_naive/r2"] > got["baseline/persistence/r2"]


def test_persistence_is_test_persistence_r2_of_evaluate(tmp_path):
    from models import build_model
    from tasks.evaluate import evaluate
    from tasks.train import local_batches

    values = np.cumsum(np.random.default_rng(3).normal(size=300))
    data = Data(source=str(series_csv(tmp_path, values)), task="forecasting", target="value", time_column="t",
                window=6, horizon=2)
    prepared = preprocess(data, tmp_path / "home")
    prep = prepared.preprocessor
    model = build_model("linear", prep.input_shape, prep.output_dim, prep.task, {})
    result = evaluate(model, local_batches(prepared.path("test"), prep.n_inputs, prep.task), prep, [],
                      tmp_path / "run")
    got = score_baselines(prepared, prep, data)
    assert got["baseline/persistence/r2"] == pytest.approx(result["metrics"]["test/persistence_r2"], rel=1e-9)


def test_no_season_in_noise_is_skipped_with_its_reason(tmp_path):
    values = np.random.default_rng(4).normal(size=300)
    data = Data(source=str(series_csv(tmp_path, values)), task="forecasting", target="value", time_column="t",
                window=8)
    prepared = preprocess(data, tmp_path / "home")
    got = score_baselines(prepared, prepared.preprocessor, data)
    assert "below 0.3" in got["baseline/seasonal_naive/skipped"] and "data.season" in got["baseline/seasonal_naive/skipped"]
    assert "baseline/seasonal_naive/r2" not in got and "baseline/ar/r2" in got and "baseline/persistence/r2" in got
    assert any("skipped:" in r.get("note", "") for r in versus(got))


def test_seasonal_naive_by_hand():
    windows = np.arange(12.0).reshape(2, 6)  # window 6: steps t-5..t
    assert B.seasonal_naive(windows, season=4, horizon=9)[0].tolist() == [2, 3, 4, 5, 2, 3, 4, 5, 2]
    assert B.seasonal_naive(windows, season=6, horizon=2)[1].tolist() == [6, 7]
    assert math.isclose(B.autocorrelation(np.tile([1.0, -1.0], 50), 2), 0.98)


def test_generative_mean_image(tmp_path):
    rng = np.random.default_rng(5)
    src = tmp_path / "g.csv"
    pd.DataFrame(rng.normal(3, 2, size=(300, 6)), columns=list("abcdef")).to_csv(src, index=False)
    data = Data(source=str(src), task="generative", preprocessing={"scale": "minmax"})
    prepared = preprocess(data, tmp_path / "home")
    got = score_baselines(prepared, prepared.preprocessor, data)
    x, _ = model_rows(prepared.path("train"))
    xt, _ = model_rows(prepared.path("test"))
    assert got == {"baseline/mean_image/recon_mse": pytest.approx(((xt - x.mean(0)) ** 2).mean(), rel=1e-6)}


def test_train_rows_are_a_seeded_sample_of_at_most_baseline_rows(tmp_path, monkeypatch):
    rng = np.random.default_rng(6)
    src = tmp_path / "r.csv"
    pd.DataFrame({"a": rng.normal(size=400), "y": rng.normal(size=400)}).to_csv(src, index=False)
    data = Data(source=str(src), task="regression", target="y")
    prepared = preprocess(data, tmp_path / "home")
    one = B.read_split(prepared.path("train"), ["x0", "y"], limit=50, seed=0)
    assert len(one) == 50 and one.equals(B.read_split(prepared.path("train"), ["x0", "y"], limit=50, seed=0))
    assert not one.equals(B.read_split(prepared.path("train"), ["x0", "y"], limit=50, seed=1))
    full = score_baselines(prepared, prepared.preprocessor, data)
    monkeypatch.setattr(B, "BASELINE_ROWS", 50)
    sampled = score_baselines(prepared, prepared.preprocessor, data)
    assert sampled["baseline/mean/rmse"] != full["baseline/mean/rmse"]
    assert "BASELINE_ROWS = 100,000" in B.__doc__


def test_verdict_names_the_best_baseline_and_the_gap():
    metrics = {"test/r2": 0.62, "baseline/persistence/r2": 0.98, "baseline/ar/r2": 0.9, "baseline/ar/rmse": 1.0}
    assert verdict("forecasting", metrics) == \
        "warning: the model's test/r2 0.62 is below the persistence baseline's 0.98 (gap 0.36)"
    assert verdict("forecasting", {**metrics, "test/r2": 0.99}) is None
    assert verdict("classification", {"test/accuracy": 0.9}) is None
    assert verdict("generative", {"test/recon_mse": 0.5, "baseline/mean_image/recon_mse": 1.4}) is None
    line = verdict("generative", {"test/recon_mse": 1.5, "baseline/mean_image/recon_mse": 1.4})
    assert line.startswith("warning: the model's test/recon_mse 1.5 is above the mean_image baseline's 1.4 (gap 0.1")
    skipped = {"test/r2": 0.5, "baseline/seasonal_naive/skipped": "no season", "baseline/ar/r2": 0.4}
    assert verdict("forecasting", skipped) is None


def test_summary_and_report_show_model_vs_baselines():
    from rich.console import Console

    from flows.cli.app import print_summary
    from tasks.runs.report import report_html

    metrics = {"test/accuracy": 0.5, "test/f1_macro": 0.4, "epochs": 3, "baseline/majority/accuracy": 0.7,
               "baseline/majority/f1_macro": 0.2, "baseline/logistic/accuracy": 0.9, "baseline/logistic/f1_macro": 0.8}
    line = verdict("classification", metrics)
    assert line == "warning: the model's test/accuracy 0.5 is below the logistic baseline's 0.9 (gap 0.4)"
    console = Console(record=True, width=140)
    print_summary({"name": "n", "run_id": "r", "run_dir": "d", "metrics": metrics, "duration_s": 1.0,
                   "verdict": line}, as_json=False, console=console)
    text = console.export_text()
    assert "model vs baselines" in text and "logistic" in text and line in text
    assert "baseline/logistic/accuracy" not in text  # one compact table, not a row per key
    spec = validate({"name": "n", "data": {"source": "builtin:digits", "target": "label"},
                     "model": {"name": "logistic"}})
    page = report_html(spec, metrics, [], {}, {})
    assert "model vs baselines" in page and "<td>logistic</td>" in page and line.replace("'", "&#x27;") in page


@pytest.mark.parametrize("data, match", [
    ({"window": 6, "season": 7}, "data.season: 7 is longer than data.window \\(6\\)"),
    ({"season": 1}, "data.season: Input should be greater than or equal to 2"),
    ({"task": "regression", "season": 4}, "data.season: only for task forecasting"),
])
def test_bad_season_is_refused(data, match):
    raw = {"name": "s", "data": {"source": "builtin:sunspots", "task": "forecasting", "target": "sunactivity",
                                 "time_column": "year", **data}, "model": {"name": "linear"}}
    with pytest.raises(UserError, match=f"^spec: {match}"):
        validate(raw)


def test_season_leaves_the_preprocessing_cache_alone(tmp_path):
    values = np.sin(np.arange(200) / 3.0)
    kw = {"source": str(series_csv(tmp_path, values)), "task": "forecasting", "target": "value",
          "time_column": "t", "window": 8}
    first = preprocess(Data(**kw), tmp_path / "home")
    again = preprocess(Data(**kw, season=4), tmp_path / "home")
    assert again.cached and again.dir == first.dir
