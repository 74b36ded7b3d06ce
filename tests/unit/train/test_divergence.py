"""A diverging run (a NaN or infinite loss) stops at that epoch, says so, and writes no NaN anywhere."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from models import build_model
from tasks.data import preprocess
from tasks.finite import dumps, finite
from tasks.spec import Data, Train
from tasks.train import LossModule, fit, to_tensors
from tasks.train.loop import Progress, diverged_message


def test_a_diverging_fit_stops_at_that_epoch_with_nothing_non_finite(tmp_path):
    data = Data(source="builtin:diabetes", task="regression", target="progression")
    prep = preprocess(data, tmp_path, log=lambda *_: None)
    state = prep.preprocessor

    def batches(split):
        frame = pd.read_parquet(prep.path(split))
        return [to_tensors({c: frame[c].to_numpy()[i:i + 32] for c in frame.columns}, state.n_inputs, "regression")
                for i in range(0, len(frame), 32)]

    torch.manual_seed(0)
    model = build_model("mlp", state.input_shape, state.output_dim, "regression")
    cfg = Train(epochs=30, lr=1e6, optimizer="sgd", early_stopping=None)  # blows up within a few steps
    rows = []
    progress, best = fit(LossModule(model), model, lambda e: batches("train"), lambda: batches("val"), cfg, state,
                         report=lambda row, *_: rows.append(row) or False)
    assert progress.stopped == "diverged" and progress.epoch < cfg.epochs
    assert progress.diverged.endswith(f"at epoch {progress.epoch}") and "loss" in progress.diverged
    assert len(progress.history) == progress.epoch - 1 == len(rows)  # the non-finite epoch is reported nowhere
    text = dumps(progress.to_dict())
    assert "NaN" not in text and "Infinity" not in text
    assert Progress(**json.loads(text)).best == progress.best  # inf survives as null and comes back
    message = diverged_message(progress, cfg.lr)
    assert message.startswith("train.lr: training diverged") and "--set train.lr=100000" in message


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_no_json_output_holds_a_non_finite_number(value):
    doc = {"a": value, "b": [1.0, value, {"c": value}], "d": "text", "e": 2}
    assert finite(doc) == {"a": None, "b": [1.0, None, {"c": None}], "d": "text", "e": 2}
    json.loads(dumps(doc))  # strict parsers read it
