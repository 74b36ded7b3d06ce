"""The sweep flow: preprocess once (Dask), then Optuna trials on Ray, then the best trial's model
evaluated on test and registered as a run directory with Optuna's plots."""
from __future__ import annotations

import time

from cluster.connect import dask_runner_kwargs, ensure_ray, quiet_env, ray_resources
from tasks.lazy import defer

quiet_env()  # before prefect reads its settings
defer("redis")  # before Optuna (tasks/lazy.py)

import optuna  # noqa: E402
from prefect import flow, task  # noqa: E402
from prefect_dask import DaskTaskRunner  # noqa: E402

from cluster.settings import load_settings, redact_url  # noqa: E402
from flows.beats import heartbeats  # noqa: E402
from flows.common import baselines_task, logged, preprocess_task, publish_summary  # noqa: E402
from tasks import tracking  # noqa: E402
from tasks.data import Prepared  # noqa: E402
from tasks.data.sources import hide_source  # noqa: E402
from tasks.errors import UserError  # noqa: E402
from tasks.progress import say  # noqa: E402
from tasks.spec import Spec, validate  # noqa: E402
from tasks.sweep import check_space, existing_trials  # noqa: E402
from tasks.sweep.pool import close_kept, is_warm  # noqa: E402
from tasks.train import fit_parallel  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)


@task(name="optimize")
def optimize_task(spec: Spec, prepared: Prepared, study: str, storage_url: str, n_trials: int, parallel: int,
                  resume: bool, wandb_mode: str) -> dict:
    """Run trials until exactly n_trials are COMPLETE or PRUNED (failed ones are retried)."""
    from tasks.sweep.objective import SweepContext
    from tasks.sweep.optimize import optimize

    ctx = SweepContext(spec, prepared, study, storage_url, load_settings().home, parallel,
                       wandb_mode)
    return optimize(ctx, n_trials, resume, keep_pool=True)  # closed by the flow after the registration


@task(name="register-best")
def register_best_task(spec: Spec, prepared: Prepared, study: str, storage_url: str, wandb_mode: str,
                       run_id: str | None = None, baselines: dict | None = None) -> dict:
    """Evaluate the best trial's weights on the test split and register them as a run directory; `baselines`:
    their test metrics when scored on Dask meanwhile (a cluster's Dask, or Ray Train trials), else None: the warm
    worker that draws the study's plots scores them (tasks/sweep/pool.py)."""
    from tasks.sweep.pool import kept

    home = load_settings().home
    if (pool := kept()) is not None:  # a warm worker has torch loaded: it registers, this process never imports it
        import ray

        try:
            return pool.register_best(spec, prepared, study, storage_url, str(home), wandb_mode, run_id,
                                      baselines=baselines)
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError):
            pass  # the worker died: the driver registers it
    from tasks.sweep.best import register_best

    return register_best(spec, prepared, study, storage_url, home, wandb_mode, run_id, baselines=baselines)


@flow(name="conductor-sweep", persist_result=False, log_prints=False,
      task_runner=DaskTaskRunner(**dask_runner_kwargs(load_settings())))
@logged
def sweep_flow(spec: dict, study: str | None = None, trials: int | None = None, parallel: int | None = None,
               resume: bool = False, run_id: str | None = None) -> dict:
    """preprocess once (Dask) → trials on Ray (Optuna) → best model on test → registered run directory."""
    t0 = time.perf_counter()
    spec_obj = validate(spec)
    check_space(spec_obj)
    settings = load_settings()
    storage_url = settings.default_storage()  # from the environment or profile: never a flow parameter
    study_name, n_trials = study or spec_obj.name, trials or spec_obj.sweep.trials
    existing = existing_trials(storage_url, study_name)
    if existing and not resume:
        raise UserError(f"--study: study {study_name!r} already has {existing} trials in {redact_url(storage_url)}; "
                        "pass --resume to continue it or --study NAME to start another")
    wandb_mode = tracking.resolve_mode(spec_obj.tracking.wandb.mode)
    future = preprocess_task.submit(spec_obj.data.model_dump(mode="json"), str(settings.home))
    timings = ensure_ray(settings)  # Ray starts while Dask preprocesses
    prepared = future.result()
    timings["preprocess_s"] = prepared.seconds
    parallel, note = fit_parallel(parallel or spec_obj.sweep.parallel, ray_resources()[0])
    if note:
        say(f"note: {note}")
    # the baselines: on a cluster's Dask while the trials run (another process, scikit-learn loaded there; it also
    # keeps that Dask worker warm for the next command's preprocessing, ~1.3 s when it is not). On the embedded
    # Dask they would run in this process (~1.9 s of CPU, scikit-learn's import, while the warm workers start):
    # there a sweep on warm workers has them scored by the worker that draws Optuna's plots (scikit-learn is
    # loaded there for the importance plot), beside the best trial's evaluation.
    drawer_scores = is_warm(spec_obj, parallel)[0] and not settings.dask_address
    baselines = None if drawer_scores else baselines_task.submit(spec_obj, prepared)
    try:
        outcome = optimize_task(spec_obj, prepared, study_name, storage_url, n_trials, parallel, resume, wandb_mode)
        c, timings = outcome["counts"], {**timings, **outcome["timings"]}
        summary = {"name": spec_obj.name, "study": study_name, "storage": redact_url(storage_url),
                   "parallel": parallel, "interrupted": outcome["interrupted"], "run_dir": None, "metrics": {},
                   "best": None, "wandb": {"mode": wandb_mode, "run_dir": None},
                   "trials": {k: c[k] for k in ("complete", "pruned", "failed")}}
        if c["complete"]:
            t1 = time.perf_counter()
            summary.update(register_best_task(spec_obj, prepared, study_name, storage_url, wandb_mode, run_id,
                                              baselines.result() if baselines is not None else None))
            timings["register_s"] = time.perf_counter() - t1
    finally:
        closed = close_kept()  # the warm workers give their CPUs back, whatever happened
    if timings.get("warm"):
        timings["pool_close_s"] = closed
    summary["flow_s"] = timings["flow_s"] = time.perf_counter() - t0
    summary["timings"] = timings
    publish_summary(summary)
    return summary


def run_sweep(spec: Spec, study: str | None, trials: int | None, parallel: int | None, resume: bool,
              run_id: str | None = None) -> dict:
    """The sweep flow on the configured Dask cluster; `run_id` names the best trial's run directory (and
    its repro record, left by the CLI under CONDUCTOR_HOME/.repro)."""
    runner = DaskTaskRunner(**dask_runner_kwargs(load_settings()))
    with heartbeats():
        return sweep_flow.with_options(task_runner=runner)(spec=hide_source(spec).model_dump(mode="json"), study=study,
                                                           trials=trials, parallel=parallel, resume=resume,
                                                           run_id=run_id)
