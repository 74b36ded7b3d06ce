"""The "model vs baselines" table and verdict, from a run's flat metrics: no scikit-learn, torch or pandas, so
the CLI prints a summary without importing them (0.6 s of a warm sweep's end went to sklearn.metrics)."""
from __future__ import annotations

import math

from ..spec import HIGHER_IS_BETTER, MAIN_METRIC

METRICS = ("accuracy", "f1_macro", "balanced_accuracy", "r2", "rmse", "mae", "recon_mse")  # the order shown


def baselines_of(metrics: dict) -> dict[str, dict]:
    """{name: {key: value}} from flat `baseline/<name>/<key>` metrics, in their order."""
    out: dict[str, dict] = {}
    for key, value in metrics.items():
        if key.startswith("baseline/") and key.count("/") == 2:
            _, name, leaf = key.split("/")
            out.setdefault(name, {})[leaf] = value
    return out


def _note(key: str, value) -> str:
    if key == "skipped":
        return f"skipped: {value}"
    return f"{key} {value:.3g}" if isinstance(value, float) else f"{key} {value}"


def versus(metrics: dict) -> list[dict]:
    """Rows for a "model vs baselines" table: the model's test metrics, then each baseline's, with a note
    (the season used, or why a baseline was skipped). Empty when there are no baselines."""
    found = baselines_of(metrics)
    if not found:
        return []
    shown = [m for m in METRICS if any(m in b for b in found.values())]
    model = {m: metrics[f"test/{m}"] for m in shown if f"test/{m}" in metrics}
    rows = [{"name": "model", **model}] if model else []
    for name, values in found.items():
        note = ", ".join(_note(k, v) for k, v in values.items() if k not in METRICS)
        rows.append({"name": name, **{m: values[m] for m in shown if m in values}, **({"note": note} if note else {})})
    return rows


def verdict(task: str, metrics: dict) -> str | None:
    """One `warning:` line when the model loses to the best baseline on the task's main metric, else None."""
    main = MAIN_METRIC[task]
    model = metrics.get(f"test/{main}")
    scores = {name: v[main] for name, v in baselines_of(metrics).items()
              if isinstance(v.get(main), int | float) and math.isfinite(v[main])}
    if not isinstance(model, int | float) or not math.isfinite(model) or not scores:
        return None
    higher = main in HIGHER_IS_BETTER
    best = (max if higher else min)(scores, key=scores.get)
    gap = scores[best] - model if higher else model - scores[best]
    if gap <= 0:
        return None
    where = "below" if higher else "above"
    tail = "" if higher else "; lower is better"
    return (f"warning: the model's test/{main} {model:.3g} is {where} the {best} baseline's {scores[best]:.3g} "
            f"(gap {gap:.3g}{tail})")
