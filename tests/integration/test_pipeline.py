"""The pipeline flow with real engines: Prefect (test server), Dask LocalCluster, Ray Train on 2 workers,
W&B offline read back from its files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.errors import UserError
from tasks.spec import validate
from tasks.tracking import read_run

pytestmark = pytest.mark.integration

def customers(n: int = 1200, seed: int = 0) -> pd.DataFrame:
    """A user's table: numbers and text, holes in both, an outlier, labels as strings."""
    rng = np.random.default_rng(seed)
    age = rng.normal(45, 12, n)
    income = rng.lognormal(10.5, 0.4, n)
    plan = rng.choice(["basic", "plus", "pro"], n, p=[0.5, 0.3, 0.2])
    score = 0.08 * (age - 45) + 1.5 * (plan == "pro") - 1.0 * (plan == "basic") + rng.normal(0, 0.7, n)
    df = pd.DataFrame({"customer": np.arange(10_000, 10_000 + n), "age": age.round(0), "income": income,
                       "plan": plan, "region": rng.choice(["north", "south", "east", "west"], n),
                       "churn": np.where(score > 0.2, "stays", "leaves")})
    df.loc[rng.choice(n, n // 12, replace=False), "age"] = np.nan
    df.loc[rng.choice(n, n // 15, replace=False), "plan"] = None
    df.loc[3, "income"] = 5e7
    return df


@pytest.fixture(scope="module")
def user_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("user") / "customers.csv"
    customers().to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def smoke_spec(user_csv) -> dict:
    return {
        "name": "churn-smoke",
        "data": {"source": str(user_csv), "target": "churn", "drop": ["customer"],
                 "preprocessing": {"impute": "median", "categorical": "onehot", "clip_outliers": 4.0}},
        "model": {"name": "mlp", "params": {"hidden": [32], "dropout": 0.0}},
        "train": {"epochs": 3, "workers": 2, "batch_size": 64, "lr": 0.01, "early_stopping": None},
    }


@pytest.fixture(scope="module")
def smoke_run(engines, smoke_spec):
    from flows.pipeline import run_pipeline

    return run_pipeline(validate(smoke_spec))


def test_run_directory_is_complete(smoke_run, home):
    run_dir = Path(smoke_run["run_dir"])
    assert run_dir.parent == home / "churn-smoke" and not run_dir.name.startswith(".tmp")
    for name in ("spec.yaml", "metrics.json", "model.pt", "model.json", "preprocessor.json", "report.html",
                 "history.json", "predictions.parquet", "plots/learning_curves.png", "plots/confusion_matrix.png",
                 "plots/permutation_importance.png"):
        assert (run_dir / name).is_file(), name
    assert not list(run_dir.parent.glob(".tmp-*"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics == smoke_run["metrics"]
    assert metrics["epochs"] == 3 and metrics["stopped"] == "done"
    assert 0.7 < metrics["test/accuracy"] <= 1.0  # the label follows age and plan; chance is ~0.5
    assert smoke_run["workers"] == 2
    report = (run_dir / "report.html").read_text()
    assert "permutation importance" in report and "plan" in report


def test_model_reloads_with_weights_only_and_reproduces_predictions(smoke_run):
    import torch

    from models import load_model
    from tasks.preprocess import Prepared

    run_dir = Path(smoke_run["run_dir"])
    model = load_model(run_dir)
    prepared_dir = json.loads((run_dir / "preprocessor.json").read_text())["fingerprint"]
    test = pd.read_parquet(Prepared.load(Path(smoke_run["run_dir"]).parents[1] / ".cache" / prepared_dir).path("test"))
    x = torch.from_numpy(test.filter(regex=r"^x\d+$").to_numpy().copy())
    with torch.no_grad():
        pred = model.predict(x).argmax(-1).numpy()
    saved = pd.read_parquet(run_dir / "predictions.parquet")
    classes = json.loads((run_dir / "preprocessor.json").read_text())["classes"]
    assert [classes[i] for i in pred] == saved["prediction"].tolist()
    acc = (saved["prediction"] == saved["label"]).mean()
    assert acc == pytest.approx(smoke_run["metrics"]["test/accuracy"])


def test_wandb_offline_run_holds_what_training_reported(smoke_run):
    wb = smoke_run["wandb"]
    assert wb["mode"] == "offline" and Path(wb["run_dir"]).is_dir()
    logged = read_run(wb["run_dir"])
    history = json.loads((Path(smoke_run["run_dir"]) / "history.json").read_text())
    epochs = [h for h in logged["history"] if "train/loss" in h]
    assert [h["epoch"] for h in epochs] == [1, 2, 3]
    for ours, theirs in zip(history, epochs, strict=True):
        for key in ("train/loss", "val/loss", "val/accuracy"):
            assert theirs[key] == pytest.approx(ours[key], rel=1e-9), key
    assert logged["summary"]["test/accuracy"] == pytest.approx(smoke_run["metrics"]["test/accuracy"])
    assert logged["config"]["model"]["name"] == "mlp" and logged["group"] == "churn-smoke"
    assert logged["state"] == "finished"


def test_predict_reproduces_the_evaluation_exactly(smoke_run, tmp_path):
    from tasks.predict import predict

    run_dir = Path(smoke_run["run_dir"])
    state = json.loads((run_dir / "preprocessor.json").read_text())
    test_raw = run_dir.parents[1] / ".cache" / state["fingerprint"] / "test_raw"
    out = predict(run_dir, str(test_raw), tmp_path / "p.parquet")
    got = pd.read_parquet(out["out"]).sort_values("__row__").reset_index(drop=True)
    want = pd.read_parquet(run_dir / "predictions.parquet").sort_values("row").reset_index(drop=True)
    assert got["__row__"].tolist() == want["row"].tolist()
    assert got["prediction"].tolist() == want["prediction"].tolist()
    assert set(got["prediction"]) <= {"stays", "leaves"}  # the user's own labels come back
    for c in ("p_leaves", "p_stays"):
        np.testing.assert_allclose(got[c], want[c], rtol=0, atol=1e-6)


def test_predict_new_rows_with_unseen_categories_and_an_id(smoke_run, tmp_path):
    from tasks.predict import predict

    new = customers(50, seed=9).drop(columns=["churn"])
    new.loc[0, "plan"] = "enterprise"  # never seen in training
    new.loc[1, "region"] = None
    src = tmp_path / "new.csv"
    new.to_csv(src, index=False)
    out = predict(smoke_run["run_dir"], str(src), tmp_path / "p.csv", id_column="customer")
    got = pd.read_csv(out["out"])
    assert got["customer"].tolist() == new["customer"].tolist() and out["rows"] == 50
    assert got[["p_leaves", "p_stays"]].sum(axis=1).round(5).eq(1).all()
    with pytest.raises(UserError, match="columns \\['plan'\\] are missing"):
        new.drop(columns=["plan"]).to_csv(src, index=False)
        predict(smoke_run["run_dir"], str(src), tmp_path / "q.csv")
    assert not (tmp_path / "q.csv").exists()


def test_user_error_in_the_flow_leaves_nothing(engines, home, smoke_spec):
    from flows.pipeline import run_pipeline

    bad = validate({**smoke_spec, "name": "no-such-target", "data": {**smoke_spec["data"], "target": "churned"}})
    with pytest.raises(UserError, match="data.target: column 'churned' not found"):
        run_pipeline(bad)
    assert not (home / "no-such-target").exists()
