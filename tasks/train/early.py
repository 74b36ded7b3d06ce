"""`conductor run`'s Ray Train workers, started as the command connects to Ray (the embedded one or `cluster up`'s)
instead of when it calls fit() seconds later. Traced on cluster up (digits-mlp, one
worker, a fast day): fit() at 3.6 s, then the placement group and a new worker process 1.2 s, the worker's import
of torch for the process group 1.5 s, and torch's first optimizer 1.1 s (it imported torch._dynamo then; optim.py's
do not) — one after the other, before the first epoch at ~8 s. Here the same placement group and the same
RayTrainWorker actors are made while the driver still sets up its flow, and each imports what those steps import;
LeanWorkerGroup (lean.py) takes them over when its group asks for the same bundles, else they are removed and Ray
Train makes its own. Ray Train keeps everything else: the synchronization actor, the backend, the train function, a
restarted group (Ray's path). Unused, they go with the command's Ray job. CONDUCTOR_EARLY_WORKERS=0 turns it off
(benchmarks/first_epoch.py's comparison). Alternating on/off: first epoch 8.5 -> 6.8 s with cluster up, 13.1 ->
10.9 s on the embedded default (medians of 5 and 4 pairs, every pair faster)."""
from __future__ import annotations

import contextlib
import os
import threading

# the WorkerGroup internals that LeanWorkerGroup (lean.py) overrides or calls; without them, Ray's own TorchTrainer
INTERNALS = ("_get_worker_runtime_env", "_init_train_context_on_workers", "_decorate_worker_log_file_paths",
             "_create_placement_group", "_create_workers", "_assign_worker_ranks")
STRATEGY = "PACK"  # Ray Train's default placement strategy (ScalingConfig.placement_strategy)
_lock = threading.Lock()
_early: dict = {}  # made by start(): "pg", "actors", "resources"; until a worker group takes or drops them


def warm_imports(ddp: bool = True) -> None:
    """Run in each early worker: what Ray's torch backend and the train function would import after fit(), and
    with more than one worker what DDP imports (torch._dynamo, ~1.3 s here; one worker's optimizer does not:
    optim.py)."""
    import ray.train.torch  # noqa: F401

    if ddp:
        import torch._dynamo  # noqa: F401

    import models  # noqa: F401

    from . import batches, loop  # noqa: F401


def start(workers: int, cpu: float, gpu: float = 0.0) -> int:
    """Ask Ray for `workers` RayTrainWorker actors of `cpu`/`gpu` each in a placement group, warming up; returns
    how many were asked for (0: turned off, or Ray Train's internals moved)."""
    if os.environ.get("CONDUCTOR_EARLY_WORKERS", "1") == "0":
        return 0
    try:
        import ray
        from ray.train.v2._internal.constants import get_env_vars_to_propagate
        from ray.train.v2._internal.execution.controller import TrainController  # noqa: F401 - lean.py's too
        from ray.train.v2._internal.execution.worker_group import WorkerGroup
        from ray.train.v2._internal.execution.worker_group.worker import RayTrainWorker
        from ray.train.v2._internal.util import bundle_to_remote_args
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
    except ImportError:
        return 0
    if not all(hasattr(WorkerGroup, m) for m in INTERNALS):  # Ray's own TorchTrainer would never take them
        return 0
    resources = {"CPU": cpu, **({"GPU": gpu} if gpu else {})}
    env = worker_env(get_env_vars_to_propagate())  # as LeanWorkerGroup._get_worker_runtime_env gives them
    pg, actors = None, []
    try:
        pg = placement_group([resources] * workers, strategy=STRATEGY)
        cls = ray.remote(runtime_env={"env_vars": env} if env else {}, **bundle_to_remote_args(resources))(RayTrainWorker)
        for i in range(workers):
            actors.append(cls.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
                placement_group=pg, placement_group_bundle_index=i)).remote())
            actors[-1].execute.remote(warm_imports, workers > 1)
    except Exception:  # noqa: BLE001 - no head start: Ray Train makes its own workers at fit(), as before
        with contextlib.suppress(Exception):
            for actor in actors:
                ray.kill(actor)
            if pg is not None:
                ray.util.remove_placement_group(pg)
        return 0
    with _lock:
        drop()
        _early.update(pg=pg, actors=actors, resources=resources)
    return workers


def take_placement_group(context):
    """The early placement group, wrapped as Ray Train's, when `context` (a WorkerGroupContext) asks for the same
    bundles; None otherwise (the early ones are dropped, so that Ray Train's own group finds the CPUs free)."""
    with _lock:
        if not _early or _early.get("taken"):
            return None
        same = (context.num_workers == len(_early["actors"]) and dict(context.resources_per_worker) ==
                _early["resources"] and context.placement_strategy == STRATEGY and not context.label_selector)
        if not same:
            drop()
            return None
        from ray.train.v2._internal.execution.worker_group.placement_group_handle import (
            DefaultPlacementGroupHandle,
        )

        _early["taken"] = True
        return DefaultPlacementGroupHandle(_early["pg"])


def take_workers(num_workers: int, pg, resources: dict, indices=None, starting_world_rank: int = 0,
                 world_size=None, replica_group_size=None) -> list | None:
    """WorkerGroup._create_workers for the early actors, when `pg` is their placement group; None otherwise
    (when it is theirs but asked for otherwise, they are killed first: their bundles are then free)."""
    import ray

    with _lock:
        if not _early.get("taken") or _early["pg"] is not pg:
            return None
        actors = _early.pop("actors")
        _early.clear()
    if indices is not None or starting_world_rank or num_workers != len(actors):
        for actor in actors:
            ray.kill(actor)
        return None
    from ray.exceptions import RayActorError
    from ray.train.v2._internal.exceptions import WorkerGroupStartupFailedError
    from ray.train.v2._internal.execution.worker_group import WorkerGroup
    from ray.train.v2._internal.execution.worker_group.worker import Worker

    try:
        metadata = ray.get([actor.get_metadata.remote() for actor in actors])
    except RayActorError as e:  # as Ray's: the controller starts a new group, through Ray's own path
        for actor in actors:
            ray.kill(actor)
        raise WorkerGroupStartupFailedError(f"An early Ray Train worker failed to start: {e}") from e
    workers = [Worker(a, m, resources, placement_group_bundle_index=i)
               for i, (a, m) in enumerate(zip(actors, metadata, strict=True))]
    return WorkerGroup._assign_worker_ranks(workers, starting_world_rank, world_size, replica_group_size)


def worker_env(env_vars: dict[str, str]) -> dict[str, str]:
    """Of the driver's variables that Ray Train propagates, those a worker would not inherit from a raylet that
    conductor started (cluster/connect.QUIET_ENV's values): a user's own."""
    from cluster.connect import QUIET_ENV

    return {k: v for k, v in env_vars.items() if QUIET_ENV.get(k) != v}


def drop() -> None:
    """Remove the early workers nobody took (their placement group, which holds their CPUs, and the actors).
    Called with _lock held."""
    if _early and not _early.get("taken"):
        import ray
        from ray.util import remove_placement_group

        for actor in _early["actors"]:
            ray.kill(actor)
        remove_placement_group(_early["pg"])
    _early.clear()
