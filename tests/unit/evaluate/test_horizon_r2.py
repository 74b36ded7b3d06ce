"""Forecasts over several steps are scored per step: test/r2_t+1 … test/r2_t+h and plots/horizon_r2.png,
against R² computed here from predictions.parquet; a one-step forecast gets neither."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import r2_score

from models import build_model
from tasks.data import preprocess
from tasks.evaluate import evaluate
from tasks.spec import Data
from tasks.train import local_batches


@pytest.fixture(scope="module")
def series_csv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("series")
    t = np.arange(160)
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"t": t, "level": 0.1 * t + np.sin(t / 4) + rng.normal(0, 0.1, len(t))})
    frame.to_csv(tmp / "s.csv", index=False)
    return tmp / "s.csv"


def run_evaluate(csv, horizon: int, out):
    prepared = preprocess(Data(source=str(csv), task="forecasting", target="level", time_column="t", window=8,
                               horizon=horizon), out / "home", log=lambda *_: None)
    prep = prepared.preprocessor
    torch.manual_seed(0)
    model = build_model("rnn", prep.input_shape, prep.output_dim, prep.task, {"hidden_size": 8},
                        target_index=prep.target_index)
    history = [{"epoch": 1, "train/loss": 1.0, "val/loss": 1.0, "val/r2": 0.0}]
    result = evaluate(model, local_batches(prepared.path("test"), prep.n_inputs, prep.task), prep, history,
                      out / "run")
    return result, pd.read_parquet(out / "run" / "predictions.parquet")


def test_each_horizon_step_has_its_r2_and_a_plot(series_csv, tmp_path):
    result, frame = run_evaluate(series_csv, 3, tmp_path)
    metrics = result["metrics"]
    for h in (1, 2, 3):
        want = r2_score(frame[f"target_t+{h}"], frame[f"prediction_t+{h}"])
        assert metrics[f"test/r2_t+{h}"] == pytest.approx(want, rel=1e-6, abs=1e-9)
    assert "test/r2_t+4" not in metrics
    # test/persistence_r2 stays the R² of every step pooled, as before: the value before the first target
    series = pd.read_csv(series_csv)["level"].to_numpy()
    targets = frame[[f"target_t+{h}" for h in (1, 2, 3)]].to_numpy()
    last = np.repeat(series[frame["row"].to_numpy() - 1][:, None], 3, axis=1)
    assert metrics["test/persistence_r2"] == pytest.approx(r2_score(targets.ravel(), last.ravel()), rel=1e-5)
    assert "plots/horizon_r2.png" in result["plots"]
    assert (tmp_path / "run" / "plots" / "horizon_r2.png").stat().st_size > 1000


def test_a_one_step_forecast_has_no_per_step_keys(series_csv, tmp_path):
    result, _ = run_evaluate(series_csv, 1, tmp_path)
    assert not [k for k in result["metrics"] if k.startswith("test/r2_t+")]
    assert "plots/horizon_r2.png" not in result["plots"]
    assert "test/persistence_r2" in result["metrics"]
