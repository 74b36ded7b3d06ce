"""The sweep loop's storage shortcuts (tasks/sweep/storage.py): trial counts from one GROUP BY query, the trials
taken ahead of a new one, several user attrs in one transaction. Each must agree with Optuna's public API on every
storage the sweep runs on: SQLite, PostgreSQL, and (the fallback path) the in-memory storage."""
from __future__ import annotations

import uuid

import optuna
import pytest

from conftest import require_postgres
from tasks.sweep.storage import DONE, _rdb, counts, make_storage, set_user_attrs, taken

State = optuna.trial.TrialState


def _study(kind: str, tmp_path) -> optuna.Study:
    if kind == "memory":
        storage = optuna.storages.InMemoryStorage()
    elif kind == "sqlite":
        storage = make_storage(f"sqlite:///{tmp_path / 'o.db'}", heartbeat=False)
    else:
        require_postgres()
        storage = make_storage("postgresql+psycopg2://postgres@127.0.0.1:5432/test", heartbeat=False)
    study = optuna.create_study(storage=storage, study_name=f"q-{uuid.uuid4().hex[:8]}")
    assert (_rdb(study._storage) is None) == (kind == "memory")  # the RDB shortcuts run where they should
    return study


def _fill(study: optuna.Study) -> list[optuna.trial.Trial]:
    """Trials in every state, finished ones numbered above a running one."""
    made = [study.ask() for _ in range(7)]
    study.tell(made[0], 0.5)
    study.tell(made[2], state=State.PRUNED)
    study.tell(made[3], state=State.FAIL)
    study.tell(made[5], 0.7)
    study.enqueue_trial({})  # WAITING
    return made  # running: 1, 4, 6


@pytest.mark.parametrize("kind", ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_counts_and_taken_agree_with_the_trials_themselves(kind, tmp_path):
    study = _study(kind, tmp_path)
    made = _fill(study)
    trials = study.get_trials(deepcopy=False)
    assert counts(study) == {"complete": 2, "pruned": 1, "failed": 1, "running": 3, "waiting": 1}
    for t in made:
        expected = sum(1 for o in trials if o.state in DONE or o.state == State.RUNNING and o.number < t.number)
        assert taken(study, t.number) == expected
    assert taken(study, 0) == 3 and taken(study, 7) == 6  # the finished ones, then also every running one


@pytest.mark.parametrize("kind", ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_user_attrs_written_together_are_stored_and_seen_by_the_trial(kind, tmp_path):
    study = _study(kind, tmp_path)
    trial = study.ask()
    set_user_attrs(trial, {"node_id": "n1", "worker_pid": 42})
    set_user_attrs(trial, {"worker_pid": 43, "epochs": 3, "wandb_run_dir": None})  # an update and new keys
    assert trial.user_attrs == {"node_id": "n1", "worker_pid": 43, "epochs": 3, "wandb_run_dir": None}
    stored = study.get_trials(deepcopy=False)[0].user_attrs
    if kind != "memory":  # a fresh storage object reads what was committed
        stored = optuna.load_study(study_name=study.study_name, storage=study._storage._backend.url
                                   ).get_trials()[0].user_attrs
    assert stored == {"node_id": "n1", "worker_pid": 43, "epochs": 3, "wandb_run_dir": None}
    study.tell(trial, 1.0)
    with pytest.raises(RuntimeError):  # a finished trial is not updatable, as with Trial.set_user_attr
        set_user_attrs(trial, {"epochs": 4})
