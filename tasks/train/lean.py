"""Ray Train's TorchTrainer as a conductor run uses it: the same controller, workers, process group and
callbacks, less what a run pays for and does not use, and without torch in the driver that starts it.

- Torch: `ray.train.torch` imports torch (~1.3-2 s on 2 CPUs) in every process that builds a TorchTrainer or
  unpickles its TorchConfig: the driver, and Ray Train's controller, where it delayed the start of the workers
  by as much. Neither runs torch: the controller only sends the workers the functions that set up the process
  group. `TorchBackendConfig` and `TorchBackend` (torch_backend.py) do what TorchConfig and its backend do for a
  conductor run (gloo or nccl, env://) with those functions named there; the workers import and run Ray's own.
- Two of Ray Train V2's default callbacks that cost a conductor run an actor process:
  - the PlacementGroupCleaner watches the controller through Ray's state API, which needs the dashboard;
    conductor never starts the dashboard, so the cleaner only logs "Failed to query" every second, and its
    extra actor process made each run ~14 s slower on 2 CPUs (32 s -> 18 s for an empty 2-worker fit). An
    embedded Ray dies with its driver, placement groups included.
  - the DatasetsCallback, when no split is streamed (every split held: ray_train._held_tables): it starts a
    DatasetManager actor that the workers wait for before the train function runs (~2 s on 2 CPUs).
- The controller's own actor process: Ray Train runs its TrainController as an actor, on the driver's node, that
  only starts and polls the workers. Its process unpickled the controller's classes (imports of Ray Train's
  controller, ~2.6 s from fit() to the controller's __init__ on a slow day of this 2-core machine, before any
  worker was asked for) and took one of the node's worker processes (cluster up's 1-CPU nodes start them one at
  a time). `_run_controller` runs the same controller in the driver, which has imported those modules already,
  in an event loop of its own thread: the workers, placement group and synchronization actor are Ray's as before.
  Without its structured logging (Ray Train's logging.config.dictConfig, which in the driver would replace the
  handlers of every logger, Prefect's API log handler included) and without a handle to itself for the workers
  (used only by ray.train.get_all_reported_checkpoints, which conductor's train loop never calls).
- The runtime_env that Ray Train gives its workers to carry the driver's RAY_TRAIN_* variables: an actor with a
  runtime_env starts through Ray's setup_worker.py, one more Python start with Ray imported (~0.35 s per process
  here), and never on a worker Ray keeps started. The Ray processes conductor starts already have conductor's
  values from their raylet (cluster/connect.QUIET_ENV), so the workers are given only the variables whose
  values differ from those (a user's own); an embedded Ray's raylet has the driver's environment anyway.
- The workers' start: a run's placement group and worker actors are made as the command connects to Ray, and
  import torch meanwhile (early.py); LeanWorkerGroup takes them over at fit().
Another Ray release without these internals gets Ray's own TorchTrainer.
"""
from __future__ import annotations

import contextlib
import os

from . import early
from .early import INTERNALS, worker_env  # noqa: F401 - worker_env: lean's name too
from .torch_backend import TorchBackend, TorchBackendConfig  # noqa: F401 - their old home: tasks.train.lean

try:
    from ray.train.v2._internal.constants import (
        ENABLE_CONTROLLER_STRUCTURED_LOGGING_ENV_VAR as STRUCTURED_LOGGING,
    )
    from ray.train.v2._internal.constants import get_env_vars_to_propagate
    from ray.train.v2._internal.exceptions import WorkerGroupStartupFailedError
    from ray.train.v2._internal.execution.controller import TrainController
    from ray.train.v2._internal.execution.worker_group import WorkerGroup
except ImportError:  # another Ray release: trainer_class() falls back to Ray's TorchTrainer
    TrainController = WorkerGroup = object

STOP_TIMEOUT_S = 10.0  # an interrupted run: how long its control loop gets to stop before the workers are aborted
_WORKER_ENV: dict[str, str] = {}  # what the workers must be given (LeanController)


class LeanWorkerGroup(WorkerGroup):
    def _start(self) -> None:
        """WorkerGroup's, with a worker lost after the group was built (as its train function is launched: a node
        dying while the group restarts, `RpcError: Socket closed`) a startup failure, which Ray Train's controller
        retries, as it does one lost while the workers initialize; Ray's code let that error end the run whatever
        `max_failures`. The group it built is shut down first: its controller never got it to shut down."""
        from ray.exceptions import RayActorError

        try:
            super()._start()
        except RayActorError as e:
            if state := self._worker_group_state:
                try:
                    self.shutdown()
                except Exception:  # noqa: BLE001 - its callbacks (the process group's) can fail on the lost worker:
                    with contextlib.suppress(Exception):  # the actors and placement group go all the same
                        state.shutdown()
            raise WorkerGroupStartupFailedError("a worker actor was lost while its group started") from e

    def _init_train_context_on_workers(self, workers, sync_actor, train_context_args) -> None:
        """WorkerGroup's, with no controller actor to hand the workers: the controller is the driver."""
        import ray

        ray.get([worker.actor.init_train_context.remote(
            train_run_context=self._train_run_context, distributed_context=worker.distributed_context,
            synchronization_actor=sync_actor, storage_context=self._storage_context,
            worker_callbacks=self._worker_callbacks_to_propagate, controller_actor=None,
            **{arg: values[i] for arg, values in train_context_args.items()}) for i, worker in enumerate(workers)])
        self._decorate_worker_log_file_paths(workers)

    def _create_placement_group(self, scaling_config, worker_group_context):
        """The early workers' placement group when they match this group (early.py), else Ray's own."""
        handle = early.take_placement_group(worker_group_context)
        return handle or super()._create_placement_group(scaling_config, worker_group_context)

    def _create_workers(self, num_workers, placement_group, resources_per_worker, *args, **kwargs):
        """The early workers when this group's placement group is theirs, else new actors (Ray's)."""
        args = (num_workers, placement_group, resources_per_worker, *args)
        taken = early.take_workers(*args, **kwargs)
        return taken if taken is not None else super()._create_workers(*args, **kwargs)

    @staticmethod
    def _get_worker_runtime_env(custom_runtime_env):
        """Ray's merges every propagated variable into each worker's runtime_env; here only those the workers
        would not inherit (_WORKER_ENV), and no runtime_env at all when there are none."""
        runtime_env = dict(custom_runtime_env)
        env = {**_WORKER_ENV, **runtime_env.get("env_vars", {})}
        if env:
            runtime_env["env_vars"] = env
        return runtime_env


class LeanController(TrainController):
    """Ray Train's controller, in the driver: `env_vars` are the driver's variables that Ray Train propagates;
    the workers are given those whose values their raylet's environment (QUIET_ENV) lacks."""

    worker_group_cls = LeanWorkerGroup

    def __init__(self, env_vars: dict[str, str], **kwargs):
        _WORKER_ENV.clear()
        _WORKER_ENV.update(worker_env(env_vars))
        before = os.environ.get(STRUCTURED_LOGGING)
        os.environ[STRUCTURED_LOGGING] = "0"  # read here only: the driver's loggers stay as they are
        try:
            super().__init__(**kwargs)
        finally:
            os.environ.pop(STRUCTURED_LOGGING) if before is None else os.environ.update({STRUCTURED_LOGGING: before})


def _run_controller(trainer, **controller_init_kwargs):
    """DataParallelTrainer._initialize_and_run_controller, with LeanController in this process: its control loop
    runs in an event loop of a thread of its own (the caller may be in one already, a Prefect task or an actor);
    Ctrl-C (SIGINT, in the main thread) or an error here aborts the worker group (its actors and placement
    group), as Ray's SIGINT handler did through the controller actor."""
    import asyncio
    import contextlib
    import signal
    import threading

    controller = LeanController(get_env_vars_to_propagate(), **controller_init_kwargs)
    failed: list[BaseException] = []
    running: dict = {}

    async def control() -> None:
        running.update(loop=asyncio.get_running_loop(), task=asyncio.current_task())
        await controller.run()

    def loop() -> None:
        try:
            asyncio.run(control())
        except asyncio.CancelledError:  # stopped by stop() below
            pass
        except BaseException as e:  # noqa: BLE001 - raised again in the caller's thread
            failed.append(e)

    thread = threading.Thread(target=loop, name="ray-train-controller", daemon=True)

    def stop() -> None:
        """The control loop first (else it goes on polling the aborted group), then the workers."""
        if running:
            event_loop, task = running.pop("loop"), running.pop("task")
            with contextlib.suppress(RuntimeError):  # the loop had ended meanwhile
                event_loop.call_soon_threadsafe(task.cancel)
        if thread.is_alive():
            thread.join(timeout=STOP_TIMEOUT_S)
        if (group := controller.get_worker_group()) is not None and group.has_started():
            group.abort()  # its actors and placement group

    def interrupted(*_) -> None:
        stop()
        raise KeyboardInterrupt

    main = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGINT, interrupted) if main else None  # Ctrl-C: as Ray's own handler did
    try:
        thread.start()
        thread.join()
    except BaseException:
        stop()
        raise
    finally:
        if main and before is not None:  # None: a handler not set from Python, which cannot be put back
            signal.signal(signal.SIGINT, before)
    if failed:
        raise failed[0]
    return controller.get_result()


def trainer_class():
    """A DataParallelTrainer with Torch's backend, or Ray's TorchTrainer for a Ray release without these internals.
    Called as cls(train_loop, use_gpu=..., train_loop_config=..., datasets=..., ...)."""
    try:
        from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
        from ray.train.v2._internal.callbacks.placement_group_callback import (
            PlacementGroupCleanerCallback,
        )
        from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

        if TrainController is object or not all(hasattr(WorkerGroup, m) for m in INTERNALS):
            raise ImportError("Ray Train V2's controller internals are not there")
    except ImportError:
        from ray.train.torch import TorchTrainer

        return lambda loop, use_gpu, **kwargs: TorchTrainer(loop, **kwargs)

    class LeanTorchTrainer(DataParallelTrainer):
        def __init__(self, loop, use_gpu: bool, **kwargs):
            super().__init__(loop, backend_config=TorchBackendConfig("nccl" if use_gpu else "gloo"), **kwargs)

        def _create_default_callbacks(self):
            unused = (PlacementGroupCleanerCallback,) + ((DatasetsCallback,) if not self.datasets else ())
            return [c for c in super()._create_default_callbacks() if not isinstance(c, unused)]

        def _initialize_and_run_controller(self, **controller_init_kwargs):
            return _run_controller(self, **controller_init_kwargs)

    return LeanTorchTrainer
