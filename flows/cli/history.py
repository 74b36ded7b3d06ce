"""`conductor runs`, `show` and `compare`: registered runs read back from their directories (files only, no engine)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .app import app, user_errors

RUN_HELP = "a run: its directory, its run id, or NAME/ID (see `conductor runs`)"


def _console(as_json: bool):
    from rich.console import Console

    return Console(stderr=as_json)


@app.command("runs")
@user_errors
def runs(
    name: Annotated[str | None, typer.Argument(help="only the runs of this experiment (the spec's name)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the runs as one JSON object on the last stdout line")] = False,
):
    """List registered runs, newest first: id, time, model, task, main test metric, best baseline, epochs,
    duration, git commit (* marks uncommitted changes)."""
    from rich.table import Table

    from cluster.settings import home
    from tasks.history import list_runs
    from tasks.history.listing import fmt_duration

    found = list_runs(home(), name)
    console = _console(as_json)
    if not found:
        console.print(f"no registered runs under {home()} (conductor run SPEC makes one)")
    else:
        table = Table(title=f"runs under {home()}")
        for col in ("id", "time", "name", "model", "task", "test metric", "best baseline", "epochs", "duration", "commit"):
            table.add_column(col, justify="right" if col in ("epochs", "duration") else "left",
                             no_wrap=col in ("id", "time", "commit"))
        for r in found:
            row = r.row()
            metric = f"{row['metric'].removeprefix('test/')} {row['value']:.4f}" if isinstance(row["value"], int | float) else "-"
            base = f"{row['baseline']['name']} {row['baseline']['value']:.4f}" if row["baseline"] else "-"
            commit = f"{row['commit'][:8]}{'*' if row['dirty'] else ''}" if row["commit"] else "-"
            table.add_row(r.run_id, r.time.strftime("%Y-%m-%d %H:%M"), r.name, row["model"] or "-", row["task"] or "-",
                          metric, base, str(row["epochs"] if row["epochs"] is not None else "-"),
                          fmt_duration(row["duration_s"]), commit)
        console.print(table)
    if as_json:
        print(json.dumps({"home": str(home()), "runs": [r.row() for r in found]}, default=str))


@app.command("show")
@user_errors
def show(
    run: Annotated[str, typer.Argument(metavar="RUN", help=RUN_HELP)],
    as_json: Annotated[bool, typer.Option("--json", help="print the run as one JSON object on the last stdout line")] = False,
):
    """One run: its metrics, a summary of its spec, its reproducibility record (commits, versions, command,
    seeds, data fingerprint) and where its report.html and plots are."""
    from cluster.settings import home
    from tasks.history import RunInfo, resolve_run

    r = RunInfo.read(resolve_run(run, home()))
    console = _console(as_json)
    _show(console, r)
    if as_json:
        print(json.dumps({**r.row(), "metrics": r.metrics, "spec": r.spec, "repro": r.repro,
                          "report": str(r.dir / "report.html"), "plots": _plots(r)}, default=str))


def _plots(r) -> list[str]:
    return [str(p) for p in sorted((r.dir / "plots").glob("*.png"))]


def _show(console, r) -> None:
    from rich.table import Table

    from tasks.history.listing import fmt_duration, fmt_value

    metrics = Table(title=f"{r.name} · {r.run_id}")
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    for k, v in r.metrics.items():
        metrics.add_row(k, fmt_value(v))
    console.print(metrics)
    say = lambda label, text: console.print(f"{label:<14}{text}", markup=False, highlight=False, soft_wrap=True)  # noqa: E731
    s, d, t = r.spec, r.spec.get("data") or {}, r.spec.get("train") or {}
    say("model", f"{r.model_name} {json.dumps((s.get('model') or {}).get('params', {}))}")
    say("data", f"{d.get('source')} ({r.task}, target {d.get('target')}, split {json.dumps(d.get('split'))})")
    say("train", ", ".join(f"{k} {t[k]}" for k in ("epochs", "batch_size", "lr", "optimizer", "workers", "seed") if k in t))
    rp = r.repro
    if rp is None:
        say("repro", "none (registered before runs kept repro.json)")
    else:
        for side in ("spec", "conductor"):
            g = (rp.get("git") or {}).get(side) or {}
            patch = (g.get("patch") or {}).get("file")
            where = f"  in {g.get('repo')}" if g.get("repo") else ""
            say(f"git {side}", f"{g.get('commit') or 'not a git repository'}{' (dirty)' if g.get('dirty') else ''}"
                f"{f'  patch {r.dir / patch}' if patch else ''}{where}")
        say("command", " ".join(rp.get("command") or []) or "- (not started from the CLI)")
        say("host", f"{rp.get('host') or '-'}, in {rp.get('cwd') or '-'}")
        say("versions", ", ".join(f"{k} {v}" for k, v in (rp.get("versions") or {}).items()) or "-")
        say("seeds", json.dumps(rp.get("seeds")))
        say("data cache", f"fingerprint {rp.get('data_fingerprint') or '-'}")
        say("took", fmt_duration(rp.get("duration_s")))
    say("run dir", r.dir)
    say("report", r.dir / "report.html")
    for p in _plots(r):
        say("plot", p)


@app.command("compare")
@user_errors
def compare(
    runs_: Annotated[list[str], typer.Argument(metavar="RUN RUN...", help=f"two or more runs: {RUN_HELP}")],
    html_path: Annotated[Path | None, typer.Option("--html", help="where to write the HTML page; default CONDUCTOR_HOME/compare/<ids>.html")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the comparison as one JSON object on the last stdout line")] = False,
):
    """Runs side by side: metrics, the spec keys that differ, and an HTML page with the learning curves overlaid."""
    from cluster.settings import home
    from tasks.errors import UserError
    from tasks.history import RunInfo, resolve_run
    from tasks.history import compare as cmp

    if len(runs_) < 2:
        raise UserError("compare: give at least two runs (RUN RUN ...)")
    found = [RunInfo.read(resolve_run(text, home())) for text in runs_]
    metrics, diff = cmp.metric_table(found), cmp.spec_diff(found)
    out = html_path or cmp.default_html_path(home(), found)
    for r in found:  # a registered run directory is never changed (as `predict --out` refuses too)
        if out.resolve().is_relative_to(r.dir.resolve()):
            raise UserError(f"--html: {str(out)!r} is inside the run directory {str(r.dir)!r}; write the page "
                            "somewhere else")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(cmp.compare_html(found, metrics, diff, cmp.curve_png(found)))
    except OSError as e:
        raise UserError(f"--html: cannot write {str(out)!r} ({e.strerror or type(e).__name__})") from None
    console = _console(as_json)
    labels = [r.run_id for r in found]
    _side_by_side(console, "metrics", "metric", labels, metrics)
    if diff:
        _side_by_side(console, "spec differences", "key", labels, diff)
    else:
        console.print("spec differences: none, the specs are equal")
    console.print(f"html          {out}", markup=False, highlight=False, soft_wrap=True)
    if as_json:
        print(json.dumps({"runs": [str(r.dir) for r in found], "metrics": metrics, "spec_diff": diff, "html": str(out)},
                         default=str))


def _side_by_side(console, title: str, first: str, labels: list[str], rows: dict) -> None:
    from rich.table import Table

    from tasks.history.listing import fmt_value

    table = Table(title=title)
    table.add_column(first)
    for label in labels:
        table.add_column(label, justify="right")
    for k, values in rows.items():
        table.add_row(k, *(fmt_value(v) if not isinstance(v, list | dict) else json.dumps(v) for v in values))
    console.print(table)
