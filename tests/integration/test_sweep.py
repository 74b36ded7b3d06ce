"""Sweeps with real Optuna storages (PostgreSQL, SQLite), real Ray Train trials side by side, W&B offline."""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import optuna
import pytest

from tasks.errors import UserError
from tasks.spec import validate
from tasks.sweep_objective import check_space, make_storage
from tasks.tracking import read_run

pytestmark = pytest.mark.integration

POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"

SWEEP = {
    "name": "digits-sweep",
    "data": {"source": "builtin:digits", "target": "label", "shape": [1, 8, 8]},
    "model": {"name": "cnn", "params": {"channels": [8, 16], "hidden": 32}},
    "train": {"epochs": 3, "workers": 1, "batch_size": 64, "early_stopping": None},
    "sweep": {"metric": "val/accuracy", "direction": "maximize", "trials": 4, "parallel": 2,
              "sampler": "random", "pruner": "median",
              "space": {"train.lr": {"low": 1.0e-4, "high": 3.0e-2, "log": True},
                        "model.params.dropout": {"low": 0.0, "high": 0.4}}},
}


def postgres_or_skip() -> str:
    try:
        make_storage(POSTGRES, heartbeat=False)
    except UserError as e:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL on 127.0.0.1:5432 is needed in CI: {e}")
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432 ({e})")
    return POSTGRES


@pytest.fixture(scope="module")
def pg_sweep(engines):
    from flows.sweep import run_sweep

    url = postgres_or_skip()
    study = f"test-{uuid.uuid4().hex[:8]}"
    os.environ["CONDUCTOR_OPTUNA_STORAGE"] = url
    try:
        summary = run_sweep(validate(SWEEP), study=study, trials=None, parallel=None, resume=False)
    finally:
        os.environ.pop("CONDUCTOR_OPTUNA_STORAGE")
    yield summary, optuna.load_study(study_name=study, storage=make_storage(url, heartbeat=False))
    optuna.delete_study(study_name=study, storage=make_storage(url, heartbeat=False))


def test_sweep_finishes_exactly_its_trials(pg_sweep):
    summary, study = pg_sweep
    t = summary["trials"]
    assert t["complete"] + t["pruned"] == 4 and t["failed"] == 0
    states = [tr.state for tr in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) + states.count(optuna.trial.TrialState.PRUNED) == 4
    assert summary["parallel"] == 2
    for key in ("name", "run_dir", "metrics", "wandb", "study", "storage", "best", "trials"):
        assert key in summary
    assert summary["best"]["value"] == pytest.approx(study.best_value)
    assert summary["best"]["params"] == study.best_params


def test_every_epoch_reaches_the_trial(pg_sweep):
    _, study = pg_sweep
    for tr in study.trials:
        steps = sorted(tr.intermediate_values)
        assert steps == list(range(1, len(steps) + 1)) and steps, tr.number
        if tr.state == optuna.trial.TrialState.COMPLETE:
            assert len(steps) == 3 and tr.value == pytest.approx(tr.intermediate_values[3])
        assert tr.user_attrs["node_id"]


def test_trials_ran_side_by_side(pg_sweep):
    _, study = pg_sweep
    spans = sorted((t.datetime_start, t.datetime_complete) for t in study.trials)
    overlaps = sum(a_end > b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:], strict=False))
    assert overlaps >= 1


def test_best_model_is_registered_with_optuna_plots(pg_sweep):
    summary, _ = pg_sweep
    run_dir = Path(summary["run_dir"])
    for name in ("model.pt", "model.json", "metrics.json", "report.html", "sweep.json",
                 "sweep/optimization_history.html", "sweep/optimization_history.png", "plots/confusion_matrix.png"):
        assert (run_dir / name).is_file(), name
    info = json.loads((run_dir / "sweep.json").read_text())
    assert info["best"]["trial"] == summary["best"]["trial"]
    assert "postgres@" in info["storage"]
    assert 0.0 < summary["metrics"]["test/accuracy"] <= 1.0
    assert "optimization history" in (run_dir / "report.html").read_text()


def test_one_wandb_run_per_trial_and_a_summary(pg_sweep, home):
    summary, study = pg_sweep
    for tr in study.trials:
        logged = read_run(tr.user_attrs["wandb_run_dir"])
        assert logged["name"] == f"{summary['study']}-t{tr.number}" and logged["group"] == summary["study"]
        assert logged["config"]["trial"] == tr.params
        curve = {h["epoch"]: h["val/accuracy"] for h in logged["history"] if "val/accuracy" in h}
        assert curve == pytest.approx(tr.intermediate_values)
        expected = "pruned" if tr.state == optuna.trial.TrialState.PRUNED else "complete"
        assert logged["summary"]["trial_state"] == expected
    overview = read_run(summary["wandb"]["run_dir"])
    assert overview["name"] == f"{summary['study']}-summary"
    assert overview["summary"]["best_value"] == pytest.approx(summary["best"]["value"])
    assert overview["summary"]["trials/complete"] == summary["trials"]["complete"]


def test_space_key_that_is_not_a_spec_field_fails_first():
    bad = {**SWEEP, "sweep": {**SWEEP["sweep"], "space": {"train.learning_rate": {"low": 0.1, "high": 1.0}}}}
    with pytest.raises(UserError, match="sweep.space.train.learning_rate: not a field"):
        check_space(validate(bad))
    bad = {**SWEEP, "sweep": {**SWEEP["sweep"], "space": {"model.params.dropout": {"low": 0.0, "high": 1.5}}}}
    with pytest.raises(UserError, match="sweep.space.model.params.dropout: value 1.5"):
        check_space(validate(bad))


def test_existing_study_needs_resume(engines, tmp_path):
    from flows.sweep import run_sweep

    url = f"sqlite:///{tmp_path / 'o.db'}"
    study = optuna.create_study(study_name="taken", storage=make_storage(url, heartbeat=False))
    study.add_trial(optuna.trial.create_trial(value=1.0))
    os.environ["CONDUCTOR_OPTUNA_STORAGE"] = url
    try:
        with pytest.raises(UserError, match="already has 1 trials"):
            run_sweep(validate(SWEEP), study="taken", trials=1, parallel=1, resume=False)
    finally:
        os.environ.pop("CONDUCTOR_OPTUNA_STORAGE")
