"""Ray Train's torch backend for a conductor run, without torch in the processes that only pass it on (lean.py).

`TorchBackendConfig` and `TorchBackend` do what ray.train.torch's TorchConfig and its backend do for a conductor run
(gloo or nccl, env://), with the functions the workers run named here: `ray.train.torch` imports torch (~1.3-2 s on 2
CPUs) in every process that builds a TorchTrainer or unpickles its TorchConfig, the driver and the controller, which
never run torch. The workers import and run Ray's own functions.
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
