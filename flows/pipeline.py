"""The pipeline flow: preprocess on Dask, train and evaluate on Ray Train, register the run directory.

The only module besides the CLI that imports prefect. Tasks stay plain functions in tasks/; here
they get their Prefect wrapping.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from cluster.connect import dask_runner_kwargs, ensure_ray, quiet_env

quiet_env()

from prefect import flow, task  # noqa: E402
from prefect_dask import DaskTaskRunner, get_dask_client  # noqa: E402

logging.getLogger("distributed").setLevel(logging.ERROR)  # Prefect's logging config sets it to INFO

from cluster.settings import load_settings  # noqa: E402
from tasks import register, tracking  # noqa: E402
from tasks.errors import UserError  # noqa: E402
from tasks.preprocess import Prepared, preprocess  # noqa: E402
from tasks.progress import Follower, format_row  # noqa: E402
from tasks.spec import Data, Spec, validate  # noqa: E402


def quiet_prefect_console(level: int = logging.CRITICAL) -> None:
    """Keep Prefect's console handlers from printing a failed run's traceback: the CLI says it in one
    line (--debug shows it). Its API handler still sends every log line to the server for the UI."""
    for name in ["prefect", *[n for n in logging.root.manager.loggerDict if n.startswith("prefect")]]:
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler) \
                    and type(handler).__name__ != "APILogHandler":
                handler.setLevel(level)


def _not_user_error(task, task_run, state) -> bool:
    """Retry infrastructure failures, never a user's bad input."""
    try:
        state.result()
    except UserError:
        return False
    except Exception:  # noqa: BLE001
        return True
    return False


@task(name="preprocess", retries=1, retry_condition_fn=_not_user_error)
def preprocess_task(data: dict, home: str) -> dict:
    """Dask dataframe work on the flow's Dask cluster; returns where the Parquet splits are."""
    with get_dask_client():
        prepared = preprocess(Data.model_validate(data), Path(home), log=lambda *_: None)
    return {"dir": str(prepared.dir), "cached": prepared.cached, "seconds": prepared.seconds,
            "counts": prepared.state["counts"]}


@task(name="train")
def train_task(spec: Spec, prep_dir: str, stage: str, home: str, run_id: str, wandb_mode: str) -> dict:
    from tasks.train_ray import train_on_ray

    prepared = Prepared.load(Path(prep_dir))
    progress = Path(home) / ".progress" / f"{run_id}.jsonl"
    render = lambda rec: format_row(f"[{spec.name}]", rec["row"], rec["epochs"])  # noqa: E731
    with Follower(progress, render):
        trained = train_on_ray(spec, prepared, Path(stage), Path(home), run_name=f"{spec.name}-{run_id}",
                               wandb_mode=wandb_mode, progress_path=str(progress))
    return {"metrics": trained.metrics, "progress": trained.progress.to_dict(), "wandb": trained.wandb,
            "workers": trained.workers, "seconds": trained.seconds, "note": trained.note,
            "eval_seconds": trained.eval_seconds}


@task(name="register")
def register_task(spec: Spec, prep_dir: str, stage: str, trained: dict) -> str:
    """Write spec, model.json, metrics and report into the staged directory, then rename it."""
    from models import build_model, describe

    state = Prepared.load(Path(prep_dir)).state
    model = build_model(spec.model.name, state["input_shape"], state["output_dim"], state["task"], spec.model.params)
    meta = describe(model, spec.model.name) | {"features": state["features"], "target": state["target"]}
    prog = trained["progress"]
    metrics = register.final_metrics(trained["metrics"], prog["history"], prog["best_epoch"], prog["stopped"])
    register.write_run(Path(stage), spec, Path(prep_dir), meta, metrics, prog["history"])
    return str(register.finalize(Path(stage)))


@flow(name="conductor-run", persist_result=False, log_prints=False,
      task_runner=DaskTaskRunner(**dask_runner_kwargs(load_settings())))  # a deployment runs it as defined
def pipeline(spec: dict, run_id: str | None = None) -> dict:
    """preprocess (Dask) → train + evaluate (Ray Train) → register; returns the run summary."""
    t0 = time.perf_counter()
    spec_obj = validate(spec)
    settings = load_settings()
    home = settings.home
    run_id = run_id or register.new_run_id()
    wandb_mode = tracking.resolve_mode(spec_obj.tracking.wandb.mode)
    future = preprocess_task.submit(spec_obj.data.model_dump(mode="json"), str(home))
    timings = ensure_ray(settings)  # Ray starts while Dask preprocesses
    prep = future.result()
    timings["preprocess_s"] = prep["seconds"]
    timings["preprocess_wait_s"] = time.perf_counter() - t0 - timings["ray_start_s"]
    stage = register.stage_dir(home, spec_obj.name, run_id)
    try:
        trained = train_task(spec_obj, prep["dir"], str(stage), str(home), run_id, wandb_mode)
        run_dir = register_task(spec_obj, prep["dir"], str(stage), trained)
    except BaseException:
        register.discard(stage, home)
        raise
    hist = trained["progress"]["history"]
    timings["train_s"] = trained["seconds"]
    timings["epochs_s"] = sum(r.get("epoch_seconds", 0.0) for r in hist)
    timings["evaluate_s"] = trained["eval_seconds"]
    timings["flow_s"] = time.perf_counter() - t0
    metrics = register.final_metrics(trained["metrics"], hist, trained["progress"]["best_epoch"],
                                     trained["progress"]["stopped"])
    summary = {"name": spec_obj.name, "run_id": run_id, "run_dir": run_dir, "metrics": metrics,
               "wandb": {"mode": trained["wandb"].get("mode", wandb_mode), "run_dir": trained["wandb"].get("run_dir")},
               "workers": trained["workers"], "samples_per_s": _samples_per_s(trained["progress"]) * trained["workers"],
               "preprocess": {"cached": prep["cached"], "counts": prep["counts"]}, "timings": timings,
               "note": trained["note"]}
    publish_summary(summary)
    return summary


def publish_summary(summary: dict) -> None:
    """The run's summary as a Prefect artifact: readable in the UI, and by `conductor submit --wait`."""
    import json
    import re

    from prefect.artifacts import create_markdown_artifact

    metrics = "\n".join(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |"
                         for k, v in (summary.get("metrics") or {}).items())
    key = re.sub(r"[^a-z0-9-]+", "-", f"{summary['name']}-summary".lower())
    create_markdown_artifact(
        key=key, description=f"conductor summary of {summary['name']}",
        markdown=f"# {summary['name']}\n\nrun directory `{summary.get('run_dir')}`\n\n| metric | value |\n|---|---|\n"
                 f"{metrics}\n\n```json\n{json.dumps(summary, default=str)}\n```\n")


def _samples_per_s(progress: dict) -> float:
    """Rank 0's training samples per second (each worker sees about as many)."""
    return progress["samples"] / progress["train_seconds"] if progress["train_seconds"] else 0.0


def run_pipeline(spec: Spec, run_id: str | None = None) -> dict:
    """Call the flow with a DaskTaskRunner on the configured (or an embedded) Dask cluster."""
    settings = load_settings()
    runner = DaskTaskRunner(**dask_runner_kwargs(settings))
    return pipeline.with_options(task_runner=runner)(spec=spec.model_dump(mode="json"), run_id=run_id)
