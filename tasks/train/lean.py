"""Ray Train's TorchTrainer as a conductor run uses it: the same controller, workers, process group and
callbacks, less what a run pays for and does not use, and without torch in the driver that starts it.

- Torch: `ray.train.torch` imports torch (~1.3-2 s on 2 CPUs) in the process that builds a TorchTrainer, only for
  its TorchConfig, which a driver never uses itself: it is pickled to Ray Train's controller, which imports torch
  anyway. `TorchBackendConfig` builds the real TorchConfig (and its backend) where it is unpickled; a run's driver
  builds the trainer and its controller starts without loading torch here first.
- Two of Ray Train V2's default callbacks that cost a conductor run an actor process:
  - the PlacementGroupCleaner watches the controller through Ray's state API, which needs the dashboard;
    conductor never starts the dashboard, so the cleaner only logs "Failed to query" every second, and its
    extra actor process made each run ~14 s slower on 2 CPUs (32 s -> 18 s for an empty 2-worker fit). An
    embedded Ray dies with its driver, placement groups included.
  - the DatasetsCallback, when no split is streamed (every split held: ray_train._held_tables): it starts a
    DatasetManager actor that the workers wait for before the train function runs (~2 s on 2 CPUs).
Another Ray release without these internals gets Ray's own TorchTrainer.
"""
from __future__ import annotations


def _torch_config(backend: str):
    from ray.train.torch.config import TorchConfig

    return TorchConfig(backend=backend)


def _torch_backend():
    from ray.train.torch.config import _TorchBackend

    return _TorchBackend()


class _Backend:
    """Stands for ray.train.torch.config._TorchBackend in the driver (Ray Train's callbacks are built there and
    pickled to the controller): the real one where it is unpickled."""

    def __reduce__(self):
        return _torch_backend, ()


class _TorchContext:
    """TorchConfig's train_func_context (the default CUDA device), imported in the worker that enters it."""

    def __enter__(self):
        from ray.train.torch.config import TorchConfigContextManager

        self.inner = TorchConfigContextManager()
        return self.inner.__enter__()

    def __exit__(self, *exc):
        return self.inner.__exit__(*exc)


def trainer_class():
    """A DataParallelTrainer with Torch's backend, or Ray's TorchTrainer for a Ray release without these internals.
    Called as cls(train_loop, use_gpu=..., train_loop_config=..., datasets=..., ...)."""
    try:
        from ray.train.backend import BackendConfig
        from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
        from ray.train.v2._internal.callbacks.placement_group_callback import (
            PlacementGroupCleanerCallback,
        )
        from ray.train.v2._internal.util import TrainingFramework
        from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer
    except ImportError:
        from ray.train.torch import TorchTrainer

        return lambda loop, use_gpu, **kwargs: TorchTrainer(loop, **kwargs)

    class TorchBackendConfig(BackendConfig):
        """ray.train.torch.TorchConfig(backend=...), which it turns into when pickled to Ray Train's controller."""

        def __init__(self, backend: str):
            self.backend = backend

        def __reduce__(self):
            return _torch_config, (self.backend,)

        @property
        def backend_cls(self):
            return _Backend

        @property
        def train_func_context(self):
            return _TorchContext

        @property
        def framework(self):
            return TrainingFramework.TORCH

    class LeanTorchTrainer(DataParallelTrainer):
        def __init__(self, loop, use_gpu: bool, **kwargs):
            super().__init__(loop, backend_config=TorchBackendConfig("nccl" if use_gpu else "gloo"), **kwargs)

        def _create_default_callbacks(self):
            unused = (PlacementGroupCleanerCallback,) + ((DatasetsCallback,) if not self.datasets else ())
            return [c for c in super()._create_default_callbacks() if not isinstance(c, unused)]

    return LeanTorchTrainer
