"""Evaluation that streams: the test split is read batch by batch, outputs and targets are kept for every row,
inputs only for permutation importance's sample, and baselines score every test row a batch at a time.
Checked against the same numbers computed from the whole split in memory."""
from __future__ import annotations

import importlib
import json

import numpy as np
import pandas as pd
import pytest
import torch

from models import build_model
from tasks.data import preprocess
from tasks.evaluate import baselines as B
from tasks.evaluate import score_baselines
from tasks.evaluate.outputs import NO_INPUTS, predict_all, sample_rows, score
from tasks.spec import Data
from tasks.train import local_batches, to_tensors, whole_split

E = importlib.import_module("tasks.evaluate.evaluate")  # the module (tasks.evaluate.evaluate is also the function)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("streamed")
    rng = np.random.default_rng(3)
    n = 3000
    a, b = rng.normal(size=n), rng.normal(size=n)
    label = np.where(a + 0.5 * b > 0.3, "yes", "no")
    pd.DataFrame({"a": a, "b": b, "c": rng.choice(["x", "y", "z"], n), "label": label}).to_csv(tmp / "s.csv", index=False)
    data = Data(source=str(tmp / "s.csv"), target="label")
    return data, preprocess(data, tmp / "home", log=lambda *_: None)


def model_of(prep):
    torch.manual_seed(0)
    return build_model("mlp", prep.input_shape, prep.output_dim, prep.task, {"hidden": [8]})


def test_local_batches_stream_the_split_in_file_order(prepared):
    _, p = prepared
    prep = p.preprocessor
    frame = pd.read_parquet(p.path("test"))
    parts = list(local_batches(p.path("test"), prep.n_inputs, prep.task, batch_size=100))
    assert max(len(b["x"]) for b in parts) <= 100 and len(parts) >= len(frame) // 100
    whole = to_tensors({c: frame[c].to_numpy() for c in frame.columns}, prep.n_inputs, prep.task)
    for key in ("x", "y", "row"):
        assert torch.equal(torch.cat([b[key] for b in parts]), whole[key])
        assert torch.equal(whole_split(p.path("test"), prep.n_inputs, prep.task)[key], whole[key])


def test_predict_all_keeps_inputs_only_for_the_sample(prepared):
    _, p = prepared
    prep = p.preprocessor
    model = model_of(prep)
    batches = lambda: local_batches(p.path("test"), prep.n_inputs, prep.task, batch_size=64)  # noqa: E731
    full = predict_all(model, batches())
    n = full["n"]
    rows = sample_rows(n, 50, seed=1)
    part = predict_all(model, batches(), x_rows=rows)
    none = predict_all(model, batches(), x_rows=NO_INPUTS)
    assert len(rows) == 50 and sample_rows(n, n, 1) is None
    np.testing.assert_array_equal(part["x"], full["x"][rows])  # the sampled rows, across batch edges
    assert none["x"] is None
    for pred in (part, none):
        np.testing.assert_array_equal(pred["out"], full["out"])
        np.testing.assert_array_equal(pred["y"], full["y"])
        assert score(prep.task, pred, prep) == score(prep.task, full, prep)


def test_evaluate_scores_every_row_and_samples_importance(prepared, tmp_path, monkeypatch):
    _, p = prepared
    prep = p.preprocessor
    model = model_of(prep)
    history = [{"epoch": 1, "train/loss": 1.0, "val/loss": 1.0, "val/accuracy": 0.5}]
    batches = lambda: local_batches(p.path("test"), prep.n_inputs, prep.task, batch_size=64)  # noqa: E731
    whole = E.evaluate(model, batches(), prep, history, tmp_path / "whole")
    monkeypatch.setattr(E, "IMPORTANCE_ROWS", 40)
    seen = {}
    real = E.permutation_importance
    monkeypatch.setattr(E, "permutation_importance", lambda m, pred, *a, **k: (
        seen.update(x=len(pred["x"]), y=len(pred["y"])), real(m, pred, *a, **k))[1])
    sampled = E.evaluate(model, batches(), prep, history, tmp_path / "sampled")
    assert sampled["metrics"] == whole["metrics"]  # every test row scored either way
    assert seen == {"x": 40, "y": 40} and sampled["importance_rows"] == 40
    assert whole["importance_rows"] == prep.counts["test"] and set(sampled["importance"]) == set(whole["importance"])
    frames = [pd.read_parquet(tmp_path / d / "predictions.parquet") for d in ("whole", "sampled")]
    assert len(frames[0]) == prep.counts["test"] and frames[0].equals(frames[1])
    assert json.loads((tmp_path / "sampled" / "eval.json").read_text())["importance_rows"] == 40


def test_baselines_score_the_test_split_batch_by_batch(prepared, monkeypatch):
    data, p = prepared
    whole = score_baselines(p, p.preprocessor, data)
    monkeypatch.setattr(B, "TEST_BATCH", 7)
    batched = score_baselines(p, p.preprocessor, data)
    assert batched.keys() == whole.keys()
    for key, value in whole.items():
        assert batched[key] == pytest.approx(value, rel=1e-12), key
    assert sum(len(part) for part in B.test_parts(p.path("test"), ["y"])) == p.preprocessor.counts["test"]


def test_confusion_counts_equal_scikit_learn():
    from sklearn.metrics import confusion_matrix

    from tasks.evaluate.metrics import confusion_counts

    rng = np.random.default_rng(0)
    actual, predicted = rng.integers(0, 4, 5000), rng.integers(0, 4, 5000)
    predicted[:10] = 3  # class 2 may be missing from one side: its row or column is zeros, not dropped
    actual[actual == 2] = 1
    np.testing.assert_array_equal(confusion_counts(actual, predicted, 4),
                                  confusion_matrix(actual, predicted, labels=[0, 1, 2, 3]))
