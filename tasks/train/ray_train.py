"""Ray Train around the plain loop: TorchTrainer workers, Ray Data shards, a checkpoint every epoch.

The three calls that make `fit` distributed are marked (1) prepare_model, (2) get_dataset_shard,
(3) ray.train.report (inside EpochReporter). Rank 0 also appends each epoch's row to the progress file and,
after the last epoch, scores the test split into the final checkpoint; the driver keeps the W&B run from both
(tasks/train/wandb_run.py).
"""
from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from ..data import Prepared
from ..progress import say
from ..spec import Spec
from ..staged import claim_ray_storage, release_ray_storage
from .job import HookFactory, Tracking, Trained, TrainJob
from .lean import trainer_class
from .plan import plan_workers
from .state import Progress, read_progress
from .wandb_run import DriverRun

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


def _held_tables(prepared: Prepared, held: tuple[str, ...]) -> dict:
    """Each small split (at most IN_MEMORY_BYTES as a table) read once here into the object store; each worker
    takes its share from it once and holds it as tensors (tasks/train/batches.table_share). Not Ray Data: its
    DatasetManager and SplitCoordinator are two more actor processes that a run started one after the other
    before its first batch (~4.5 s of a 1-worker run's start-up on 2 CPUs), and re-reading a split every epoch
    cost ~4 s of read tasks for 1,000 rows, its per-batch formatting an epoch 1.26x plain DDP's."""
    import pyarrow.parquet as pq
    import ray

    return {s: ray.put(pq.read_table(prepared.path(s))) for s in held}


def train_loop(config: dict) -> None:
    """What every Ray Train worker runs: config {"job": TrainJob}. Torch is imported here, in the worker: the
    driver that hands this function to Ray Train never loads it (first epoch ~1.5 s sooner with cluster up)."""
    import numpy as np
    import ray
    import ray.train
    import ray.train.torch
    import torch

    from models import build_model

    from .batches import shard_batches, table_share, tensor_batches
    from .checkpoint import load_checkpoint
    from .loop import LossModule, fit
    from .reporter import EpochReporter

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
    # (2) this worker's share of the rows: a streamed split's from Ray Data, a small one's from its table
    shard = {s: ray.train.get_dataset_shard(s) for s in splits if s not in job.tables}
    held: dict[str, dict] = {}  # a small split's share, taken on first use (test: by rank 0 only, at the end)

    def batches(s: str, size: int, seed: int | None = None):
        if s not in job.tables:
            return shard_batches(shard[s], prep.n_inputs, prep.task, size, seed)
        if s not in held:
            ranks = (rank, world) if s == "train" else (0, 1)  # val and test: every row on every worker
            held[s] = table_share(ray.get(job.tables[s]), prep.n_inputs, prep.task, *ranks)
        return tensor_batches(held[s], size, seed)

    progress, opt_state, best = Progress(), None, None
    if resumed := ray.train.get_checkpoint():
        with resumed.as_directory() as d:
            last, best, opt_state, progress = load_checkpoint(Path(d))
            model.load_state_dict(last)
    reporter = EpochReporter(job, rank, model, cfg.epochs, progress)
    progress, best = fit(
        net, model, lambda epoch: batches("train", max(1, cfg.batch_size // world), cfg.seed * 1000 + epoch),
        (lambda: batches("val", EVAL_BATCH)) if job.has_val else None, cfg, prep, report=reporter,
        progress=progress, optimizer_state=opt_state, best_state=best, device=device)
    reporter.finish(best, progress, lambda: batches("test", EVAL_BATCH), world, device)


def _datasets(prepared: Prepared, splits: list[str]) -> dict:
    """The splits too large to hold, streamed from their files every epoch by Ray Data: train split across the
    workers, val read whole by every worker, test by rank 0."""
    import ray.data

    return {s: ray.data.read_parquet(prepared.path(s)) for s in splits}


def train_on_ray(spec: Spec, prepared: Prepared, out_dir: Path, home: Path, tracking: Tracking,
                 hook: HookFactory | None = None, share: int = 1, progress_path: str | None = None,
                 evaluate: bool = True, baselines: Callable[[], dict] | None = None) -> Trained:
    """Fit `spec` on the prepared Parquet with Ray Train; copies the final checkpoint into out_dir.
    `baselines`, called once training is done: their metrics (baseline/<name>/<metric>) join the test metrics in
    the W&B run's summary."""
    import ray.train

    from cluster.connect import ray_resources

    t0 = time.perf_counter()
    plan = plan_workers(spec.train.workers, spec.train.use_gpu, *ray_resources(), share=share)
    if plan.note:
        say(f"note: {plan.note}")
    has_val = prepared.preprocessor.counts["val"] > 0
    splits = ["train"] + ["val"] * has_val + ["test"] * evaluate
    held = tuple(s for s in splits if prepared.preprocessor.counts.get(s) and _small(prepared.path(s)))
    streamed = [s for s in splits if s not in held]
    job = TrainJob(spec.model_dump(mode="json"), prepared.preprocessor, has_val,
                   evaluate=evaluate, threads=max(1, int(plan.cpu)), progress_path=progress_path, hook=hook,
                   tables=_held_tables(prepared, held))
    storage = claim_ray_storage(home, tracking.name).parent  # a killed run's folder goes with the next command
    trainer = trainer_class()(
        train_loop, use_gpu=plan.gpu > 0, train_loop_config={"job": job}, datasets=_datasets(prepared, streamed) or None,
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"] if "train" in streamed else []),
        scaling_config=ray.train.ScalingConfig(
            num_workers=plan.workers, use_gpu=plan.gpu > 0,
            resources_per_worker={"CPU": plan.cpu, **({"GPU": plan.gpu} if plan.gpu else {})}),
        run_config=ray.train.RunConfig(
            name=tracking.name, storage_path=str(storage),
            failure_config=ray.train.FailureConfig(max_failures=spec.train.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            logging_config=ray.train.LoggingConfig(log_level="WARNING")),
    )
    with DriverRun(tracking, job.spec_json, home, progress_path) as wb:  # opens beside Ray Train's start-up
        result = trainer.fit()
        if result.error:
            raise result.error
        if result.checkpoint is None:
            raise RuntimeError(f"Ray Train run {tracking.name} ended without a checkpoint")
        trained = _collect(result.checkpoint, Path(out_dir), evaluate, plan, time.perf_counter() - t0)
        trained.wandb = wb.finish(trained, _baselines(baselines), trial=hook is not None)
    release_ray_storage(home, tracking.name)
    return trained


def _baselines(scored: Callable[[], dict] | None) -> dict:
    """The baselines' metrics for the W&B summary; none when they failed (the caller, which waits for them
    too, reports that failure where it belongs)."""
    try:
        return scored() if scored else {}
    except Exception:  # noqa: BLE001 - raised again by the pipeline's own wait for them
        return {}


def _collect(checkpoint, out_dir: Path, evaluate: bool, plan, seconds: float) -> Trained:
    """Copy the final checkpoint out of Ray's storage (removed after)."""
    import json

    out_dir.mkdir(parents=True, exist_ok=True)
    with checkpoint.as_directory() as d:
        shutil.copytree(d, out_dir, dirs_exist_ok=True)
    evaluated = evaluate and (out_dir / "eval.json").exists()  # a diverged run is not evaluated
    evald = json.loads((out_dir / "eval.json").read_text()) if evaluated else {"metrics": {}}
    return Trained(out_dir, evald["metrics"], read_progress(out_dir), {}, plan.workers, seconds, plan.note,
                   evald.get("seconds", 0.0))
