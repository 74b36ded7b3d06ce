"""The `conductor` Typer app and what every command shares: one `error: ...` line and exit code 2 for a
user's mistake, `failed: ...` and exit 1 for ours, `--debug` for tracebacks, and the summary table."""
from __future__ import annotations

import functools
import json
import os
import sys
import traceback

import typer
from typer.core import TyperGroup

ORDER = ("run", "sweep", "predict", "serve", "dashboard", "runs", "show", "compare", "rerun", "sync", "submit",
         "cluster")


class _Ordered(TyperGroup):
    """`conductor --help` lists the commands in the order a user meets them, not in import order."""

    def list_commands(self, ctx):
        return sorted(super().list_commands(ctx), key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))


app = typer.Typer(
    cls=_Ordered, add_completion=False, no_args_is_help=True, rich_markup_mode=None,
    help="Run deep-learning experiments from one spec file: Prefect flows, Dask preprocessing, "
         "Ray Train, Optuna sweeps, W&B tracking. See experiments/ for specs.",
)
STATE = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="show tracebacks of errors")):
    STATE["debug"] = debug or os.environ.get("CONDUCTOR_DEBUG") == "1"
    _use_cluster_profile()


def _use_cluster_profile() -> None:
    """After `conductor cluster up`, every command talks to that cluster's Prefect API (set before prefect loads)."""
    from cluster.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError:
        return  # a corrupt profile: the command says so as its one error line (`cluster down` removes it)
    if settings.prefect_api_url and "PREFECT_API_URL" not in os.environ:
        os.environ["PREFECT_API_URL"] = settings.prefect_api_url


def user_errors(fn):
    """Turn user errors into `error: ...` + exit 2; other failures exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from tasks.errors import USER_ERRORS

        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except USER_ERRORS as e:
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
    from tasks.errors import USER_ERRORS

    seen = e
    while seen.__cause__ is not None and not isinstance(seen, USER_ERRORS):
        seen = seen.__cause__
    return seen


def quiet_engines() -> None:
    """Prefect's console handlers stay quiet unless --debug: failures reach the user as one line."""
    if not STATE["debug"]:
        from flows.common import quiet_prefect_console

        quiet_prefect_console()


def _cell(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _print_baselines(summary: dict, console) -> None:
    """A small "model vs baselines (test)" table, then the verdict line when the model loses."""
    from rich.table import Table

    from tasks.evaluate import versus

    if rows := versus(summary["metrics"]):
        table = Table(title="model vs baselines (test)", show_header=True)
        columns = list(dict.fromkeys(k for r in rows for k in r))
        for c in columns:
            table.add_column(c, justify="left" if c in ("name", "note") else "right")
        for r in rows:
            table.add_row(*(_cell(r.get(c, "")) for c in columns))
        console.print(table)
    if summary.get("verdict"):
        console.print(summary["verdict"], markup=False, highlight=False)


def print_summary(summary: dict, as_json: bool, console=None, emit_json: bool = True) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(stderr=as_json)
    table = Table(title=f"{summary['name']} · {summary.get('run_id', '')}", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in summary["metrics"].items():
        if not k.startswith("baseline/"):  # shown below, one row per baseline
            table.add_row(k, _cell(v))
    console.print(table)
    _print_baselines(summary, console)
    console.print(f"run directory  {summary['run_dir']}")
    wb = summary.get("wandb") or {}
    if wb.get("run_dir"):
        hint = "  (upload later: wandb sync " + wb["run_dir"] + ")" if wb.get("mode") == "offline" else ""
        console.print(f"W&B ({wb.get('mode')})  {wb['run_dir']}{hint}")
    console.print(f"took {summary['duration_s']:.1f}s")
    if as_json and emit_json:
        print(json.dumps(summary, default=str), flush=True)
