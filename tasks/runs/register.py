"""Registering a run: the one code path for `run` and for a sweep's best trial. The run directory is
staged as `.tmp-<id>-…` and renamed when complete (tasks/staged.py), so it appears whole or not at all."""
from __future__ import annotations

import contextlib
import json
import secrets
import time
from pathlib import Path

import yaml

from cluster.settings import redact_url

from ..data import Preprocessor
from ..finite import dumps as finite_json
from ..spec import Spec
from ..staged import staged
from .report import report_html

LEFTOVERS = ("last.pt", "optimizer.pt")


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


@contextlib.contextmanager
def new_run(home: Path, name: str, run_id: str):
    """Yield the staging directory of runs/<name>/<run_id>; it becomes that directory on success."""
    with staged(Path(home) / name / run_id, Path(home)) as stage:
        yield stage


def masked(spec: Spec) -> Spec:
    """`spec` with data.source as it may be shown: any credential of its URL masked."""
    shown = redact_url(spec.data.source)
    return spec if shown == spec.data.source else spec.model_copy(
        update={"data": spec.data.model_copy(update={"source": shown})})


def final_metrics(eval_metrics: dict, history: list[dict], best_epoch: int, stopped: str) -> dict:
    best = next((r for r in history if r["epoch"] == best_epoch), history[-1] if history else {})
    keep = {k: v for k, v in best.items() if k.startswith(("train/", "val/"))}
    return {**eval_metrics, **keep, "best_epoch": best_epoch, "epochs": len(history), "stopped": stopped}


def described(stage: Path, spec: Spec, prep: Preprocessor) -> dict:
    """model.json's core (models.describe): as the Ray Train worker that trained the model wrote it into the
    final checkpoint, or from the model built here (torch, ~1.3-2 s in a process without it)."""
    if (stage / "model.json").exists():
        return json.loads((stage / "model.json").read_text())
    from models import build_model, describe

    model = build_model(spec.model.name, prep.input_shape, prep.output_dim, prep.task, spec.model.params,
                        target_index=prep.target_index)
    return describe(model, spec.model.name)


def register(stage: Path, spec: Spec, prep: Preprocessor, progress: dict, eval_metrics: dict,
             extra_metrics: dict | None = None, extra_html: dict | None = None) -> dict:
    """Write spec.yaml, model.json, preprocessor.json, metrics, history and report.html beside the
    weights and evaluation files already in `stage`; returns the metrics."""
    stage, spec = Path(stage), masked(spec)  # spec.yaml and report.html name the source without its credential
    meta = described(stage, spec, prep) | {"features": prep.features, "target": prep.target}
    history = progress["history"]
    metrics = {**final_metrics(eval_metrics, history, progress["best_epoch"], progress["stopped"]),
               **(extra_metrics or {})}
    (stage / "spec.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    (stage / "model.json").write_text(json.dumps(meta, indent=2))
    prep.save(stage)
    (stage / "metrics.json").write_text(finite_json(metrics, indent=2))
    (stage / "history.json").write_text(finite_json(history, indent=1))
    for leftover in LEFTOVERS:
        (stage / leftover).unlink(missing_ok=True)
    evald = json.loads((stage / "eval.json").read_text()) if (stage / "eval.json").exists() else {}
    (stage / "report.html").write_text(report_html(spec, metrics, history, evald, extra_html or {}))
    return metrics
