"""`conductor run` and `conductor sweep`: a spec through the pipeline flow, or through a sweep."""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from .app import app, print_summary, quiet_engines, user_errors


def start_engines(then=None, preload: tuple[str, ...] = ()):
    """Prefect's API and Ray side by side (and `then`, e.g. a sweep's workers, once Ray is up), the flow's
    modules imported meanwhile, with what the first flow call imports (Prefect's flow engine ~0.25 s, and FastAPI's
    encoders for its parameters ~0.2 s)."""
    from cluster.settings import load_settings
    from flows.engines import EarlyStart

    return EarlyStart(load_settings(), then, (*preload, "prefect.flow_engine", "fastapi.encoders"))


def prestart_ray_train(spec=None, cluster: bool = True) -> None:
    """As a run connects to Ray: the run's Ray Train workers, in their placement group, importing torch while
    this process sets up its flow (tasks/train/early.py); on a running cluster, first, worker processes for
    them and the synchronization actor (cluster/connect.py prestart_ray_workers)."""
    from cluster.connect import prestart_ray_workers, ray_resources
    from flows.engines import wait_imported

    if cluster:
        prestart_ray_workers(3)
    if spec is not None and wait_imported("tasks.train.ray_train"):  # its imports are start()'s and plan's
        from tasks.errors import UserError
        from tasks.train.early import start
        from tasks.train.plan import plan_workers

        try:
            plan = plan_workers(spec.train.workers, spec.train.use_gpu, *ray_resources())
        except UserError:  # said where the run plans its workers (tasks/train/ray_train.py)
            return
        start(plan.workers, plan.cpu, plan.gpu)


def probe_services(settings=None) -> None:
    """An unreachable Prefect API, Dask scheduler or Ray head fails here in a second, naming its variable."""
    from cluster.connect import object_store_bytes
    from cluster.probe import probe
    from cluster.settings import home, load_settings
    from tasks.data.precheck import cache_limit

    writable_home(settings.home if settings else home())
    cache_limit()  # CONDUCTOR_CACHE_MAX_GB that is no number: refused now, not after preprocessing
    object_store_bytes()  # likewise CONDUCTOR_OBJECT_STORE_MB, before Ray starts
    probe(settings or load_settings())


def writable_home(home: Path) -> None:
    """CONDUCTOR_HOME must take files before anything starts (not after training, when the run registers)."""
    import tempfile

    from tasks.errors import UserError

    try:
        home.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=home).close()
    except OSError as e:
        raise UserError(f"CONDUCTOR_HOME: cannot write under {home} ({e.strerror or type(e).__name__}); "
                        "point it at a writable directory") from None


def open_storage(url: str, key: str) -> None:
    """An unreachable or unwritable Optuna storage fails here, before any engine starts, naming where the
    URL came from (the option, the variable, or the default under CONDUCTOR_HOME)."""
    from tasks.errors import UserError
    from tasks.sweep import make_storage

    try:
        if url.startswith("sqlite:///"):
            folder = Path(url.removeprefix("sqlite:///")).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UserError(f"--storage: cannot create {folder} for the SQLite file ({e.strerror})") from None
        make_storage(url, heartbeat=False)
    except UserError as e:
        if key in ("", "--storage"):
            raise
        raise UserError(str(e).replace("--storage:", f"{key}:", 1)) from None


def clean_leftovers() -> None:
    """A killed run's staged directory and Ray Train storage go before the next command starts."""
    from cluster.settings import home
    from tasks.staged import clean_leftovers as clean

    if removed := clean(home()):
        print(f"note: removed {len(removed)} leftover(s) of killed runs: {', '.join(p.name for p in removed[:3])}"
              f"{' ...' if len(removed) > 3 else ''}", file=sys.stderr)


def print_nothing(*_) -> None:
    pass


@app.command()
@user_errors
def run(
    spec: Annotated[Path, typer.Argument(help="experiment spec (YAML), e.g. experiments/digits-cnn.yaml")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a spec key: --set train.lr=0.01 (repeatable)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON summary as the last stdout line")] = False,
):
    """Run the pipeline: preprocess (Dask) → train (Ray Train) → evaluate → register a run directory."""
    t0 = time.perf_counter()
    from tasks.spec_file import load_spec

    summary = run_spec(load_spec(spec, set_ or []), spec, t0)
    print_summary(summary, as_json, emit_json=False)
    finish(summary, as_json)


def run_spec(spec_obj, spec_path: Path, t0: float | None = None, rerun_of: str | None = None) -> dict:
    """What `conductor run` does with a loaded spec (and `conductor rerun` with a run's spec.yaml): the checks,
    the engines, the pipeline flow and its repro record; returns the summary."""
    t0 = time.perf_counter() if t0 is None else t0
    from tasks.data.sources import hide_source

    spec_obj = hide_source(spec_obj)  # a credential of data.source: environment only
    from cluster.settings import home
    from tasks.data import check_source

    check_source(spec_obj.data, home())  # a missing file or column fails here, before any engine starts
    probe_services()
    clean_leftovers()
    print(f"conductor run {spec_obj.name}: model {spec_obj.model.name} on {spec_obj.data.source}", file=sys.stderr)
    from cluster.settings import load_settings

    # the baselines are scored on Dask: in this process when Dask is the command's own (import scikit-learn while
    # ray.init runs), in a cluster's worker otherwise
    embedded_dask = () if load_settings().dask_address else ("sklearn.linear_model",)
    early = start_engines(lambda: prestart_ray_train(spec_obj, cluster=bool(load_settings().ray_address)),
                          preload=("tasks.train.ray_train", "flows.pipeline", *embedded_dask))
    with repro_record(spec_path, spec_obj, t0, rerun_of) as run_id:  # after the engines set off: it imports torch
        from flows.pipeline import run_pipeline

        quiet_engines()
        started = early.wait()
        summary = run_pipeline(spec_obj, run_id)
    summary["duration_s"] = time.perf_counter() - t0
    summary["timings"].update(started)
    summary["timings"]["total_s"] = summary["duration_s"]
    return summary


@contextlib.contextmanager
def repro_record(spec_path: Path, spec_obj, t0: float, rerun_of: str | None = None):
    """Yield a new run id whose reproducibility record (commits, patch, versions, command line, masked) waits
    under CONDUCTOR_HOME/.repro for the flow that registers the run; gone afterwards, whatever happened.
    `t0`: the command's start (perf_counter), from which the run's duration_s counts."""
    from cluster.settings import home
    from tasks.runs import new_run_id
    from tasks.runs.repro import build_record, discard_pending, save_pending

    run_id = new_run_id()
    started = time.time() - (time.perf_counter() - t0)
    save_pending(home(), run_id, *build_record(spec_path, spec_obj, rerun_of=rerun_of, started=started))
    try:
        yield run_id
    finally:
        discard_pending(home(), run_id)


@app.command()
@user_errors
def sweep(
    spec: Annotated[Path, typer.Argument(help="experiment spec with a sweep: section")],
    trials: Annotated[int | None, typer.Option("--trials", help="trials to finish (COMPLETE or PRUNED); default sweep.trials")] = None,
    parallel: Annotated[int | None, typer.Option("--parallel", help="trials training at once on Ray; default sweep.parallel")] = None,
    study: Annotated[str | None, typer.Option("--study", help="Optuna study name; default the spec's name")] = None,
    storage: Annotated[str | None, typer.Option("--storage", help="Optuna storage URL; default CONDUCTOR_OPTUNA_STORAGE or sqlite:///runs/optuna.db")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue an existing study: failed and interrupted trials are retried")] = False,
    force: Annotated[bool, typer.Option("--force", help="with --resume: continue although the spec differs from the study's")] = False,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a spec key: --set train.epochs=10 (repeatable)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON summary as the last stdout line")] = False,
):
    """Hyperparameter sweep: Optuna trials on warm Ray workers (Ray Train runs for multi-worker trials), pruning, crash-safe resume."""
    t0 = time.perf_counter()
    from tasks.data.sources import hide_source
    from tasks.errors import UserError
    from tasks.names import check_name
    from tasks.spec_file import load_spec
    from tasks.sweep import check_space

    spec_obj = hide_source(load_spec(spec, set_ or []))  # a credential of data.source: environment only
    check_space(spec_obj)
    if trials is not None and trials < 1 or parallel is not None and parallel < 1:
        raise UserError("--trials and --parallel must be at least 1")
    check_name(study, "--study") if study is not None else None
    from cluster.settings import home, load_settings, redact_url
    from tasks.data import check_source

    check_source(spec_obj.data, home())
    if storage:
        os.environ["CONDUCTOR_OPTUNA_STORAGE"] = storage  # read inside the flow; never a flow parameter
    from tasks.sweep import existing_trials
    from tasks.sweep.pool import prestart
    from tasks.sweep.storage import spec_changes
    from tasks.tracking import resolve_mode

    probe_services()
    settings = load_settings()
    clean_leftovers()
    url = settings.default_storage()
    open_storage(url, "--storage" if storage else "CONDUCTOR_OPTUNA_STORAGE" if settings.optuna_storage else "")
    if not resume and (n := existing_trials(url, study or spec_obj.name)):
        raise UserError(f"--study: study {study or spec_obj.name!r} already has {n} trials in {redact_url(url)}; "
                        "pass --resume to continue it or --study NAME to start another")
    if resume and not force and (changed := spec_changes(url, study or spec_obj.name, spec_obj.model_dump(mode="json"))):
        raise UserError(f"--resume: the spec differs from the one study {study or spec_obj.name!r} ran with, in "
                        f"{', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}; pass --force to continue "
                        "with this spec, or --study NAME to start another")
    print(f"conductor sweep {spec_obj.name}: {trials or spec_obj.sweep.trials} trials, "
          f"{parallel or spec_obj.sweep.parallel} at a time, storage {redact_url(url)}", file=sys.stderr)
    early = start_engines(lambda: prestart(spec_obj, study or spec_obj.name, parallel or spec_obj.sweep.parallel,
                                           settings.home, resolve_mode(spec_obj.tracking.wandb.mode, warn=print_nothing)),
                          preload=("flows.sweep",))
    with repro_record(spec, spec_obj, t0) as run_id:  # the id of the best trial's run directory
        from flows.sweep import run_sweep
        quiet_engines()
        started = early.wait()
        summary = run_sweep(spec_obj, study, trials, parallel, resume, run_id)
    summary.update(duration_s=time.perf_counter() - t0, timings={**summary.get("timings", {}), **started})
    _print_sweep(summary, as_json)
    finish(summary, as_json)


def finish(summary: dict, as_json: bool) -> None:
    """After the printed summary: the embedded Ray stops (now, not in Ray's exit hook, which first sleeps 0.5 s
    for logs a finished command no longer has; a cluster's Ray is only disconnected from), then --json prints
    the summary as the last line of stdout. Until Ray is gone its driver may print on stdout what the raylet
    pushes to it ("(raylet) WARNING: 12 PYTHON worker processes have been started ..."), which came after the
    summary and broke every reader of the last line."""
    from cluster.connect import shutdown_ray

    shutdown_ray()
    if as_json:
        print(json.dumps(summary, default=str), flush=True)


def _print_sweep(summary: dict, as_json: bool) -> None:
    from rich.console import Console

    console = Console(stderr=as_json)
    t = summary["trials"]
    console.print(f"study {summary['study']} ({summary['storage']}): {t['complete']} complete, "
                  f"{t['pruned']} pruned, {t['failed']} failed")
    if summary.get("interrupted"):
        console.print("stopped early: continue with --resume")
    if summary.get("best"):
        b = summary["best"]
        console.print(f"best trial {b['trial']}: {b['value']:.4f}  {b['params']}")
        print_summary({**summary, "run_id": Path(summary["run_dir"]).name}, as_json=False, console=console)
    else:
        console.print(f"took {summary['duration_s']:.1f}s")
