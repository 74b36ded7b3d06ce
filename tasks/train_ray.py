"""Ray Train around the plain loop: TorchTrainer workers, Ray Data shards, a checkpoint every epoch.

The three calls that make `fit` distributed are marked (1) prepare_model, (2) get_dataset_shard,
(3) ray.train.report. Rank 0 also tracks to W&B and, after the last epoch, scores the test split.
"""
from __future__ import annotations

import json
import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import UserError
from .preprocess import ROW, Prepared, n_inputs
from .spec import Spec
from .train import LossModule, Progress, fit

MIN_CPU_PER_WORKER = 0.25


@dataclass
class Plan:
    """How many Ray Train workers, with what each, and why (said when it differs from the spec)."""

    workers: int
    cpu: float
    gpu: float
    note: str = ""


def plan_workers(requested: int, use_gpu, cpus: float, gpus: float, share: int = 1) -> Plan:
    """Fit `requested` workers into 1/share of the cluster, leaving one CPU for Ray Data to read with.

    On 2 CPUs, two workers at 1 CPU each starve the Parquet read (it gets 0 CPU and never moves):
    each worker gets a fraction instead. `share` is the number of runs side by side (a sweep's
    parallel trials), so K runs x workers never ask for more than the cluster has.
    """
    want_gpu = gpus > 0 if use_gpu == "auto" else bool(use_gpu)
    if want_gpu and gpus <= 0:
        raise UserError("train.use_gpu: true but the Ray cluster has no GPU; use auto or false")
    budget = max((cpus - (1 if cpus >= 2 else 0)) / share, MIN_CPU_PER_WORKER)
    limit = int(budget / MIN_CPU_PER_WORKER + 1e-9)
    gpu = 0.0
    if want_gpu:
        gpu_budget = gpus / share
        limit = min(limit, max(1, int(gpu_budget)))
        gpu = 1.0 if gpu_budget >= 1 else gpu_budget
    workers = max(1, min(requested, limit))
    cpu = budget / workers
    cpu = float(int(cpu)) if cpu >= 1 else math.floor(cpu * 100 + 1e-9) / 100
    note = ""
    if workers < requested:
        where = f"{gpus:g} GPU(s)" if want_gpu else f"{cpus:g} CPUs"
        note = f"train.workers: {requested} asked, room for {workers} per run on {where}; using {workers}"
    return Plan(workers, cpu, gpu, note)


def to_tensors(b: dict, n_x: int, task: str) -> dict:
    """A numpy batch of Parquet columns (x0.., y or y0.., __row__) → tensors x (B, D), y, row."""
    x = np.stack([b[f"x{i}"] for i in range(n_x)], axis=1).astype("float32", copy=False)
    out = {"x": torch.from_numpy(np.ascontiguousarray(x)), "row": torch.from_numpy(np.array(b[ROW], dtype="int64"))}
    ycols = sorted((k for k in b if k == "y" or (k.startswith("y") and k[1:].isdigit())), key=lambda k: (len(k), k))
    if ycols:
        if task == "classification":
            out["y"] = torch.from_numpy(np.array(b["y"], dtype="int64"))
        else:
            out["y"] = torch.from_numpy(np.stack([b[k] for k in ycols], axis=1).astype("float32"))
    return out


def _batches(shard, n_x: int, task: str, batch_size: int, shuffle_seed: int | None = None):
    """Ray Data numpy batches → dicts of tensors."""
    kwargs = {"batch_size": batch_size, "batch_format": "numpy", "drop_last": False}
    if shuffle_seed is not None:
        kwargs.update(local_shuffle_buffer_size=4 * batch_size, local_shuffle_seed=shuffle_seed)
    for b in shard.iter_batches(**kwargs):
        yield to_tensors(b, n_x, task)


def local_batches(path: str, n_x: int, task: str, batch_size: int = 1024):
    """The same batches read straight from Parquet, for evaluation outside Ray."""
    import pandas as pd

    frame = pd.read_parquet(path)
    for i in range(0, len(frame), batch_size):
        part = frame.iloc[i:i + batch_size]
        yield to_tensors({c: part[c].to_numpy() for c in part.columns}, n_x, task)


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


def _parquet_dataset(path: str):
    """The train split as a Ray Dataset, sharded across workers by get_dataset_shard.

    Up to IN_MEMORY_BYTES of Parquet is read once into the object store: re-reading it every epoch
    costs ~4 s of read tasks on 2 CPUs for a 1,000-row split. Larger splits stream from the files.
    """
    import pyarrow.parquet as pq
    import ray.data

    size = sum(f.stat().st_size for f in Path(path).glob("*.parquet"))
    if size <= IN_MEMORY_BYTES:
        return ray.data.from_arrow(pq.read_table(path))
    return ray.data.read_parquet(path)


def _save_checkpoint(directory: Path, model_state, best_state, extra: dict, progress: Progress) -> None:
    torch.save(model_state, directory / "last.pt")
    torch.save(best_state, directory / "model.pt")
    torch.save(extra.get("optimizer", {}), directory / "optimizer.pt")
    (directory / "progress.json").write_text(json.dumps(progress.to_dict()))


def train_loop(config: dict) -> None:
    """What every Ray Train worker runs."""
    import ray.train
    import ray.train.torch

    from models import build_model

    from . import progress as progress_file
    from . import tracking
    from .evaluate import evaluate
    from .spec import validate

    spec = validate(config["spec"])  # re-validated on this side of the process boundary
    state, cfg = config["state"], spec.train
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed + rank)
    if config.get("threads"):
        torch.set_num_threads(config["threads"])
    device = ray.train.torch.get_device()
    model = build_model(spec.model.name, state["input_shape"], state["output_dim"], state["task"],
                        spec.model.params, class_weight=state.get("class_weight"))
    net = ray.train.torch.prepare_model(LossModule(model))  # (1) DDP when world > 1, moved to device
    n_x, task = n_inputs(state), state["task"]
    per_worker = max(1, cfg.batch_size // world)
    train_shard = ray.train.get_dataset_shard("train")  # (2) this worker's share of the rows
    val_shard = ray.train.get_dataset_shard("val") if config["has_val"] else None

    progress, opt_state, best_state = Progress(), None, None
    resumed = ray.train.get_checkpoint()
    if resumed:
        with resumed.as_directory() as d:
            model.load_state_dict(torch.load(Path(d) / "last.pt", weights_only=True))
            best_state = torch.load(Path(d) / "model.pt", weights_only=True)
            opt_state = torch.load(Path(d) / "optimizer.pt", weights_only=True)
            progress = Progress(**json.loads((Path(d) / "progress.json").read_text()))

    run = None
    if rank == 0:
        w = config["wandb"]
        run = tracking.start(w["project"], w["mode"], Path(config["home"]), name=w["name"], group=w["group"],
                             config={**config["spec"], "trial": config.get("trial_params")},
                             job_type=w.get("job_type", "train"), entity=w.get("entity"))
    pruner = None
    if config.get("trial"):
        from .sweep_objective import TrialReporter

        pruner = TrialReporter(config["trial"], rank)

    def report(row, prog, extra, best):
        """(3) every epoch: metrics + a checkpoint from rank 0; every worker calls it (a barrier)."""
        stop = pruner.should_stop(row, prog) if pruner else False
        if rank == 0:
            if run is not None:
                run.log(row, step=row["epoch"])
            progress_file.append(config.get("progress"), {"kind": "epoch", "row": row, "epochs": cfg.epochs})
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                _save_checkpoint(Path(tmp), model.state_dict(), best, extra, prog)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report({k: v for k, v in row.items()}, checkpoint=checkpoint)
        return stop

    try:
        progress, best_state = fit(
            net, model,
            lambda epoch: _batches(train_shard, n_x, task, per_worker, shuffle_seed=cfg.seed * 1000 + epoch),
            (lambda: _batches(val_shard, n_x, task, 1024)) if val_shard is not None else None,
            cfg, state, report=report, progress=progress, optimizer_state=opt_state, best_state=best_state,
            device=device,
        )
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint, final = None, {}
            if rank == 0:
                model.load_state_dict(best_state)
                if config["evaluate"]:  # a sweep's trials never look at the test split
                    test_shard = ray.train.get_dataset_shard("test")
                    result = evaluate(model, _batches(test_shard, n_x, task, 1024), state, progress.history,
                                      Path(tmp), device=device, seed=cfg.seed)
                    final = result["metrics"]
                torch.save({k: v.cpu() for k, v in best_state.items()}, Path(tmp) / "model.pt")
                (Path(tmp) / "progress.json").write_text(json.dumps(progress.to_dict()))
                (Path(tmp) / "world.json").write_text(json.dumps({"workers": world, "device": str(device)}))
                if run is not None:
                    import wandb

                    run.summary.update({**final, "best_epoch": progress.best_epoch, "stopped": progress.stopped})
                    if config.get("trial"):
                        run.summary["trial_state"] = "pruned" if progress.stopped == "pruned" else "complete"
                    if final:
                        run.log({f"plots/{Path(p).stem}": wandb.Image(str(Path(tmp) / p)) for p in result["plots"]},
                                step=progress.epoch)
                    (Path(tmp) / "wandb.json").write_text(json.dumps({"mode": config["wandb"]["mode"],
                                                                      "run_dir": tracking.run_dir(run), "id": run.id}))
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report({"final": 1, **final}, checkpoint=checkpoint)
    finally:
        if run is not None:
            run.finish(exit_code=0 if progress.stopped in ("done", "early", "pruned") else 1)


@dataclass
class Trained:
    """What a finished Ray Train run leaves: the final checkpoint's files, copied out."""

    dir: Path
    metrics: dict
    progress: Progress
    wandb: dict = field(default_factory=dict)
    workers: int = 0
    seconds: float = 0.0
    note: str = ""
    eval_seconds: float = 0.0


def train_on_ray(spec: Spec, prepared: Prepared, out_dir: Path, home: Path, run_name: str,
                 wandb_mode: str, group: str | None = None, trial: dict | None = None, share: int = 1,
                 storage: Path | None = None, progress_path: str | None = None, evaluate: bool = True) -> Trained:
    """Fit `spec` on the prepared Parquet with Ray Train; copies the final checkpoint into out_dir."""
    import ray.data
    import ray.train

    from cluster.connect import ray_resources

    t0 = time.perf_counter()
    cpus, gpus = ray_resources()
    plan = plan_workers(spec.train.workers, spec.train.use_gpu, cpus, gpus, share=share)
    if plan.note:
        print(f"note: {plan.note}", file=sys.stderr)
    has_val = prepared.state["counts"]["val"] > 0
    if trial and not has_val:
        raise UserError("data.split.val: a sweep needs a validation split to score trials on; set val > 0")
    # val and test are small and every worker reads them whole, so they go into the object store
    # once (no read tasks to schedule while the workers hold the CPUs).
    import pyarrow.parquet as pq

    datasets = {"train": _parquet_dataset(prepared.path("train"))}
    if evaluate:
        datasets["test"] = ray.data.from_arrow(pq.read_table(prepared.path("test")))
    if has_val:
        datasets["val"] = ray.data.from_arrow(pq.read_table(prepared.path("val")))
    storage = Path(storage or home / ".ray_storage")
    config = {
        "spec": spec.model_dump(mode="json"), "state": prepared.state, "has_val": has_val, "home": str(home),
        "threads": max(1, int(plan.cpu)),
        "wandb": {"project": spec.tracking.wandb.project, "mode": wandb_mode, "name": run_name,
                  "group": group or spec.name, "entity": spec.tracking.wandb.entity,
                  "job_type": "trial" if trial else "train"},
        "trial": trial, "trial_params": (trial or {}).get("params"), "progress": progress_path, "evaluate": evaluate,
    }
    trainer = _trainer_class()(
        train_loop, train_loop_config=config, datasets=datasets,
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
        scaling_config=ray.train.ScalingConfig(
            num_workers=plan.workers, use_gpu=plan.gpu > 0,
            resources_per_worker={"CPU": plan.cpu, **({"GPU": plan.gpu} if plan.gpu else {})}),
        run_config=ray.train.RunConfig(
            name=run_name, storage_path=str(storage),
            failure_config=ray.train.FailureConfig(max_failures=spec.train.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            logging_config=ray.train.LoggingConfig(log_level="WARNING")),
    )
    result = trainer.fit()
    if result.error:
        raise result.error
    if result.checkpoint is None:
        raise RuntimeError(f"Ray Train run {run_name} ended without a checkpoint")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with result.checkpoint.as_directory() as d:
        shutil.copytree(d, out_dir, dirs_exist_ok=True)
    shutil.rmtree(storage / run_name, ignore_errors=True)
    prog = Progress(**json.loads((out_dir / "progress.json").read_text()))
    evald = json.loads((out_dir / "eval.json").read_text()) if evaluate else {"metrics": {}}
    wb = json.loads((out_dir / "wandb.json").read_text()) if (out_dir / "wandb.json").exists() else {"mode": "disabled", "run_dir": None}
    trained = Trained(out_dir, evald["metrics"], prog, wb, plan.workers, time.perf_counter() - t0, plan.note)
    trained.eval_seconds = evald.get("seconds", 0.0)
    return trained
