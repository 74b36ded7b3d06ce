"""`conductor serve`: a run's model behind Ray Serve (HTTP JSON), and `serve status` / `serve down`.

`conductor serve RUN_DIR ...` is short for `conductor serve run RUN_DIR ...`.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from .app import app, user_errors


class _DefaultRun(TyperGroup):
    """Route `serve RUN_DIR` / `serve --study X` to the `run` command; `status`, `down`, `--help` stay."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


serve_app = typer.Typer(cls=_DefaultRun, no_args_is_help=True, rich_markup_mode=None, add_completion=False,
                        help="Online inference: a run directory's model behind Ray Serve (HTTP JSON, token auth).")
app.add_typer(serve_app, name="serve")


@serve_app.command("run")
@user_errors
def serve_run(
    run_dir: Annotated[Path | None, typer.Argument(help="a run directory: runs/<name>/<run-id>")] = None,
    study: Annotated[str | None, typer.Option("--study", help="serve the run registered for this sweep study's best trial")] = None,
    storage: Annotated[str | None, typer.Option("--storage", help="with --study: only runs of the study in this storage")] = None,
    host: Annotated[str, typer.Option("--host", help="address to bind; anything but loopback needs the token")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="HTTP port")] = 8000,
    replicas: Annotated[int, typer.Option("--replicas", help="model replicas (each a fraction of a CPU)")] = 1,
    autoscale_max: Annotated[int | None, typer.Option("--autoscale-max", help="autoscale between 1 and this many replicas")] = None,
    max_batch_size: Annotated[int, typer.Option("--max-batch-size", help="requests scored together at most")] = 32,
    batch_wait_ms: Annotated[float, typer.Option("--batch-wait-ms", help="how long a batch waits to fill")] = 1.0,
    max_body_mb: Annotated[float, typer.Option("--max-body-mb", help="largest request body accepted (413 above)")] = 10.0,
    max_rows: Annotated[int, typer.Option("--max-rows", help="most rows in one request (413 above)")] = 10_000,
    cpus_per_replica: Annotated[float, typer.Option("--cpus-per-replica", help="Ray CPUs each replica reserves")] = 0.25,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="no token (only with a loopback --host)")] = False,
    detach: Annotated[bool, typer.Option("--detach", help="leave it running on the cluster's Ray (`cluster up`)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the state as JSON once serving")] = False,
):
    """Serve a run: POST /predict (raw rows as JSON), GET /health, GET /schema, OpenAPI at /docs."""
    from tasks.names import check_name, check_run_dir
    from tasks.serve import ServeOptions, check_options, resolve_run, start, wait_foreground

    if study is not None:
        check_name(study, "--study")
    if run_dir is not None:
        check_run_dir(run_dir)
    opts = ServeOptions(host=host, port=port, replicas=replicas, autoscale_max=autoscale_max,
                        max_batch_size=max_batch_size, batch_wait_ms=batch_wait_ms, max_body_mb=max_body_mb,
                        max_rows=max_rows, cpus_per_replica=cpus_per_replica, no_auth=no_auth, detach=detach)
    check_options(opts)
    target = resolve_run(run_dir, study, storage)
    state = start(target, opts, log=lambda m: print(m, file=sys.stderr, flush=True))
    _announce(state, as_json)
    if not detach:
        wait_foreground()
        print("stopped", file=sys.stderr)


def _announce(state: dict, as_json: bool) -> None:
    from tasks.serve.config import token_path

    out = sys.stderr if as_json else sys.stdout
    print(f"serving {state['run_dir']} ({state['task']}) at {state['url']}  docs: {state['url']}/docs", file=out)
    if state["auth"]:
        print(f"token: {token_path().read_text().strip()}  (also in {token_path()}, mode 0600)", file=out)
        print(f"try:   curl -H \"Authorization: Bearer $(cat {token_path()})\" -H 'Content-Type: application/json' "
              f"-d '[{{...}}]' {state['url']}/predict", file=out)
    else:
        print("no token (--no-auth): anyone on this machine can call it", file=out)
    print("Ctrl-C stops it" if state["mode"] == "foreground" else "detached: `conductor serve down` stops it",
          file=out, flush=True)
    if as_json:
        print(json.dumps(state), flush=True)


@serve_app.command("status")
@user_errors
def serve_status(as_json: Annotated[bool, typer.Option("--json", help="print the state as JSON")] = False):
    """What is served: URL, run, mode, Serve's applications and replicas, whether it answers."""
    from tasks.serve import status

    state = status()
    if state is None:
        print("nothing is being served (conductor serve RUN_DIR starts it)", file=sys.stderr if as_json else sys.stdout)
        if as_json:
            print(json.dumps(None))
        raise typer.Exit(1)
    if as_json:
        print(json.dumps(state))
    else:
        print(f"{state['url']}  {state['mode']}  run {state['run_dir']}  "
              f"answers: {'yes' if state['answers'] else 'NO'}{'  (stale: its command is gone)' if state.get('stale') else ''}")
        for name, app in (state.get("apps") or {}).items():
            for dep, replicas in app["deployments"].items():
                print(f"  app {name}: {app['status']}  {dep}: {replicas}")
    if not state["answers"]:
        raise typer.Exit(1)


@serve_app.command("down")
@user_errors
def serve_down():
    """Stop serving: remove a detached app from the cluster's Ray, or end the foreground command."""
    from tasks.serve import down

    down(log=lambda m: print(m, file=sys.stderr))

