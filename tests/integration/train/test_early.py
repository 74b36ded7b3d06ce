"""A run's Ray Train workers started before fit() (tasks/train/early.py): the worker group takes them over when
it asks for the same bundles, and removes them when it does not, so that its own find the CPUs free."""
from __future__ import annotations

import os

import pytest
from train_fns import report_pid_fn

pytestmark = pytest.mark.integration


def fit(workers: int, name: str, tmp_path):
    import ray.train

    from tasks.train.lean import trainer_class

    result = trainer_class()(
        report_pid_fn(), use_gpu=False,
        scaling_config=ray.train.ScalingConfig(num_workers=workers, resources_per_worker={"CPU": 0.5}),
        run_config=ray.train.RunConfig(name=name, storage_path=str(tmp_path))).fit()
    assert result.error is None
    with result.checkpoint.as_directory() as d:
        return int(open(os.path.join(d, "pid")).read())


def new_train_workers(before: set) -> dict:
    import ray

    return {key: a for key, a in ray._private.state.actors().items()
            if key not in before and a["ActorClassName"] == "RayTrainWorker"}


def test_the_worker_group_takes_over_the_early_workers(engines, tmp_path):
    import ray

    from tasks.train import early

    before = set(ray._private.state.actors())
    assert early.start(2, 0.5) == 2
    actors = list(early._early["actors"])
    pids = [m.pid for m in ray.get([a.get_metadata.remote() for a in actors], timeout=120)]
    rank0_pid = fit(2, "early", tmp_path)
    assert set(new_train_workers(before)) == {a._actor_id.hex() for a in actors}  # no other worker was made
    assert rank0_pid in pids and not early._early


def test_early_workers_of_another_shape_are_removed_and_the_run_makes_its_own(engines, tmp_path):
    import ray
    from ray.util import placement_group_table

    from tasks.train import early

    before = set(ray._private.state.actors())
    assert early.start(2, 0.5) == 2
    unused, pg = {a._actor_id.hex() for a in early._early["actors"]}, early._early["pg"]
    pid = fit(1, "reshaped", tmp_path)  # would wait for CPUs the early group holds if they were kept
    made = new_train_workers(before)
    assert len(made) == 3 and unused < set(made)
    assert all(made[key]["State"] == "DEAD" for key in unused) and pid > 0
    assert placement_group_table(pg)["state"] == "REMOVED" and not early._early


def test_turned_off_it_asks_ray_for_nothing(monkeypatch):
    from tasks.train import early

    monkeypatch.setenv("CONDUCTOR_EARLY_WORKERS", "0")
    assert early.start(1, 1.0) == 0 and not early._early
