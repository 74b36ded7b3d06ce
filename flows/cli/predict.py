"""`conductor predict` and `conductor dashboard`: a trained run applied to new rows; the sweep dashboard."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from .app import app, user_errors


@app.command()
@user_errors
def predict(
    run_dir: Annotated[Path, typer.Argument(help="a run directory: runs/<name>/<run-id>")],
    input_path: Annotated[str, typer.Argument(metavar="INPUT", help="raw rows: CSV/Parquet path, glob or fsspec URL")],
    out: Annotated[Path, typer.Option("--out", help="where to write predictions (.csv or .parquet)")],
    id_column: Annotated[str | None, typer.Option("--id", help="input column to carry next to each prediction")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON summary as the last stdout line")] = False,
):
    """Apply a run's saved preprocessor and model to new rows (on Dask); writes labels and probabilities or values.
    Refuses a model.pt that is not plain weights, and an --out that is INPUT or inside RUN_DIR."""
    t0 = time.perf_counter()
    from tasks.names import check_run_dir

    check_run_dir(run_dir)
    from tasks.predict import predict as run_predict

    summary = run_predict(run_dir, input_path, out, id_column)
    summary["duration_s"] = time.perf_counter() - t0
    print(f"wrote {summary['rows']} predictions to {summary['out']} in {summary['duration_s']:.1f}s",
          file=sys.stderr if as_json else sys.stdout)
    if as_json:
        print(json.dumps(summary))


@app.command()
@user_errors
def dashboard(
    storage: Annotated[str | None, typer.Option("--storage", help="Optuna storage URL; default CONDUCTOR_OPTUNA_STORAGE or sqlite:///runs/optuna.db")] = None,
    host: Annotated[str, typer.Option("--host", help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="port to serve on")] = 8080,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="no token (loopback only): every user of this machine can use it")] = False,
):
    """Serve optuna-dashboard on the sweep storage: live learning curves, importances, every trial.
    Open the printed URL: its ?token= logs the browser in (a cookie); without it every request gets 403."""
    from cluster.gate import TokenGate, is_loopback, serve
    from cluster.settings import load_settings, redact_url
    from tasks.errors import UserError
    from tasks.sweep import make_storage

    if storage:
        os.environ["CONDUCTOR_OPTUNA_STORAGE"] = storage
    url = load_settings().default_storage()
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise UserError(f"--storage: {url!r} does not exist yet; run `conductor sweep SPEC` first or pass --storage")
    if no_auth and not is_loopback(host):
        raise UserError(f"--no-auth: only with a loopback --host (127.0.0.1), not {host!r}")
    import optuna_dashboard

    app = optuna_dashboard.wsgi(make_storage(url, heartbeat=False))
    server = serve(app if no_auth else (gate := TokenGate(app)), host, port)
    where = f"http://{host}:{server.server_port}/dashboard"
    if no_auth:
        print("warning: --no-auth: no token; every user of this machine who reaches "
              f"{host}:{server.server_port} can read and change the studies", file=sys.stderr)
    print(f"optuna-dashboard on {redact_url(url)}: {where if no_auth else f'{where}?token={gate.token}'}"
          "  (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
