"""Permutation importance: how much the main test metric drops when one source column is shuffled."""
from __future__ import annotations

import numpy as np

from ..data import Preprocessor
from .outputs import model_outputs, score
from .plots import MAIN_METRIC


def permutation_importance(model, pred: dict, prep: Preprocessor, repeats: int = 3, seed: int = 0) -> dict[str, float]:
    """Drop of the main test metric when one source column (all its one-hot parts) is shuffled."""
    task = prep.task
    x, y = pred["x"], pred["y"]
    if task not in ("classification", "regression") or x is None or len(x) < 2:
        return {}
    metric = MAIN_METRIC[task]

    def value(xs):
        return score(task, {"logs": {}, "out": model_outputs(model, xs), "y": y, "n": len(xs)}, prep)[metric]

    base = value(x)
    rng = np.random.default_rng(seed)
    sources = np.array(prep.sources)
    result = {}
    for col in prep.features:
        idx = np.flatnonzero(sources == col)
        drops = []
        for _ in range(repeats):
            xs = x.copy()
            xs[:, idx] = xs[rng.permutation(len(xs))][:, idx]
            drops.append(base - value(xs))
        result[col] = float(np.mean(drops))
    return dict(sorted(result.items(), key=lambda kv: -kv[1]))
