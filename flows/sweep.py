"""The sweep flow: preprocess once (Dask), then Optuna trials as parallel Ray Train runs, then the best
trial's model evaluated on test and registered as a run directory with Optuna's plots."""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from cluster.connect import ensure_ray, quiet_env

quiet_env()

import optuna  # noqa: E402
from prefect import flow, task  # noqa: E402
from prefect_dask import DaskTaskRunner  # noqa: E402

from cluster.connect import dask_runner_kwargs  # noqa: E402
from cluster.settings import load_settings  # noqa: E402
from flows.pipeline import preprocess_task, publish_summary  # noqa: E402
from tasks import register, tracking  # noqa: E402
from tasks import sweep_objective as so  # noqa: E402
from tasks.errors import UserError  # noqa: E402
from tasks.preprocess import Prepared, n_inputs  # noqa: E402
from tasks.progress import Follower, format_row  # noqa: E402
from tasks.spec import Spec, validate  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)


def counts(study: optuna.Study) -> dict:
    trials = study.get_trials(deepcopy=False)
    by = {s: sum(t.state == s for t in trials) for s in optuna.trial.TrialState}
    return {"complete": by[optuna.trial.TrialState.COMPLETE], "pruned": by[optuna.trial.TrialState.PRUNED],
            "failed": by[optuna.trial.TrialState.FAIL], "running": by[optuna.trial.TrialState.RUNNING],
            "waiting": by[optuna.trial.TrialState.WAITING]}


def trial_dir(home: Path, name: str, study: str, number: int) -> Path:
    return home / name / "sweeps" / study / f"t{number:03d}"


def fail_stale(study: optuna.Study, wait_s: float) -> int:
    """Resume: trials left RUNNING by a dead process are failed (and re-queued by the retry callback)
    once their heartbeat is older than the grace period."""
    deadline = time.monotonic() + wait_s
    while True:
        optuna.storages.fail_stale_trials(study)
        if counts(study)["running"] == 0 or time.monotonic() > deadline:
            return counts(study)["failed"]
        time.sleep(1.0)


class Interrupts:
    """First Ctrl-C: finish the running trials, then stop (the study stays resumable). Second: abort now;
    the running trials' heartbeats stop, and `--resume` fails and retries them."""

    def __init__(self):
        self.stop = threading.Event()
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, *_):
        if self.stop.is_set():
            print("\naborted: running trials will be failed and retried by --resume", file=sys.stderr, flush=True)
            os._exit(130)
        self.stop.set()
        print("\nstopping after the running trials (Ctrl-C again to abort now)", file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


@task(name="optimize")
def optimize_task(spec: Spec, prep_dir: str, study_name: str, storage_url: str, n_trials: int, parallel: int,
                  resume: bool, wandb_mode: str) -> dict:
    """Run trials until exactly n_trials are COMPLETE or PRUNED (failed ones are retried)."""
    from tasks.train_ray import train_on_ray

    settings = load_settings()
    home = settings.home
    sweep = spec.sweep
    prepared = Prepared.load(Path(prep_dir))
    storage = so.make_storage(storage_url)
    study = optuna.create_study(study_name=study_name, storage=storage, direction=sweep.direction,
                                sampler=so.make_sampler(sweep, spec.train.seed),
                                pruner=so.make_pruner(sweep, spec.train.epochs), load_if_exists=True)
    study.set_user_attr("spec", spec.model_dump(mode="json"))
    study.set_user_attr("n_trials", n_trials)
    if resume:
        fail_stale(study, so.GRACE_S + 2 * so.HEARTBEAT_S)
    raw = spec.model_dump(mode="json")
    trial_cfg = {"storage": storage_url, "study": study_name, "metric": sweep.metric,
                 "sweep": sweep.model_dump(mode="json"), "epochs": spec.train.epochs}

    def objective(trial: optuna.Trial) -> float:
        params = so.suggest(trial, sweep.space)
        spec_t = so.trial_spec(raw, params)
        name = f"{study_name}-t{trial.number}"
        progress = home / ".progress" / f"{name}.jsonl"
        render = lambda rec: format_row(f"[t{trial.number}]", rec["row"], rec["epochs"])  # noqa: E731
        with Follower(progress, render):
            trained = train_on_ray(
                spec_t, prepared, trial_dir(home, spec.name, study_name, trial.number), home, run_name=name,
                wandb_mode=wandb_mode, group=study_name, share=parallel, progress_path=str(progress), evaluate=False,
                trial={**trial_cfg, "trial_id": trial._trial_id, "params": params})
        prog = trained.progress
        trial.set_user_attr("epochs", prog.epoch)
        trial.set_user_attr("best_epoch", prog.best_epoch)
        trial.set_user_attr("wandb_run_dir", trained.wandb.get("run_dir"))
        if prog.stopped == "pruned":
            print(f"[t{trial.number}] pruned after {prog.epoch} epochs", file=sys.stderr, flush=True)
            raise optuna.TrialPruned()
        best = next(r for r in prog.history if r["epoch"] == prog.best_epoch)
        value = best[sweep.metric]
        print(f"[t{trial.number}] {sweep.metric} {value:.4f}  {params}", file=sys.stderr, flush=True)
        return value

    stalled = 0
    with Interrupts() as interrupts:
        stop_when_asked = lambda st, _t: st.stop() if interrupts.stop.is_set() else None  # noqa: E731
        while not interrupts.stop.is_set():
            before = counts(study)
            left = n_trials - before["complete"] - before["pruned"]
            if left <= 0:
                break
            study.optimize(objective, n_trials=left, n_jobs=min(parallel, left), catch=(Exception,),
                           callbacks=[stop_when_asked], gc_after_trial=False)
            after = counts(study)
            stalled = stalled + 1 if after["complete"] + after["pruned"] == before["complete"] + before["pruned"] else 0
            if stalled >= 2:
                last = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.FAIL]
                reason = last[-1].system_attrs.get("fail_reason", "see the logs") if last else "unknown"
                raise RuntimeError(f"every trial fails; the last one: {reason}")
    return {"counts": counts(study), "interrupted": interrupts.stop.is_set()}


@task(name="register-best")
def register_best_task(spec: Spec, prep_dir: str, study_name: str, storage_url: str, run_id: str,
                       wandb_mode: str) -> dict:
    """Evaluate the best trial's weights on the test split and register them as a run directory."""
    import torch

    from models import build_model, describe
    from tasks.evaluate import evaluate
    from tasks.sweep_report import study_plots
    from tasks.train_ray import local_batches

    settings = load_settings()
    home = settings.home
    study = optuna.load_study(study_name=study_name, storage=so.make_storage(storage_url, heartbeat=False))
    best = study.best_trial
    spec_t = so.trial_spec(spec.model_dump(mode="json"), best.params)
    prepared = Prepared.load(Path(prep_dir))
    state = prepared.state
    src = trial_dir(home, spec.name, study_name, best.number)
    model = build_model(spec_t.model.name, state["input_shape"], state["output_dim"], state["task"], spec_t.model.params)
    model.load_state_dict(torch.load(src / "model.pt", weights_only=True))
    progress = json.loads((src / "progress.json").read_text())
    stage = register.stage_dir(home, spec.name, run_id)
    stage.mkdir(parents=True)
    try:
        result = evaluate(model, local_batches(prepared.path("test"), n_inputs(state), state["task"]),
                          state, progress["history"], stage, seed=spec_t.train.seed)
        torch.save(model.state_dict(), stage / "model.pt")
        plots = study_plots(study, stage / "sweep")
        c = counts(study)
        info = {"study": study_name, "storage": so.redact_url(storage_url),
                "best": {"trial": best.number, "params": best.params, "value": best.value},
                "trials": {k: c[k] for k in ("complete", "pruned", "failed")}}
        (stage / "sweep.json").write_text(json.dumps(info, indent=2))
        meta = describe(model, spec_t.model.name) | {"features": state["features"], "target": state["target"]}
        metrics = register.final_metrics(result["metrics"], progress["history"], progress["best_epoch"],
                                         progress["stopped"])
        metrics[f"best/{spec.sweep.metric}"] = best.value
        register.write_run(stage, spec_t, Path(prep_dir), meta, metrics, progress["history"],
                           extra={"sweep": plots["html"]})
        run = tracking.start(spec.tracking.wandb.project, wandb_mode, home, name=f"{study_name}-summary",
                             group=study_name, job_type="sweep-summary",
                             config={"best_params": best.params, "study": study_name, "spec": spec.model_dump(mode="json")},
                             entity=spec.tracking.wandb.entity)
        wb = {"mode": wandb_mode, "run_dir": tracking.run_dir(run)}
        if run is not None:
            import wandb

            run.summary.update({**metrics, "best_value": best.value, "best_trial": best.number,
                                **{f"trials/{k}": v for k, v in info["trials"].items()}})
            run.log({f"sweep/{Path(p).stem}": wandb.Image(str(stage / p)) for p in plots["png"]})
            run.finish()
        run_dir = register.finalize(stage)
    except BaseException:
        register.discard(stage, home)
        raise
    return {"run_dir": str(run_dir), "metrics": metrics, "wandb": wb, **info}


@flow(name="conductor-sweep", persist_result=False, log_prints=False,
      task_runner=DaskTaskRunner(**dask_runner_kwargs(load_settings())))
def sweep_flow(spec: dict, study: str | None = None, trials: int | None = None, parallel: int | None = None,
               resume: bool = False) -> dict:
    """preprocess once (Dask) → trials on Ray (Optuna) → best model on test → registered run directory."""
    t0 = time.perf_counter()
    spec_obj = validate(spec)
    so.check_space(spec_obj)
    settings = load_settings()
    storage_url = settings.default_storage()  # from the environment or profile: never a flow parameter
    study_name = study or spec_obj.name
    n_trials = trials or spec_obj.sweep.trials
    parallel = parallel or spec_obj.sweep.parallel
    existing = _existing_trials(storage_url, study_name)
    if existing and not resume:
        raise UserError(f"--study: study {study_name!r} already has {existing} trials in {so.redact_url(storage_url)}; "
                        "pass --resume to continue it or --study NAME to start another")
    wandb_mode = tracking.resolve_mode(spec_obj.tracking.wandb.mode)
    future = preprocess_task.submit(spec_obj.data.model_dump(mode="json"), str(settings.home))
    ensure_ray(settings)
    prep = future.result()
    parallel = _fit_parallel(parallel, spec_obj)
    outcome = optimize_task(spec_obj, prep["dir"], study_name, storage_url, n_trials, parallel, resume, wandb_mode)
    summary = {"name": spec_obj.name, "study": study_name, "storage": so.redact_url(storage_url),
               "parallel": parallel, "interrupted": outcome["interrupted"]}
    c = outcome["counts"]
    if c["complete"] == 0:
        summary.update(run_dir=None, metrics={}, wandb={"mode": wandb_mode, "run_dir": None}, best=None,
                       trials={k: c[k] for k in ("complete", "pruned", "failed")})
    else:
        summary.update(register_best_task(spec_obj, prep["dir"], study_name, storage_url, register.new_run_id(),
                                          wandb_mode))
    summary["flow_s"] = time.perf_counter() - t0
    publish_summary(summary)
    return summary


def _existing_trials(storage_url: str, study_name: str) -> int:
    storage = so.make_storage(storage_url, heartbeat=False)
    try:
        return len(optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False))
    except KeyError:
        return 0


def _fit_parallel(parallel: int, spec: Spec) -> int:
    """At least a quarter CPU per worker: fewer trials side by side when the cluster is small, said aloud."""
    from cluster.connect import ray_resources
    from tasks.train_ray import MIN_CPU_PER_WORKER

    cpus, _ = ray_resources()
    budget = max(cpus - (1 if cpus >= 2 else 0), MIN_CPU_PER_WORKER)
    fits = max(1, int(budget / MIN_CPU_PER_WORKER + 1e-9))  # single-worker trials that fit at once
    if parallel > fits:
        print(f"note: sweep.parallel {parallel} trials do not fit on {cpus:g} CPUs; running {fits} at a time",
              file=sys.stderr)
        return fits
    return parallel


def run_sweep(spec: Spec, study: str | None, trials: int | None, parallel: int | None, resume: bool) -> dict:
    runner = DaskTaskRunner(**dask_runner_kwargs(load_settings()))
    return sweep_flow.with_options(task_runner=runner)(spec=spec.model_dump(mode="json"), study=study,
                                                       trials=trials, parallel=parallel, resume=resume)
