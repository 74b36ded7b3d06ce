"""`conductor rerun` and `conductor sync`: a run done again and checked against itself; offline W&B runs uploaded."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from .app import app, print_summary, user_errors
from .history import RUN_HELP


@app.command("rerun")
@user_errors
def rerun(
    run: Annotated[str, typer.Argument(metavar="RUN", help=RUN_HELP)],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON summary (with \"reproduced\") as the last stdout line")] = False,
):
    """Run a registered run's spec.yaml again (as `conductor run` does) and check each test metric against the
    original within run-to-run noise (tasks/history/reproduce.py states the rule). Exits 0 either way."""
    t0 = time.perf_counter()
    from cluster.settings import home
    from tasks.history import resolve_run

    result = rerun_run(resolve_run(run, home()), t0)
    _print_rerun(result, as_json)


def rerun_run(original: Path, t0: float | None = None) -> dict:
    """`original`'s spec.yaml through the same path as `conductor run`; the summary of the new run with
    "original", "comparison" (one row per test metric), "reproduced" and "reproduction" (the one-line verdict) added."""
    from tasks.history import RunInfo
    from tasks.history.reproduce import compare_metrics, verdict
    from tasks.spec_file import load_spec

    from .run import run_spec

    before = RunInfo.read(original)
    spec_obj = _as_trained(_sourced_here(load_spec(before.dir / "spec.yaml", []), before), before.dir)
    for note in _code_notes(before):
        print(f"note: {note}", file=sys.stderr)
    summary = run_spec(spec_obj, before.dir / "spec.yaml", t0, rerun_of=f"{before.name}/{before.run_id}")
    try:
        n_test = int(json.loads((before.dir / "preprocessor.json").read_text())["counts"]["test"])
    except (OSError, ValueError, KeyError, TypeError):
        n_test = None
    rows = compare_metrics(before.metrics, summary["metrics"], n_test)
    return {**summary, "original": str(before.dir), "comparison": rows, "n_test": n_test,
            "reproduced": bool(rows) and all(r["within"] for r in rows), "reproduction": verdict(rows)}


def _as_trained(spec_obj, run_dir: Path):
    """A model param added after the original run (its model.json does not name it) gets the value that means
    what the original ran with (the family's saved_defaults, as load_model does), not today's default."""
    import yaml

    from models.registry import model_class

    try:
        trained = json.loads((run_dir / "model.json").read_text()).get("params", {})
        written = (yaml.safe_load((run_dir / "spec.yaml").read_text()).get("model") or {}).get("params") or {}
        defaults = model_class(spec_obj.model.name).saved_defaults
    except (OSError, ValueError, KeyError, AttributeError, yaml.YAMLError):
        return spec_obj
    older = {k: v for k, v in defaults.items() if k not in trained and k not in written}
    if not older:
        return spec_obj
    print(f"note: the original run predates model.params {sorted(older)}; rerun with {older}", file=sys.stderr)
    params = {**spec_obj.model.params, **older}
    return spec_obj.model_copy(update={"model": spec_obj.model.model_copy(update={"params": params})})


def _sourced_here(spec_obj, before):
    """A relative data.source is read from the original run's working directory when it is not found here."""
    cwd = (before.repro or {}).get("cwd")
    source = spec_obj.data.source
    if not cwd or "://" in source or source.startswith("builtin:") or Path(source).is_absolute():
        return spec_obj
    import glob

    if glob.glob(source) or not glob.glob(str(Path(cwd) / source)):
        return spec_obj
    return spec_obj.model_copy(update={"data": spec_obj.data.model_copy(update={"source": str(Path(cwd) / source)})})


def _code_notes(before) -> list[str]:
    """What may differ in the code from the original run: conductor's commit, uncommitted changes then."""
    from tasks.runs.repro import CONDUCTOR_ROOT, git_state

    git = (before.repro or {}).get("git") or {}
    then, spec_then, notes = git.get("conductor") or {}, git.get("spec") or {}, []
    now = git_state(CONDUCTOR_ROOT) if then.get("commit") else {}
    if now.get("commit") and now["commit"] != then["commit"]:
        notes.append(f"conductor is at {now['commit'][:8]}; the original ran at {then['commit'][:8]}")
    if then.get("dirty"):
        notes.append("conductor had uncommitted changes when the original ran; this rerun uses the code as it is now")
    if (spec_then.get("patch") or {}).get("file"):
        notes.append(f"the spec's repository had uncommitted changes then: {before.dir / spec_then['patch']['file']}")
    return notes


def _print_rerun(result: dict, as_json: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    from tasks.history.listing import fmt_value

    console = Console(stderr=as_json)
    print_summary(result, as_json=False, console=console)
    table = Table(title=f"rerun of {result['original']}")
    for col in ("metric", "original", "rerun", "diff", "tolerance", "within"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for r in result["comparison"]:
        table.add_row(r["metric"], fmt_value(r["original"]), fmt_value(r["rerun"]),
                      "-" if r["diff"] is None else f"{r['diff']:+.4f}", f"{r['tolerance']:.4f}", "yes" if r["within"] else "NO")
    console.print(table)
    console.print(result["reproduction"], markup=False, highlight=False)
    if as_json:
        print(json.dumps(result, default=str), flush=True)


@app.command("sync")
@user_errors
def sync(
    run: Annotated[str | None, typer.Argument(metavar="[RUN]", help=f"the offline W&B runs of one run: {RUN_HELP}")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every offline W&B run under CONDUCTOR_HOME/wandb")] = False,
    parallel: Annotated[int, typer.Option("--parallel", help="uploads at once", min=1, max=16)] = 4,
    as_json: Annotated[bool, typer.Option("--json", help="print what was synced as one JSON object on the last stdout line")] = False,
):
    """Upload offline W&B runs with `wandb sync`, a few at a time; each once (CONDUCTOR_HOME/wandb/synced.json
    and wandb's .synced markers remember). Needs a W&B login and the network: without, one error line."""
    from cluster.settings import home
    from tasks.errors import UserError
    from tasks.history import resolve_run
    from tasks.history import sync as wb

    if (run is None) == (not all_):
        raise UserError("sync: name one RUN, or pass --all for every offline W&B run (not both)")
    folders = wb.offline_dirs(home()) if all_ else wb.run_wandb_dirs(resolve_run(run, home()), home())
    book = wb.read_book(home())
    todo = [f for f in folders if not wb.is_synced(f, book)]
    out = sys.stderr if as_json else sys.stdout
    result = {"synced": [], "skipped": [str(f) for f in folders if f not in todo], "failed": {}}
    if not folders and run is not None:
        print(f"nothing to sync: {run} has no offline W&B run (tracking disabled, or it logged online)", file=out)
    elif not todo:
        print(f"nothing to sync: {len(folders)} offline W&B run(s), {len(result['skipped'])} already synced", file=out)
    else:
        wb.check_can_upload()
        skipped = f" ({len(result['skipped'])} already synced)" if result["skipped"] else ""
        print(f"syncing {len(todo)} offline W&B run(s), {parallel} at a time{skipped}", file=out)
        result.update(wb.upload(home(), todo, parallel, log=lambda m: print(m, file=out if m.startswith("synced") else sys.stderr)))
    if as_json:
        print(json.dumps(result))
    if result["failed"]:
        raise typer.Exit(1)
