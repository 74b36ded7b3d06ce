"""Sweeps with real Optuna storages (PostgreSQL, SQLite), real Ray Train trials side by side, W&B offline."""
from __future__ import annotations

import os
import uuid

import optuna
import pytest

from tasks.errors import UserError
from tasks.spec import validate
from tasks.sweep import check_space, make_storage

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


def test_postgres_storage_fails_stale_trials_and_requeues_them():
    """What --resume relies on, on PostgreSQL: a RUNNING trial whose heartbeat stopped is failed and re-queued
    with the same params. (Full sweeps on PostgreSQL run in tests/e2e/test_cluster.py.)"""
    import time

    from tasks.sweep import counts, fail_stale
    from tasks.sweep.storage import GRACE_S

    url = postgres_or_skip()
    name = f"stale-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(study_name=name, storage=make_storage(url))
    try:
        trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)})
        study._storage.record_heartbeat(trial._trial_id)  # a trial that was running when its process died
        time.sleep(GRACE_S + 1)
        fail_stale(study, wait_s=5)
        c = counts(study)
        assert c["failed"] == 1 and c["running"] == 0 and c["waiting"] == 1
        retry = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.WAITING][0]
        assert retry.params == trial.params
    finally:
        optuna.delete_study(study_name=name, storage=make_storage(url, heartbeat=False))


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


def test_two_processes_asking_for_the_last_slot_end_with_exactly_n_trials():
    """On PostgreSQL: with n-1 trials finished and one RUNNING (another process's), a trial asked now is
    surplus and failed unrun; with a slot free it is not. What makes two `conductor sweep --resume` on one
    study add up to exactly --trials."""
    from tasks.sweep.storage import counts
    from tasks.sweep.trials import surplus

    study = optuna.create_study(study_name=f"exact-{uuid.uuid4().hex[:8]}", storage=make_storage(postgres_or_skip(),
                                                                                                 heartbeat=False))
    for value in (0.1, 0.2):
        study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=value))
    first = study.ask()  # the other process's trial, number 2
    assert not surplus(study, first, n_trials=4)
    mine = study.ask()  # number 3: the fourth slot is still free
    assert not surplus(study, mine, n_trials=4)
    late = study.ask()  # number 4: two finished + two running ahead of it = 4 taken
    assert surplus(study, late, n_trials=4)
    study.tell(first, 0.3)
    study.tell(mine, 0.4)
    c = counts(study)
    assert c["complete"] == 4 and c["failed"] == 1 and c["running"] == 0
    assert study.trials[late.number].system_attrs["fail_reason"].startswith("surplus")


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_a_resumed_sampler_does_not_draw_the_same_parameters_again(sampler, tmp_path):
    """The seed moves on by the trials already in the study: a resumed random (or TPE start-up) sampler
    used to draw the first trials' parameters again."""
    from tasks.sweep import make_sampler, suggest

    spec = validate({**SWEEP, "sweep": {**SWEEP["sweep"], "sampler": sampler}})
    url = f"sqlite:///{tmp_path / 'o.db'}"
    drawn = []
    for _ in range(2):  # a first process, then a resumed one
        before = len(optuna.load_study(study_name="s", storage=url).trials) if drawn else 0
        study = optuna.create_study(study_name="s", storage=url, load_if_exists=True, direction="maximize",
                                    sampler=make_sampler(spec.sweep, spec.train.seed, before))
        for _ in range(3):
            trial = study.ask()
            drawn.append(tuple(suggest(trial, spec.sweep.space).values()))
            study.tell(trial, 0.5)
    assert len(set(drawn)) == 6, drawn
