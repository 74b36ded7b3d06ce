"""`conductor`: one spec, one command. Every user error is one `error: ...` line and exit code 2."""
from __future__ import annotations

import functools
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    add_completion=False, no_args_is_help=True, rich_markup_mode=None,
    help="Run deep-learning experiments from one spec file: Prefect flows, Dask preprocessing, "
         "Ray Train, Optuna sweeps, W&B tracking. See experiments/ for specs.",
)
STATE = {"debug": False}


cluster_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                          help="A real local cluster on 127.0.0.1: Prefect server + worker, Ray head + node, Dask.")
app.add_typer(cluster_app, name="cluster")


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="show tracebacks of errors")] = False):
    STATE["debug"] = debug or os.environ.get("CONDUCTOR_DEBUG") == "1"
    _use_cluster_profile()


def _use_cluster_profile() -> None:
    """After `conductor cluster up`, every command talks to that cluster's Prefect API (set before prefect loads)."""
    from cluster.settings import load_settings

    settings = load_settings()
    if settings.prefect_api_url and "PREFECT_API_URL" not in os.environ:
        os.environ["PREFECT_API_URL"] = settings.prefect_api_url


def user_errors(fn):
    """Turn UserError (and unreadable input) into `error: ...` + exit 2; other failures exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from tasks.errors import UserError

        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except UserError as e:
            if STATE["debug"]:
                traceback.print_exc()
            print(f"error: {e}", file=sys.stderr)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise typer.Exit(130) from None
        except Exception as e:  # noqa: BLE001 - a failure of ours: say what it was, keep the exit code apart
            if STATE["debug"]:
                traceback.print_exc()
            cause = _root_cause(e)
            print(f"failed: {type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
                  " (--debug shows the traceback)", file=sys.stderr)
            raise typer.Exit(1) from None

    return wrapper


def _root_cause(e: BaseException) -> BaseException:
    from tasks.errors import UserError

    seen = e
    while seen.__cause__ is not None and not isinstance(seen, UserError):
        seen = seen.__cause__
    return seen


def _print_summary(summary: dict, as_json: bool, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(stderr=as_json)
    table = Table(title=f"{summary['name']} · {summary.get('run_id', '')}", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in summary["metrics"].items():
        table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    console.print(table)
    console.print(f"run directory  {summary['run_dir']}")
    wb = summary.get("wandb") or {}
    if wb.get("run_dir"):
        hint = "  (upload later: wandb sync " + wb["run_dir"] + ")" if wb.get("mode") == "offline" else ""
        console.print(f"W&B ({wb.get('mode')})  {wb['run_dir']}{hint}")
    console.print(f"took {summary['duration_s']:.1f}s")
    if as_json:
        print(json.dumps(summary, default=str), flush=True)


@app.command()
@user_errors
def run(
    spec: Annotated[Path, typer.Argument(help="experiment spec (YAML), e.g. experiments/digits-cnn.yaml")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a spec key: --set train.lr=0.01 (repeatable)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON summary as the last stdout line")] = False,
):
    """Run the pipeline: preprocess (Dask) → train (Ray Train) → evaluate → register a run directory."""
    t0 = time.perf_counter()
    from tasks.spec import load_spec

    spec_obj = load_spec(spec, set_ or [])
    from tasks.preprocess import check_source

    check_source(spec_obj.data)  # a missing file or column fails here, before any engine starts
    print(f"conductor run {spec_obj.name}: model {spec_obj.model.name} on {spec_obj.data.source}", file=sys.stderr)
    from flows.pipeline import quiet_prefect_console, run_pipeline

    if not STATE["debug"]:
        quiet_prefect_console()
    summary = run_pipeline(spec_obj)
    summary["duration_s"] = time.perf_counter() - t0
    summary["timings"]["total_s"] = summary["duration_s"]
    _print_summary(summary, as_json)


@app.command()
@user_errors
def sweep(
    spec: Annotated[Path, typer.Argument(help="experiment spec with a sweep: section")],
    trials: Annotated[int | None, typer.Option("--trials", help="trials to finish (COMPLETE or PRUNED); default sweep.trials")] = None,
    parallel: Annotated[int | None, typer.Option("--parallel", help="trials training at once on Ray; default sweep.parallel")] = None,
    study: Annotated[str | None, typer.Option("--study", help="Optuna study name; default the spec's name")] = None,
    storage: Annotated[str | None, typer.Option("--storage", help="Optuna storage URL; default CONDUCTOR_OPTUNA_STORAGE or sqlite:///runs/optuna.db")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue an existing study: failed and interrupted trials are retried")] = False,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a spec key: --set train.epochs=10 (repeatable)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON summary as the last stdout line")] = False,
):
    """Hyperparameter sweep: Optuna trials as parallel Ray Train runs, pruning, crash-safe resume."""
    t0 = time.perf_counter()
    from tasks.spec import load_spec
    from tasks.sweep_objective import check_space

    spec_obj = load_spec(spec, set_ or [])
    check_space(spec_obj)
    if trials is not None and trials < 1 or parallel is not None and parallel < 1:
        from tasks.errors import UserError

        raise UserError("--trials and --parallel must be at least 1")
    from tasks.preprocess import check_source

    check_source(spec_obj.data)
    if storage:
        os.environ["CONDUCTOR_OPTUNA_STORAGE"] = storage  # read inside the flow; never a flow parameter
    from cluster.settings import load_settings
    from tasks.sweep_objective import make_storage, redact_url

    url = load_settings().default_storage()
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    make_storage(url, heartbeat=False)  # an unreachable database fails here, before any engine starts
    print(f"conductor sweep {spec_obj.name}: {trials or spec_obj.sweep.trials} trials, "
          f"{parallel or spec_obj.sweep.parallel} at a time, storage {redact_url(url)}", file=sys.stderr)
    from flows.pipeline import quiet_prefect_console
    from flows.sweep import run_sweep

    if not STATE["debug"]:
        quiet_prefect_console()
    summary = run_sweep(spec_obj, study, trials, parallel, resume)
    summary["duration_s"] = time.perf_counter() - t0
    _print_sweep(summary, as_json)


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
        _print_summary({**summary, "run_id": Path(summary["run_dir"]).name}, as_json=False, console=console)
    else:
        console.print(f"took {summary['duration_s']:.1f}s")
    if as_json:
        print(json.dumps(summary, default=str), flush=True)


@app.command()
@user_errors
def dashboard(
    storage: Annotated[str | None, typer.Option("--storage", help="Optuna storage URL; default CONDUCTOR_OPTUNA_STORAGE or sqlite:///runs/optuna.db")] = None,
    host: Annotated[str, typer.Option("--host", help="address to bind; the dashboard has no login, so keep it on loopback")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="port to serve on")] = 8080,
):
    """Serve optuna-dashboard on the sweep storage: live learning curves, importances, every trial."""
    from cluster.settings import load_settings
    from tasks.sweep_objective import make_storage, redact_url

    if storage:
        os.environ["CONDUCTOR_OPTUNA_STORAGE"] = storage
    url = load_settings().default_storage()
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        from tasks.errors import UserError

        raise UserError(f"--storage: {url!r} does not exist yet; run `conductor sweep SPEC` first or pass --storage")
    backend = make_storage(url, heartbeat=False)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: optuna-dashboard has no authentication and will answer anyone who reaches {host}:{port}",
              file=sys.stderr)
    print(f"optuna-dashboard on {redact_url(url)}: http://{host}:{port}/dashboard  (Ctrl-C stops it)", flush=True)
    import optuna_dashboard

    optuna_dashboard.run_server(backend, host=host, port=port)


@app.command()
@user_errors
def predict(
    run_dir: Annotated[Path, typer.Argument(help="a run directory: runs/<name>/<run-id>")],
    input_path: Annotated[str, typer.Argument(metavar="INPUT", help="raw rows: CSV/Parquet path, glob or fsspec URL")],
    out: Annotated[Path, typer.Option("--out", help="where to write predictions (.csv or .parquet)")],
    id_column: Annotated[str | None, typer.Option("--id", help="input column to carry next to each prediction")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON summary as the last stdout line")] = False,
):
    """Apply a run's saved preprocessor and model to new rows (on Dask); writes labels and probabilities or values."""
    t0 = time.perf_counter()
    from tasks.predict import predict as run_predict

    summary = run_predict(run_dir, input_path, out, id_column)
    summary["duration_s"] = time.perf_counter() - t0
    print(f"wrote {summary['rows']} predictions to {summary['out']} in {summary['duration_s']:.1f}s",
          file=sys.stderr if as_json else sys.stdout)
    if as_json:
        print(json.dumps(summary))


@cluster_app.command("up")
@user_errors
def cluster_up(as_json: Annotated[bool, typer.Option("--json", help="print the profile as JSON")] = False):
    """Start every service as its own process on 127.0.0.1 and write runs/cluster/profile.json (idempotent)."""
    from cluster.local import ClusterError, LocalCluster

    try:
        profile = LocalCluster().up(log=lambda m: print(m, file=sys.stderr))
    except ClusterError as e:
        print(f"failed: {e}", file=sys.stderr)
        raise typer.Exit(1) from None
    _cluster_table()
    if as_json:
        print(json.dumps(profile))


@cluster_app.command("down")
@user_errors
def cluster_down():
    """Stop exactly the processes `cluster up` started, and remove the profile."""
    from cluster.local import LocalCluster

    LocalCluster().down()


@cluster_app.command("status")
@user_errors
def cluster_status(as_json: Annotated[bool, typer.Option("--json", help="print the services as JSON")] = False):
    """Each service, its address, and whether it answers."""
    rows = _cluster_table(to_stderr=as_json)
    if as_json:
        print(json.dumps(rows))
    if not rows or not all(r["answers"] for r in rows):
        raise typer.Exit(1)


def _cluster_table(to_stderr: bool = False) -> list[dict]:
    from rich.console import Console
    from rich.table import Table

    from cluster.local import LocalCluster

    rows = LocalCluster().status()
    console = Console(stderr=to_stderr)
    if not rows:
        console.print("no cluster is running (conductor cluster up starts one)")
        return rows
    table = Table(title="conductor cluster")
    for col in ("service", "address", "pid", "answers"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["service"], r["address"], str(r["pid"]), "yes" if r["answers"] else "NO")
    console.print(table)
    return rows


@app.command()
@user_errors
def submit(
    spec: Annotated[Path, typer.Argument(help="experiment spec (YAML)")],
    flow: Annotated[str, typer.Option("--flow", help="which flow: run (the pipeline) or sweep")] = "run",
    wait: Annotated[bool, typer.Option("--wait", help="follow the run to its end; exit non-zero if it fails")] = False,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a spec key (repeatable)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON summary as the last stdout line")] = False,
):
    """Run a flow on the cluster through Prefect: a deployment in the work pool, one flow run with the spec."""
    from cluster.settings import load_settings
    from tasks.errors import UserError
    from tasks.spec import load_spec

    spec_obj = load_spec(spec, set_ or [])
    settings = load_settings()
    if not settings.prefect_api_url:
        raise UserError("submit: no cluster to submit to; run `conductor cluster up` or set PREFECT_API_URL")
    from cluster.local import LocalCluster, answers_http

    if not answers_http(f"{settings.prefect_api_url}/health"):
        raise UserError(f"PREFECT_API_URL: the Prefect server at {settings.prefect_api_url} does not answer; "
                        "is the cluster up? (conductor cluster status)")
    from flows.pipeline import quiet_prefect_console
    from flows.submit import submit as do_submit

    if not STATE["debug"]:
        quiet_prefect_console()
    profile = LocalCluster().profile() or {"ui_url": settings.prefect_api_url.removesuffix("/api"), "work_pool": "conductor"}
    out = do_submit(spec_obj, flow, profile, wait, log=lambda m: print(m, file=sys.stderr if as_json else sys.stdout))
    if wait and out.get("summary"):
        _print_summary({**out["summary"], "duration_s": out["wait_s"]} if flow == "run" else
                       {**out["summary"], "duration_s": out["wait_s"], "run_id": out["flow_run_name"]}, as_json=as_json)
    if as_json:
        print(json.dumps(out, default=str))
    if wait and out["state"] != "COMPLETED":
        print(f"error: flow run {out['flow_run_name']} ended {out['state']}: {out.get('message', '')}", file=sys.stderr)
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
