"""Ray Train around the plain loop: TorchTrainer workers, Ray Data shards, a checkpoint every epoch.

The three calls that make `fit` distributed are marked (1) prepare_model, (2) get_dataset_shard,
(3) ray.train.report (inside EpochReporter). Rank 0 also tracks to W&B and, after the last epoch,
scores the test split, so its metrics and plots reach the run's own W&B run.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import torch

from ..data import Prepared
from ..progress import say
from ..spec import Spec
from ..staged import claim_ray_storage, release_ray_storage
from .batches import held_shard, shard_batches, tensor_batches
from .checkpoint import load_checkpoint, read_progress
from .job import HookFactory, Tracking, Trained, TrainJob
from .loop import LossModule, Progress, fit
from .plan import plan_workers
from .reporter import EpochReporter


def _trainer_class():
    """TorchTrainer without Ray Train V2's PlacementGroupCleaner actor.

    The cleaner watches the controller through Ray's state API, which needs the dashboard; conductor
    never starts the dashboard, so the cleaner only logs "Failed to query" every second, and its extra
    actor process made each run ~14 s slower on 2 CPUs (32 s -> 18 s for an empty 2-worker fit).
    An embedded Ray dies with its driver, placement groups included.
    """
    from ray.train.torch import TorchTrainer

    try:
        from ray.train.v2._internal.callbacks.placement_group_callback import (
            PlacementGroupCleanerCallback,
        )
    except ImportError:  # another Ray release: keep its defaults
        return TorchTrainer

    class LeanTorchTrainer(TorchTrainer):
        def _create_default_callbacks(self):
            return [c for c in super()._create_default_callbacks() if not isinstance(c, PlacementGroupCleanerCallback)]

    return LeanTorchTrainer


IN_MEMORY_BYTES = 256 * 2**20
EVAL_BATCH = 8192  # rows per batch when scoring val and test: no gradients, so only Ray Data's per-batch cost scales


def _small(path: str) -> bool:
    """At most IN_MEMORY_BYTES once read: Parquet's uncompressed size from its footers (the files
    themselves are ~6x smaller than the table they hold)."""
    import pyarrow.parquet as pq

    size = 0
    for f in sorted(Path(path).glob("*.parquet")):
        meta = pq.ParquetFile(f).metadata
        size += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        if size > IN_MEMORY_BYTES:
            return False
    return True


def _parquet_dataset(path: str):
    """One split as a Ray Dataset (train is sharded across workers by get_dataset_shard).

    A split of up to IN_MEMORY_BYTES (as a table) is read once into the object store, and each worker holds its share
    as tensors after reading it once (tasks/train/batches.held_shard): re-reading it every epoch costs ~4 s
    of read tasks on 2 CPUs for a 1,000-row split, and Ray Data's per-batch formatting made an epoch 1.26x
    plain DDP's. Larger splits stream from the files every epoch.
    """
    import pyarrow.parquet as pq
    import ray.data

    return ray.data.from_arrow(pq.read_table(path)) if _small(path) else ray.data.read_parquet(path)


def train_loop(config: dict) -> None:
    """What every Ray Train worker runs: config {"job": TrainJob}."""
    import ray.train
    import ray.train.torch

    from models import build_model

    job: TrainJob = config["job"]
    spec, prep = job.spec, job.preprocessor  # the spec is re-validated on this side of the process boundary
    cfg, ctx = spec.train, ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed + rank)
    torch.set_num_threads(job.threads)
    device = ray.train.torch.get_device()
    model = build_model(spec.model.name, prep.input_shape, prep.output_dim, prep.task, spec.model.params,
                        class_weight=prep.class_weight, target_index=prep.target_index)
    net = ray.train.torch.prepare_model(LossModule(model))  # (1) DDP when world > 1, moved to device
    splits = ["train"] + ["val"] * job.has_val + ["test"] * job.evaluate  # a trial never reads test
    shard = {s: ray.train.get_dataset_shard(s) for s in splits}  # (2) this worker's share of the rows
    held: dict[str, dict] = {}  # a small split's share, read on first use (test: by rank 0 only, at the end)

    def batches(s: str, size: int, seed: int | None = None):
        if s not in job.held:
            return shard_batches(shard[s], prep.n_inputs, prep.task, size, seed)
        if s not in held:
            held[s] = held_shard(shard[s], prep.n_inputs, prep.task)
        return tensor_batches(held[s], size, seed)

    progress, opt_state, best = Progress(), None, None
    if resumed := ray.train.get_checkpoint():
        with resumed.as_directory() as d:
            last, best, opt_state, progress = load_checkpoint(Path(d))
            model.load_state_dict(last)
    reporter = EpochReporter(job, rank, model, cfg.epochs, progress)
    try:
        progress, best = fit(
            net, model, lambda epoch: batches("train", max(1, cfg.batch_size // world), cfg.seed * 1000 + epoch),
            (lambda: batches("val", EVAL_BATCH)) if job.has_val else None, cfg, prep, report=reporter,
            progress=progress, optimizer_state=opt_state, best_state=best, device=device)
        reporter.finish(best, progress, lambda: batches("test", EVAL_BATCH), world, device)
    finally:
        reporter.close(progress)


def _datasets(prepared: Prepared, evaluate: bool, has_val: bool) -> dict:
    """train is split across the workers; every worker reads val (each epoch) and rank 0 test whole, each
    held in the object store when small (no read tasks while the workers hold the CPUs), streamed when not."""
    datasets = {"train": _parquet_dataset(prepared.path("train"))}
    if evaluate:
        datasets["test"] = _parquet_dataset(prepared.path("test"))
    if has_val:
        datasets["val"] = _parquet_dataset(prepared.path("val"))
    return datasets


def train_on_ray(spec: Spec, prepared: Prepared, out_dir: Path, home: Path, tracking: Tracking,
                 hook: HookFactory | None = None, share: int = 1, progress_path: str | None = None,
                 evaluate: bool = True, baselines: dict | None = None) -> Trained:
    """Fit `spec` on the prepared Parquet with Ray Train; copies the final checkpoint into out_dir.
    `baselines` (baseline/<name>/<metric>) join the test metrics in rank 0's W&B summary."""
    import ray.train

    from cluster.connect import ray_resources

    t0 = time.perf_counter()
    plan = plan_workers(spec.train.workers, spec.train.use_gpu, *ray_resources(), share=share)
    if plan.note:
        say(f"note: {plan.note}")
    has_val = prepared.preprocessor.counts["val"] > 0
    job = TrainJob(spec.model_dump(mode="json"), prepared.preprocessor, str(home), tracking, has_val,
                   evaluate=evaluate, threads=max(1, int(plan.cpu)), progress_path=progress_path, hook=hook,
                   baselines=baselines or {},
                   held=tuple(s for s in ("train", "val", "test") if prepared.preprocessor.counts.get(s)
                              and _small(prepared.path(s))))
    storage = claim_ray_storage(home, tracking.name).parent  # a killed run's folder goes with the next command
    trainer = _trainer_class()(
        train_loop, train_loop_config={"job": job}, datasets=_datasets(prepared, evaluate, has_val),
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
        scaling_config=ray.train.ScalingConfig(
            num_workers=plan.workers, use_gpu=plan.gpu > 0,
            resources_per_worker={"CPU": plan.cpu, **({"GPU": plan.gpu} if plan.gpu else {})}),
        run_config=ray.train.RunConfig(
            name=tracking.name, storage_path=str(storage),
            failure_config=ray.train.FailureConfig(max_failures=spec.train.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            logging_config=ray.train.LoggingConfig(log_level="WARNING")),
    )
    result = trainer.fit()
    if result.error:
        raise result.error
    if result.checkpoint is None:
        raise RuntimeError(f"Ray Train run {tracking.name} ended without a checkpoint")
    trained = _collect(result.checkpoint, Path(out_dir), evaluate, plan, time.perf_counter() - t0)
    release_ray_storage(home, tracking.name)
    return trained


def _collect(checkpoint, out_dir: Path, evaluate: bool, plan, seconds: float) -> Trained:
    """Copy the final checkpoint out of Ray's storage (removed after)."""
    import json

    out_dir.mkdir(parents=True, exist_ok=True)
    with checkpoint.as_directory() as d:
        shutil.copytree(d, out_dir, dirs_exist_ok=True)
    evaluated = evaluate and (out_dir / "eval.json").exists()  # a diverged run is not evaluated
    evald = json.loads((out_dir / "eval.json").read_text()) if evaluated else {"metrics": {}}
    wandb_file = out_dir / "wandb.json"
    wb = json.loads(wandb_file.read_text()) if wandb_file.exists() else {"mode": "disabled", "run_dir": None}
    return Trained(out_dir, evald["metrics"], read_progress(out_dir), wb, plan.workers, seconds, plan.note,
                   evald.get("seconds", 0.0))
