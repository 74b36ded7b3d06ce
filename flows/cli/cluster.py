"""`conductor cluster up|down|status` and `conductor submit`: a local cluster, and flows run on it."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from .app import app, print_summary, quiet_engines, user_errors

cluster_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                          help="A real local cluster on 127.0.0.1: Prefect server + worker, Ray head + node, Dask.")
app.add_typer(cluster_app, name="cluster")


@cluster_app.command("up")
@user_errors
def cluster_up(as_json: Annotated[bool, typer.Option("--json", help="print the profile as JSON")] = False):
    """Start every service as its own process on 127.0.0.1 and write runs/cluster/profile.json (idempotent)."""
    from cluster.local import LocalCluster
    from cluster.processes import ClusterError
    from cluster.settings import redact_url

    try:  # the profile `up` returns is masked; a log tail may carry a database URL, so mask it too
        profile = LocalCluster().up(log=lambda m: print(m, file=sys.stderr))
    except ClusterError as e:
        print(f"failed: {redact_url(str(e))}", file=sys.stderr)
        raise typer.Exit(1) from None
    _cluster_table()
    if as_json:
        print(json.dumps(profile))


@cluster_app.command("down")
@user_errors
def cluster_down():
    """Stop exactly the processes `cluster up` started, and remove the profile and its secrets (even corrupt)."""
    from cluster.local import LocalCluster

    LocalCluster().down()


@cluster_app.command("status")
@user_errors
def cluster_status(as_json: Annotated[bool, typer.Option("--json", help="print the services as JSON")] = False):
    """Each service, its address, and whether it answers; the Dask dashboard's URL and how to open it."""
    rows = _cluster_table(to_stderr=as_json)
    if as_json:
        print(json.dumps(rows))
    if not rows or not all(r["answers"] for r in rows):
        raise typer.Exit(1)


def _cluster_table(to_stderr: bool = False) -> list[dict]:
    from rich.console import Console
    from rich.table import Table

    from cluster.dashboard import dashboard_help
    from cluster.local import LocalCluster

    cluster = LocalCluster()
    rows = cluster.status()
    console = Console(stderr=to_stderr)
    if not rows:
        console.print("no cluster is running (conductor cluster up starts one)")
        return rows
    table = Table(title="conductor cluster")
    for col in ("service", "address", "pid", "answers"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["service"], r["address"], str(r["pid"]), "yes" if r["answers"] else "NO")
    console.print(table)
    for line in dashboard_help(cluster.profile()):  # whole lines: a path cut in two cannot be pasted
        console.print(line, soft_wrap=True, markup=False, highlight=False)
    from tasks.sweep.warm import recorded

    if pids := recorded():
        console.print(f"warm trial workers: {len(pids)} (Ray actors, pids {', '.join(map(str, pids))}), kept for the "
                      "next sweep with torch loaded; idle ones hold no CPU; `conductor cluster down` stops them")
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
    from cluster.settings import load_settings, redact_url
    from tasks.errors import UserError
    from tasks.spec_file import load_spec

    spec_obj = load_spec(spec, set_ or [])
    from tasks.data.sources import refuse_credentials

    refuse_credentials(spec_obj.data.source)  # before the data is read with it
    if flow == "sweep":
        from tasks.sweep import check_space

        check_space(spec_obj)
    from tasks.data import check_source

    check_source(spec_obj.data)  # the same checks as run and sweep, before the flow run is created
    settings = load_settings()
    if not settings.prefect_api_url:
        raise UserError("submit: no cluster to submit to; run `conductor cluster up` or set PREFECT_API_URL")
    from cluster.local import LocalCluster
    from cluster.processes import answers_http

    if not answers_http(f"{settings.prefect_api_url}/health"):
        raise UserError(f"PREFECT_API_URL: the Prefect server at {redact_url(settings.prefect_api_url)} does not answer; "
                        "is the cluster up? (conductor cluster status)")
    from flows.submit import submit as do_submit

    quiet_engines()
    profile = LocalCluster().profile() or {"ui_url": redact_url(settings.prefect_api_url).removesuffix("/api"), "work_pool": "conductor"}
    out = do_submit(spec_obj, flow, profile, wait, log=lambda m: print(m, file=sys.stderr if as_json else sys.stdout))
    if wait and out.get("summary"):
        print_summary({**out["summary"], "duration_s": out["wait_s"]} if flow == "run" else
                       {**out["summary"], "duration_s": out["wait_s"], "run_id": out["flow_run_name"]}, as_json=as_json)
    if as_json:
        print(json.dumps(out, default=str))
    if wait and out["state"] != "COMPLETED":
        print(f"error: flow run {out['flow_run_name']} ended {out['state']}: {out.get('message', '')}", file=sys.stderr)
        raise typer.Exit(1)
