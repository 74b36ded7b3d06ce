"""The pipeline flow: preprocess on Dask, train and evaluate on Ray Train, register the run directory.

Tasks stay plain functions in tasks/; here they get their Prefect wrapping.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from cluster.connect import dask_runner_kwargs, ensure_ray, quiet_env

quiet_env()  # before prefect reads its settings

from prefect import flow, task  # noqa: E402
from prefect_dask import DaskTaskRunner  # noqa: E402

from cluster.settings import load_settings  # noqa: E402
from flows.beats import heartbeats  # noqa: E402
from flows.common import baselines_task, logged, preprocess_task, publish_summary  # noqa: E402
from tasks import tracking  # noqa: E402
from tasks.data import Prepared  # noqa: E402
from tasks.data.sources import hide_source  # noqa: E402
from tasks.errors import UserError  # noqa: E402
from tasks.evaluate.table import verdict  # noqa: E402
from tasks.progress import Follower, format_row  # noqa: E402
from tasks.runs import new_run, new_run_id, register  # noqa: E402
from tasks.runs.repro import attach_repro, current_record  # noqa: E402
from tasks.spec import Spec, validate  # noqa: E402
from tasks.train import Tracking, Trained  # noqa: E402
from tasks.train.state import diverged_message  # noqa: E402

BASELINES_WAIT_S = 30.0  # training failed: how long its flow still waits for the baselines' task run to end


@task(name="train")
def train_task(spec: Spec, prepared: Prepared, stage: str, home: str, run_id: str, wandb_mode: str,
               baselines: Callable[[], dict] | None = None) -> Trained:
    """`baselines`: called once training is done, for the W&B summary (they are scored on Dask meanwhile)."""
    from tasks.train.ray_train import train_on_ray

    progress = Path(home) / ".progress" / f"{run_id}.jsonl"
    w = spec.tracking.wandb
    repro, _ = current_record(Path(home), run_id, spec, prepared.preprocessor)  # into the W&B config, masked
    with Follower(progress, lambda rec: format_row(f"[{spec.name}]", rec["row"], rec["epochs"])):
        return train_on_ray(spec, prepared, Path(stage), Path(home),
                            Tracking(w.project, wandb_mode, f"{spec.name}-{run_id}", spec.name, w.entity,
                                     config_extra={"repro": repro}),
                            progress_path=str(progress), baselines=baselines)


@task(name="register")
def register_task(spec: Spec, prepared: Prepared, stage: str, trained: Trained, baselines: dict | None = None) -> dict:
    """Write spec, model.json, metrics and report beside the trained files in the staged directory."""
    return register(Path(stage), spec, prepared.preprocessor, trained.progress.to_dict(), trained.metrics,
                    extra_metrics=baselines)


@flow(name="conductor-run", persist_result=False, log_prints=False,
      task_runner=DaskTaskRunner(**dask_runner_kwargs(load_settings())))  # a deployment runs it as defined
@logged
def pipeline(spec: dict, run_id: str | None = None) -> dict:
    """preprocess (Dask) → train + evaluate (Ray Train) → register; returns the run summary."""
    t0 = time.perf_counter()
    spec_obj, settings = validate(spec), load_settings()
    home, run_id = settings.home, run_id or new_run_id()
    wandb_mode = tracking.resolve_mode(spec_obj.tracking.wandb.mode)
    future = preprocess_task.submit(spec_obj.data.model_dump(mode="json"), str(home))
    timings = ensure_ray(settings)  # Ray starts while Dask preprocesses
    prepared = future.result()
    timings["preprocess_s"] = prepared.seconds
    timings["preprocess_wait_s"] = time.perf_counter() - t0 - timings["ray_start_s"]
    scored = baselines_task.submit(spec_obj, prepared)  # on Dask while Ray Train trains: only the end needs them
    with new_run(home, spec_obj.name, run_id) as stage:
        try:  # a future's bound method, not the future: Prefect would wait for a future argument before the task
            trained = train_task(spec_obj, prepared, str(stage), str(home), run_id, wandb_mode, scored.result)
        except Exception:
            scored.wait(BASELINES_WAIT_S)  # let their task run end (not left Running in Prefect's API)
            raise
        t1 = time.perf_counter()
        baselines = scored.result()
        timings["baselines_s"] = time.perf_counter() - t1  # what training left to wait for
        if trained.progress.stopped == "diverged":  # the staged directory goes with the error
            raise UserError(diverged_message(trained.progress, spec_obj.train.lr))
        metrics = register_task(spec_obj, prepared, str(stage), trained, baselines)
        attach_repro(stage, home, run_id, spec_obj, prepared.preprocessor, time.perf_counter() - t0)
    prog = trained.progress
    timings.update(train_s=trained.seconds, epochs_s=sum(r.get("epoch_seconds", 0.0) for r in prog.history),
                   evaluate_s=trained.eval_seconds, flow_s=time.perf_counter() - t0)
    samples_per_s = prog.samples / prog.train_seconds if prog.train_seconds else 0.0  # rank 0's; each worker alike
    summary = {"name": spec_obj.name, "run_id": run_id, "run_dir": str(home / spec_obj.name / run_id),
               "metrics": metrics, "wandb": {"mode": trained.wandb.get("mode", wandb_mode),
                                             "run_dir": trained.wandb.get("run_dir")},
               "workers": trained.workers, "samples_per_s": samples_per_s * trained.workers,
               "preprocess": {"cached": prepared.cached, "counts": prepared.preprocessor.counts}, "timings": timings,
               "note": trained.note, "verdict": verdict(spec_obj.data.task, metrics)}
    publish_summary(summary)
    return summary


def run_pipeline(spec: Spec, run_id: str | None = None) -> dict:
    """Call the flow with a DaskTaskRunner on the configured (or an embedded) Dask cluster. A credential in
    data.source stays in this process's environment: the flow's parameter holds the source masked."""
    runner = DaskTaskRunner(**dask_runner_kwargs(load_settings()))
    with heartbeats():
        return pipeline.with_options(task_runner=runner)(spec=hide_source(spec).model_dump(mode="json"), run_id=run_id)
