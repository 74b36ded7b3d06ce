"""Integration fixtures: a user's messy CSV and one real pipeline run of it, shared by the modules that
check the run (flows/), predict from it (predict/) and serve it."""
from __future__ import annotations

from pathlib import Path

import pytest
from fixtures_data import customers

from tasks.spec import validate


@pytest.fixture(scope="session")
def user_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("user") / "customers.csv"
    customers().to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def smoke_spec(user_csv) -> dict:
    return {
        "name": "churn-smoke",
        "data": {"source": str(user_csv), "target": "churn", "drop": ["customer"],
                 "preprocessing": {"impute": "median", "categorical": "onehot", "clip_outliers": 4.0}},
        "model": {"name": "mlp", "params": {"hidden": [32], "dropout": 0.0}},
        "train": {"epochs": 3, "workers": 2, "batch_size": 64, "lr": 0.01, "early_stopping": None},
    }


@pytest.fixture(scope="session")
def smoke_run(engines, smoke_spec):
    """One `conductor run` flow of the CSV through Prefect, Dask and Ray Train (2 workers)."""
    from flows.pipeline import run_pipeline

    return run_pipeline(validate(smoke_spec))
