"""Every spec in experiments/ validates and runs a smoke-sized pass: preprocess, one epoch of the same
`fit` loop that Ray Train wraps, and the evaluation with its plots (full runs: benchmarks/examples.py)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import ROOT
from models import build_model
from tasks.data import preprocess
from tasks.evaluate import evaluate
from tasks.spec_file import load_spec
from tasks.sweep import check_space
from tasks.train import LossModule, fit, to_tensors

SPECS = sorted((ROOT / "experiments").glob("*.yaml"))
EXPECTED = {"classification": "test/accuracy", "regression": "test/r2", "forecasting": "test/r2",
            "generative": "test/recon_mse"}


def test_the_brief_has_its_examples():
    names = {p.stem for p in SPECS}
    assert {"digits-cnn", "digits-mlp", "diabetes-linear", "breast-cancer-logistic", "sunspots-lstm",
            "digits-vae"} <= names


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_example_smoke(path: Path, tmp_path):
    spec = load_spec(path, {"train.epochs": 1})
    if spec.sweep is not None:
        check_space(spec)
    prep = preprocess(spec.data, tmp_path / "home", log=lambda *_: None)
    state = prep.preprocessor
    task = state.task

    def batches(split):
        frame = pd.read_parquet(prep.path(split))
        return [to_tensors({c: frame[c].to_numpy()[i:i + 128] for c in frame.columns}, state.n_inputs, task)
                for i in range(0, len(frame), 128)]

    torch.manual_seed(0)
    model = build_model(spec.model.name, state.input_shape, state.output_dim, task, spec.model.params,
                        target_index=state.target_index)
    train, val = batches("train"), batches("val")
    progress, best = fit(LossModule(model), model, lambda _e: train, lambda: val, spec.train, state)
    assert progress.epoch == 1 and torch.isfinite(torch.tensor(progress.history[0]["train/loss"]))
    model.load_state_dict(best)
    result = evaluate(model, batches("test"), state, progress.history, tmp_path / "out")
    assert EXPECTED[task] in result["metrics"]
    assert (tmp_path / "out" / "plots" / "learning_curves.png").is_file()
    if task == "generative":
        assert {"plots/samples.png", "plots/reconstructions.png"} <= set(result["plots"])
    if task == "forecasting":
        assert "test/persistence_r2" in result["metrics"]
