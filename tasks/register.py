"""The run directory: staged under a temporary name, filled, then renamed in one step."""
from __future__ import annotations

import html
import json
import os
import secrets
import shutil
import time
from pathlib import Path

import yaml

from .fsutil import prune_empty_parents
from .spec import Spec


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def stage_dir(home: Path, name: str, run_id: str) -> Path:
    """Where a run is assembled; `runs/<name>/.tmp-<id>` is never mistaken for a finished run."""
    return Path(home) / name / f".tmp-{run_id}"


def discard(stage: Path, home: Path) -> None:
    shutil.rmtree(stage, ignore_errors=True)
    prune_empty_parents(stage.parent, home)


def final_metrics(eval_metrics: dict, history: list[dict], best_epoch: int, stopped: str) -> dict:
    best = next((r for r in history if r["epoch"] == best_epoch), history[-1] if history else {})
    keep = {k: v for k, v in best.items() if k.startswith(("train/", "val/"))}
    return {**eval_metrics, **keep, "best_epoch": best_epoch, "epochs": len(history), "stopped": stopped}


def write_run(stage: Path, spec: Spec, prep_dir: Path, model_meta: dict, metrics: dict, history: list[dict],
              extra: dict | None = None) -> None:
    """Everything but the files training copied in: spec, model.json, preprocessor, metrics, report."""
    stage = Path(stage)
    (stage / "spec.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    (stage / "model.json").write_text(json.dumps(model_meta, indent=2))
    shutil.copy(Path(prep_dir) / "preprocessor.json", stage / "preprocessor.json")
    (stage / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (stage / "history.json").write_text(json.dumps(history, indent=1))
    for leftover in ("last.pt", "optimizer.pt"):
        (stage / leftover).unlink(missing_ok=True)
    evald = json.loads((stage / "eval.json").read_text()) if (stage / "eval.json").exists() else {}
    (stage / "report.html").write_text(report_html(spec, metrics, history, evald, extra or {}))


def finalize(stage: Path) -> Path:
    """Rename `.tmp-<id>` to `<id>`: the run appears complete or not at all."""
    final = stage.parent / stage.name.removeprefix(".tmp-")
    os.rename(stage, final)
    return final


def _table(rows: list[dict]) -> str:
    if not rows:
        return "<p>none</p>"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))


def report_html(spec: Spec, metrics: dict, history: list[dict], evald: dict, extra: dict) -> str:
    plots = "".join(f'<figure><img src="{html.escape(p)}" alt="{html.escape(p)}"><figcaption>{html.escape(Path(p).stem.replace("_", " "))}</figcaption></figure>'
                    for p in evald.get("plots", []))
    importance = evald.get("importance") or {}
    imp = _table([{"column": k, "drop in test metric": v} for k, v in importance.items()]) if importance else ""
    spec_yaml = html.escape(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    extra_html = "".join(f"<h2>{html.escape(k)}</h2>{v}" for k, v in extra.items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(spec.name)}: report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:.5em 0}}
td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:right}}th{{background:#f3f3f3}}
figure{{display:inline-block;margin:.5em}}img{{max-width:520px}}pre{{background:#f7f7f7;padding:1em}}</style></head>
<body><h1>{html.escape(spec.name)}</h1><p>model <b>{html.escape(spec.model.name)}</b> on <code>{html.escape(spec.data.source)}</code>, task {spec.data.task}</p>
<h2>metrics</h2>{_table([{k: v for k, v in metrics.items()}])}
<h2>plots</h2>{plots}
{"<h2>permutation importance (test)</h2>" + imp if imp else ""}
{extra_html}
<h2>per epoch</h2>{_table(history)}
<h2>spec</h2><pre>{spec_yaml}</pre></body></html>"""
