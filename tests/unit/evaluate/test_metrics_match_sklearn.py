"""tasks/evaluate/metrics.py computes its metrics with numpy (no scikit-learn import in a training worker): the same
values as scikit-learn's, on random labels with classes missing from either side and on degenerate targets."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from tasks.evaluate import metrics as M


@pytest.mark.parametrize("seed", range(6))
def test_classification_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    k, n = int(rng.integers(2, 7)), int(rng.integers(1, 60))
    y = rng.integers(0, k, n)
    proba = rng.random((n, k + int(seed % 2)))  # odd seeds: a class the model predicts but no row has
    pred = proba.argmax(-1)
    ours = M.classification(y, proba)
    assert ours["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    assert ours["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0), abs=1e-12)
    with warnings.catch_warnings():  # sklearn warns of a predicted class that no row has
        warnings.simplefilter("ignore")
        expected = skm.balanced_accuracy_score(y, pred)
    assert ours["balanced_accuracy"] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("case", ["random", "constant-exact", "constant-off", "float32"])
def test_regression_matches_sklearn(case):
    rng = np.random.default_rng(3)
    y = rng.normal(size=(40, 3))
    p = y + rng.normal(scale=0.5, size=y.shape)
    if case.startswith("constant"):
        y = np.full((40, 3), 2.0)
        p = y.copy() if case == "constant-exact" else y + 0.1
    if case == "float32":
        y, p = y.astype("float32"), p.astype("float32")
    y64, p64 = y.astype("float64"), p.astype("float64")
    ours = M.regression(y, p)
    assert ours["r2"] == pytest.approx(skm.r2_score(y64.reshape(-1), p64.reshape(-1)), abs=1e-12)
    assert ours["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y64.reshape(-1), p64.reshape(-1))), abs=1e-12)
    assert ours["mae"] == pytest.approx(skm.mean_absolute_error(y64.reshape(-1), p64.reshape(-1)), abs=1e-12)
    assert M.per_step_r2(y, p) == pytest.approx([skm.r2_score(y64[:, h], p64[:, h]) for h in range(3)], abs=1e-12)
