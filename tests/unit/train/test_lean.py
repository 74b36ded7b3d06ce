"""tasks/train/lean.py: the trainer a run's driver builds without torch, and a Torch backend that Ray Train's
controller (in the driver) runs without torch: the functions it sends the workers are Ray's own."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_building_the_trainer_loads_no_torch():
    """Nor does its backend, which is what Ray Train's controller unpickles."""
    code = ("import json, sys; from tasks.train.lean import trainer_class; import ray.train; "
            "t = trainer_class()(lambda config: None, use_gpu=False, "
            "scaling_config=ray.train.ScalingConfig(num_workers=1, resources_per_worker={'CPU': 0.5})); "
            "t._get_train_func(); t._create_default_callbacks(); t.backend_config.backend_cls(); "
            "print(json.dumps(['torch' in sys.modules, type(t).__name__]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [False, "LeanTorchTrainer"]


def test_its_backend_is_torch_free_and_sends_rays_functions():
    """The config and backend cross to Ray Train's controller as themselves; what the workers run is Ray's."""
    import ray.cloudpickle as pickle

    from tasks.train import lean

    trainer = lean.trainer_class()(lambda config: None, use_gpu=False)
    config = pickle.loads(pickle.dumps(trainer.backend_config))
    assert (config.backend, config.timeout_s, config.backend_cls) == ("gloo", 1800, lean.TorchBackend)
    assert config.backend_cls.share_cuda_visible_devices and not config.backend_cls.has_replica_groups
    assert lean.trainer_class()(lambda config: None, use_gpu=True).backend_config.backend == "nccl"
    from ray.train.torch import config as rays

    assert {"_setup_torch_process_group", "_set_torch_distributed_env_vars", "_shutdown_torch"} <= set(vars(rays))


def test_workers_get_a_runtime_env_only_for_what_they_would_not_inherit(monkeypatch):
    """A worker with a runtime_env starts through Ray's setup_worker.py (one more Python start with Ray); the
    controller (in the driver) passes on only the driver's variables that a raylet conductor started lacks."""
    from tasks.train import lean

    assert lean.worker_env({"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2", "RAY_TRAIN_ENABLE_STATE_TRACKING": "0"}) == {}
    assert lean.worker_env({"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "1.5", "RAY_TRAIN_COLLECTIVE_TIMEOUT_S": "30"}) == {
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "1.5", "RAY_TRAIN_COLLECTIVE_TIMEOUT_S": "30"}  # a user's own values

    monkeypatch.setattr(lean, "_WORKER_ENV", {})
    assert lean.LeanWorkerGroup._get_worker_runtime_env({}) == {}
    assert lean.LeanWorkerGroup._get_worker_runtime_env({"pip": ["x"]}) == {"pip": ["x"]}
    monkeypatch.setattr(lean, "_WORKER_ENV", {"RAY_TRAIN_COLLECTIVE_TIMEOUT_S": "30"})
    assert lean.LeanWorkerGroup._get_worker_runtime_env({"env_vars": {"A": "1"}}) == {
        "env_vars": {"RAY_TRAIN_COLLECTIVE_TIMEOUT_S": "30", "A": "1"}}
    assert issubclass(lean.LeanController.worker_group_cls, lean.LeanWorkerGroup)


def test_cluster_up_gives_its_ray_processes_conductors_ray_settings(tmp_path, monkeypatch):
    """What a run's driver would otherwise carry to Ray Train's processes in a runtime_env; a user's value wins."""
    from cluster.connect import QUIET_ENV
    from cluster.local import LocalCluster

    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "1.5")
    env = LocalCluster(tmp_path / "cluster")._base_env()
    assert env["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "1.5" and "RAY_WARN_BLOCKING_GET_INSIDE_ASYNC" not in env
    assert all(env[k] == v for k, v in QUIET_ENV.items() if k.startswith("RAY_TRAIN") and k in env
               and k != "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S")
    assert {k for k in QUIET_ENV if k.startswith("RAY_")} <= set(env)


def test_a_worker_lost_as_its_group_starts_is_a_startup_failure_that_ray_train_retries(monkeypatch):
    """Ray's WorkerGroup._start lets a worker lost after the group was built (at the train function's launch: a
    node dying while the group restarts) end the run as a ControllerError, whatever max_failures; LeanWorkerGroup
    makes it the startup failure Ray's failure policy retries, and the half-started group is shut down (its state,
    even when the shutdown's callbacks fail on the lost worker)."""
    import pytest
    from ray.exceptions import ActorUnavailableError
    from ray.train.v2._internal.exceptions import WorkerGroupStartupFailedError
    from ray.train.v2._internal.execution.failure_handling.default import (
        RETRYABLE_CONTROLLER_ERRORS,
    )
    from ray.train.v2._internal.execution.worker_group import WorkerGroup

    from tasks.train import lean

    shut = []

    class State:  # what Ray's _start_impl had built when the launch failed
        def shutdown(self):
            shut.append("state")

    def start(self):
        self._worker_group_state = State()
        raise ActorUnavailableError("RpcError: Socket closed", None)

    def shutdown(self):
        raise RuntimeError("the process group's shutdown on a lost worker")

    monkeypatch.setattr(WorkerGroup, "_start", start)
    monkeypatch.setattr(WorkerGroup, "shutdown", shutdown)
    group = object.__new__(lean.LeanWorkerGroup)
    with pytest.raises(WorkerGroupStartupFailedError) as raised:
        group._start()
    assert isinstance(raised.value, RETRYABLE_CONTROLLER_ERRORS)
    assert isinstance(raised.value.__cause__, ActorUnavailableError) and shut == ["state"]
