"""Class imbalance: on a 95/5 synthetic set, class weights and oversampling raise balanced accuracy
over `balance: none` (same data, model, seed and epochs; the training loop that Ray Train wraps)."""
from __future__ import annotations

import pandas as pd
import torch

from models import build_model
from tasks.data import preprocess
from tasks.evaluate import evaluate
from tasks.spec import Data, Train
from tasks.train import LossModule, fit, to_tensors


def balanced_accuracy(balance: str, home) -> float:
    data = Data(source="builtin:synthetic", target="label", synthetic={"rows": 4000, "features": 8, "informative": 3,
                                                                     "weights": [0.95, 0.05], "noise": 0.02, "seed": 3},
                preprocessing={"balance": balance})
    prep = preprocess(data, home, log=lambda *_: None)
    state = prep.preprocessor

    def batches(split, seed=None):
        frame = pd.read_parquet(prep.path(split))
        if seed is not None:
            frame = frame.sample(frac=1.0, random_state=seed)
        return [to_tensors({c: frame[c].to_numpy()[i:i + 64] for c in frame.columns}, state.n_inputs, "classification")
                for i in range(0, len(frame), 64)]

    torch.manual_seed(0)
    model = build_model("logistic", state.input_shape, state.output_dim, "classification",
                        class_weight=state.class_weight)
    cfg = Train(epochs=15, lr=0.01, early_stopping=None)
    val = batches("val")
    _, best = fit(LossModule(model), model, lambda e: batches("train", seed=e), lambda: val, cfg, state)
    model.load_state_dict(best)
    return evaluate(model, batches("test"), state, [], home / f"eval-{balance}")["metrics"]["test/balanced_accuracy"]


def test_balancing_raises_balanced_accuracy(tmp_path):
    none = balanced_accuracy("none", tmp_path)
    weighted = balanced_accuracy("class_weight", tmp_path)
    oversampled = balanced_accuracy("oversample", tmp_path)
    assert weighted > none + 0.03, (none, weighted)
    assert oversampled > none + 0.03, (none, oversampled)
