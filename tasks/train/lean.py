"""Ray Train's TorchTrainer as a conductor run uses it: the same controller, workers, process group and
callbacks, less what a run pays for and does not use, and without torch in the driver that starts it.

- Torch: `ray.train.torch` imports torch (~1.3-2 s on 2 CPUs) in every process that builds a TorchTrainer or
  unpickles its TorchConfig: the driver, and Ray Train's controller, where it delayed the start of the workers
  by as much. Neither runs torch: the controller only sends the workers the functions that set up the process
  group. `TorchBackendConfig` and `TorchBackend` do what TorchConfig and its backend do for a conductor run (gloo
  or nccl, env://) with those functions named here; the workers import and run Ray's own.
- Two of Ray Train V2's default callbacks that cost a conductor run an actor process:
  - the PlacementGroupCleaner watches the controller through Ray's state API, which needs the dashboard;
    conductor never starts the dashboard, so the cleaner only logs "Failed to query" every second, and its
    extra actor process made each run ~14 s slower on 2 CPUs (32 s -> 18 s for an empty 2-worker fit). An
    embedded Ray dies with its driver, placement groups included.
  - the DatasetsCallback, when no split is streamed (every split held: ray_train._held_tables): it starts a
    DatasetManager actor that the workers wait for before the train function runs (~2 s on 2 CPUs).
- The runtime_env that Ray Train gives its controller and workers to carry the driver's RAY_TRAIN_* variables
  (and, for the controller, RAY_WARN_BLOCKING_GET_INSIDE_ASYNC): an actor with a runtime_env starts through
  Ray's setup_worker.py, one more Python start with Ray imported (~0.35 s per process here), and never on a
  worker Ray keeps started. The Ray processes conductor starts already have conductor's values from their raylet
  (cluster/connect.QUIET_ENV), so `LeanController` starts with none, is handed the driver's variables, and
  passes on only those that differ from its own environment (a user's own, or a Ray conductor did not start).
  Assumed: every node's raylet has the controller's node's environment, as for cluster up's two nodes; on a Ray
  whose nodes differ, a worker on another node misses a variable only its own raylet lacks.
Another Ray release without these internals gets Ray's own TorchTrainer.
"""
from __future__ import annotations

import logging
import os

from ray.train.backend import Backend, BackendConfig

logger = logging.getLogger(__name__)


def _master(addr: str, port: int) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = addr, str(port)


def _torch_env() -> None:
    from ray.train.torch.config import _set_torch_distributed_env_vars

    _set_torch_distributed_env_vars()


def _process_group(**kwargs) -> None:
    from ray.train.torch.config import _setup_torch_process_group

    _setup_torch_process_group(**kwargs)


def _shutdown(**kwargs) -> None:
    from ray.train.torch.config import _shutdown_torch

    _shutdown_torch(**kwargs)


class TorchBackend(Backend):
    """What ray.train.torch.config._TorchBackend does for a V2 worker group with gloo or nccl and env://, with the
    functions the workers run named here: Ray Train's controller only sends them, so it never imports torch
    (~1.8 s on 2 CPUs, before it started the workers); each worker imports Ray's own functions and runs them."""

    share_cuda_visible_devices = True  # as _TorchBackend

    def on_start(self, worker_group, backend_config) -> None:
        import ray
        from ray.train._internal.utils import get_address_and_port

        addr, port = worker_group.execute_single(0, get_address_and_port)
        worker_group.execute(_master, addr=addr, port=port)
        worker_group.execute(_torch_env)  # LOCAL_RANK and the rest, before init_process_group
        n = len(worker_group)
        ray.get([worker_group.execute_single_async(i, _process_group, backend=backend_config.backend, world_rank=i,
                                                   world_size=n, init_method="env://", timeout_s=backend_config.timeout_s)
                 for i in range(n)])

    def on_shutdown(self, worker_group, backend_config) -> None:
        import ray
        from ray._private import ray_constants
        from ray.exceptions import GetTimeoutError
        from ray.train.constants import (
            DEFAULT_TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S,
            TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S,
        )

        futures = worker_group.execute_async(_shutdown, destroy_process_group=len(worker_group) > 1)
        timeout_s = ray_constants.env_integer(TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S,
                                              DEFAULT_TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S)
        try:
            ray.get(futures, timeout=timeout_s)
        except GetTimeoutError:
            logger.warning(f"Torch process group shutdown timed out after {timeout_s} seconds")


class _TorchContext:
    """TorchConfig's train_func_context (the default CUDA device), imported in the worker that enters it."""

    def __enter__(self):
        from ray.train.torch.config import TorchConfigContextManager

        self.inner = TorchConfigContextManager()
        return self.inner.__enter__()

    def __exit__(self, *exc):
        return self.inner.__exit__(*exc)


class TorchBackendConfig(BackendConfig):
    """ray.train.torch.TorchConfig(backend=...) with init_method "env" and its default timeout, without torch."""

    def __init__(self, backend: str, timeout_s: int = 1800):
        self.backend, self.timeout_s = backend, timeout_s

    @property
    def backend_cls(self):
        return TorchBackend

    @property
    def train_func_context(self):
        return _TorchContext

    @property
    def framework(self):
        from ray.train.v2._internal.util import TrainingFramework

        return TrainingFramework.TORCH

    def to_dict(self) -> dict:
        return {"backend": self.backend, "init_method": "env", "timeout_s": self.timeout_s}


try:
    from ray.train.v2._internal.constants import (
        RAY_WARN_BLOCKING_GET_INSIDE_ASYNC_ENV_VAR as WARN_ASYNC_GET,
    )
    from ray.train.v2._internal.constants import get_env_vars_to_propagate
    from ray.train.v2._internal.execution.controller import TrainController
    from ray.train.v2._internal.execution.worker_group import WorkerGroup
except ImportError:  # another Ray release: trainer_class() falls back to Ray's TorchTrainer
    TrainController = WorkerGroup = object

_WORKER_ENV: dict[str, str] = {}  # in a controller's process: what its workers must be given (LeanController)


class LeanWorkerGroup(WorkerGroup):
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
    """Ray Train's controller, started without a runtime_env: `env_vars` are the driver's variables to
    propagate; those its own environment (its raylet's) lacks or holds otherwise are set here and given to the
    workers. RAY_WARN_BLOCKING_GET_INSIDE_ASYNC (its ray.get calls inside async methods are meant) is for this
    process only: the workers are not async actors, and in a raylet's environment it would silence the warning
    for every async actor of that Ray (a served model's replicas)."""

    worker_group_cls = LeanWorkerGroup

    def __init__(self, env_vars: dict[str, str], **kwargs):
        env_vars = dict(env_vars)
        os.environ[WARN_ASYNC_GET] = env_vars.pop(WARN_ASYNC_GET, "0")
        _WORKER_ENV.clear()
        _WORKER_ENV.update({k: v for k, v in env_vars.items() if os.environ.get(k) != v})
        os.environ.update(_WORKER_ENV)
        super().__init__(**kwargs)


def _run_controller(trainer, **controller_init_kwargs):
    """DataParallelTrainer._initialize_and_run_controller, with LeanController and no runtime_env."""
    import threading

    import ray

    env_vars = get_env_vars_to_propagate()  # the warning's variable: LeanController sets it for itself
    here = {ray._raylet.RAY_NODE_ID_KEY: ray.get_runtime_context().get_node_id()}  # the driver's node, as Ray's
    controller = ray.remote(num_cpus=0, label_selector=here)(LeanController).remote(env_vars=env_vars,
                                                                                   **controller_init_kwargs)
    if threading.current_thread() is threading.main_thread():
        trainer._register_sigint_handler(controller)
    ray.get(controller.run.remote())
    return ray.get(controller.get_result.remote())


def trainer_class():
    """A DataParallelTrainer with Torch's backend, or Ray's TorchTrainer for a Ray release without these internals.
    Called as cls(train_loop, use_gpu=..., train_loop_config=..., datasets=..., ...)."""
    try:
        from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
        from ray.train.v2._internal.callbacks.placement_group_callback import (
            PlacementGroupCleanerCallback,
        )
        from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

        if TrainController is object or not hasattr(WorkerGroup, "_get_worker_runtime_env"):
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
