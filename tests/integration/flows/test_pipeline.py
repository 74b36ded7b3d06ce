"""The pipeline flow with real engines: Prefect (test server), Dask LocalCluster, Ray Train on 2 workers,
W&B offline read back from its files."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from wandb_files import read_run

from tasks.errors import UserError
from tasks.spec import validate

pytestmark = pytest.mark.integration

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
    # baselines on the same test split: majority ~ chance, logistic close to the model on this easy label
    for name in ("majority", "logistic"):
        for m in ("accuracy", "f1_macro", "balanced_accuracy"):
            assert 0.0 <= metrics[f"baseline/{name}/{m}"] <= 1.0, (name, m)
    assert metrics["baseline/logistic/accuracy"] > metrics["baseline/majority/accuracy"]
    assert "model vs baselines" in report and "<td>logistic</td>" in report
    assert smoke_run["verdict"] is None or smoke_run["verdict"].startswith("warning: the model's test/accuracy")


def test_model_reloads_with_weights_only_and_reproduces_predictions(smoke_run):
    import torch

    from models import load_model
    from tasks.data import Prepared, Preprocessor

    run_dir = Path(smoke_run["run_dir"])
    model = load_model(run_dir)
    prep = Preprocessor.load(run_dir)
    test = pd.read_parquet(Prepared.load(run_dir.parents[1] / ".cache" / prep.fingerprint).path("test"))
    x = torch.from_numpy(test.filter(regex=r"^x\d+$").to_numpy().copy())
    with torch.no_grad():
        pred = model.predict(x).argmax(-1).numpy()
    saved = pd.read_parquet(run_dir / "predictions.parquet")
    assert [prep.classes[i] for i in pred] == saved["prediction"].tolist()
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
    assert logged["summary"]["baseline/logistic/accuracy"] == pytest.approx(
        smoke_run["metrics"]["baseline/logistic/accuracy"])
    assert logged["config"]["model"]["name"] == "mlp" and logged["group"] == "churn-smoke"
    assert logged["state"] == "finished"


def test_a_split_too_large_to_hold_streams_through_ray_data(engines, smoke_spec, smoke_run, monkeypatch):
    """A split past IN_MEMORY_BYTES streams through Ray Data, train split across the 2 workers by its coordinator,
    while val and test stay held in the object store: the run completes and scores like the held one."""
    import tasks.train.ray_train as ray_train
    from flows.pipeline import run_pipeline

    monkeypatch.setattr(ray_train, "_small", lambda path: Path(path).name != "train")
    run = run_pipeline(validate({**smoke_spec, "name": "streamed", "tracking": {"wandb": {"mode": "disabled"}}}))
    assert run["metrics"]["epochs"] == 3 and run["metrics"]["stopped"] == "done" and run["workers"] == 2
    assert run["metrics"]["test/accuracy"] == pytest.approx(smoke_run["metrics"]["test/accuracy"], abs=0.1)


def test_user_error_in_the_flow_leaves_nothing(engines, home, smoke_spec):
    from flows.pipeline import run_pipeline

    bad = validate({**smoke_spec, "name": "no-such-target", "data": {**smoke_spec["data"], "target": "churned"}})
    with pytest.raises(UserError, match="data.target: column 'churned' not found"):
        run_pipeline(bad)
    assert not (home / "no-such-target").exists()


def test_a_diverging_run_stops_registers_nothing_and_names_train_lr(engines, home, smoke_spec):
    from flows.pipeline import run_pipeline

    spec = validate({**smoke_spec, "name": "diverges", "tracking": {"wandb": {"mode": "disabled"}},
                     "train": {**smoke_spec["train"], "epochs": 20, "lr": 1e8, "optimizer": "sgd", "workers": 1}})
    with pytest.raises(UserError, match=r"^train.lr: training diverged \(.* at epoch \d+\); lower train.lr") as err:
        run_pipeline(spec)
    epoch = int(str(err.value).split(" at epoch ")[1].split(")")[0])
    assert epoch < 20  # stopped at the NaN epoch, not trained to the end
    assert not (home / "diverges").exists() and not list((home / ".ray_storage").glob("diverges*"))
