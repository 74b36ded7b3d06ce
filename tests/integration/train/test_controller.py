"""Ray Train's controller runs in the driver (tasks/train/lean.py): no controller actor, the driver's loggers
left as they were, and the workers, their placement group and the result Ray Train's own."""
from __future__ import annotations

import logging
import os

import pytest
from train_fns import report_pid_fn

pytestmark = pytest.mark.integration


def test_the_controller_is_the_driver_and_the_workers_are_rays(engines, tmp_path):
    import ray
    import ray.train

    from tasks.train.lean import trainer_class

    handlers = {name: list(logging.getLogger(name).handlers) for name in ("", "prefect", "ray", "ray.train")}
    actors_before = set(ray._private.state.actors())
    result = trainer_class()(
        report_pid_fn(), use_gpu=False,
        scaling_config=ray.train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
        run_config=ray.train.RunConfig(name="in-driver", storage_path=str(tmp_path))).fit()
    assert result.error is None
    with result.checkpoint.as_directory() as d:
        worker_pid = int(open(os.path.join(d, "pid")).read())
    assert worker_pid != os.getpid()  # trained in a Ray Train worker, not here
    started = [a for key, a in ray._private.state.actors().items() if key not in actors_before]
    classes = sorted(a["ActorClassName"] for a in started)
    assert classes.count("RayTrainWorker") == 2 and not [c for c in classes if "Controller" in c], classes
    assert {name: list(logging.getLogger(name).handlers) for name in handlers} == handlers


def test_ctrl_c_stops_the_control_loop_and_the_workers(engines, tmp_path):
    """SIGINT while the workers train: fit() raises KeyboardInterrupt in the driver within seconds, and the
    workers and their placement group are gone (no controller actor is left to abort them)."""
    import signal
    import threading
    import time

    import ray
    import ray.train

    from tasks.train.lean import trainer_class

    started = tmp_path / "training"

    def train_long(config: dict) -> None:
        open(config["started"], "w").close()
        time.sleep(120)

    def interrupt_once_training() -> None:
        deadline = time.monotonic() + 120
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)

    actors_before = set(ray._private.state.actors())
    threading.Thread(target=interrupt_once_training, daemon=True).start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        trainer_class()(
            train_long, use_gpu=False, train_loop_config={"started": str(started)},
            scaling_config=ray.train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
            run_config=ray.train.RunConfig(name="interrupted", storage_path=str(tmp_path))).fit()
    assert started.exists() and time.monotonic() - t0 < 100  # interrupted while training, not after it
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = [a for key, a in ray._private.state.actors().items()
                if key not in actors_before and a["ActorClassName"] == "RayTrainWorker" and a["State"] != "DEAD"]
        if not left:
            break
        time.sleep(0.5)
    assert not left, left
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # pytest's own, given back
