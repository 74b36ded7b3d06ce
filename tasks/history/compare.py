"""Runs side by side: their metrics, the spec keys that differ (flattened, dotted), and an HTML page with
the learning curves overlaid (a matplotlib PNG embedded as base64, so the page is one file)."""
from __future__ import annotations

import base64
import hashlib
import html
import io
import json
from pathlib import Path

from .listing import MAIN_METRIC, RunInfo, fmt_value

MISSING = "-"
ORDER = ("test/", "val/", "train/", "baseline/", "best/")


def flatten(obj, prefix: str = "") -> dict:
    """{"train": {"lr": 0.1}} → {"train.lr": 0.1}; lists stay values."""
    if not isinstance(obj, dict):
        return {prefix: obj}
    out = {}
    for k, v in obj.items():
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _order(key: str) -> tuple:
    return next((i for i, p in enumerate(ORDER) if key.startswith(p)), len(ORDER)), key


def metric_table(runs: list[RunInfo]) -> dict[str, list]:
    """{metric: [value of each run, or None]} over every metric any run has, test/ first."""
    keys = sorted({k for r in runs for k in r.metrics}, key=_order)
    return {k: [r.metrics.get(k) for r in runs] for k in keys}


def spec_diff(runs: list[RunInfo]) -> dict[str, list]:
    """{dotted spec key: [value of each run]} for the keys whose values differ (a missing key counts as
    different), plus the data fingerprint and commit where repro.json records them differently."""
    flat = [flatten(r.spec) for r in runs]
    for r, f in zip(runs, flat, strict=True):
        f["repro.data_fingerprint"] = (r.repro or {}).get("data_fingerprint")
        f["repro.commit"] = r.commit()[0]
    keys = sorted({k for f in flat for k in f})
    diff = {}
    for k in keys:
        values = [f.get(k, MISSING) for f in flat]
        if any(json.dumps(v, sort_keys=True, default=str) != json.dumps(values[0], sort_keys=True, default=str)
               for v in values[1:]):
            diff[k] = values
    return diff


def curve_png(runs: list[RunInfo]) -> bytes | None:
    """val/loss and the task's main val metric per epoch, one line per run; None when no history has them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    histories = [_history(r) for r in runs]
    main = next((f"val/{MAIN_METRIC[r.task]}" for r in runs if r.task in MAIN_METRIC), None)
    panels = [k for k in ("val/loss", main) if k and any(k in row for h in histories for row in h)]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.8), squeeze=False)
    for ax, key in zip(axes[0], panels, strict=True):
        for r, h in zip(runs, histories, strict=True):
            points = [(row["epoch"], row[key]) for row in h if isinstance(row.get(key), int | float) and "epoch" in row]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", markersize=3, label=f"{r.name}/{r.run_id}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(key)
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _history(run: RunInfo) -> list[dict]:
    try:
        rows = json.loads((run.dir / "history.json").read_text())
    except (OSError, ValueError):
        return []
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def default_html_path(home: Path, runs: list[RunInfo]) -> Path:
    """CONDUCTOR_HOME/compare/<id>__<id>....html (a hash when that name would be too long)."""
    name = "__".join(r.run_id for r in runs)
    if len(name) > 180:
        name = f"{runs[0].run_id}__and-{len(runs) - 1}-more-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return Path(home) / "compare" / f"{name}.html"


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt_value(v) if not isinstance(v, list | dict) else json.dumps(v))}</td>"
                                    for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def compare_html(runs: list[RunInfo], metrics: dict, diff: dict, png: bytes | None) -> str:
    labels = [f"{r.name}/{r.run_id}" for r in runs]
    overview = _table(["run", "time", "model", "task", "epochs", "commit", "report"],
                      [[lbl, r.time.isoformat(" ", "seconds"), r.model_name, r.task, r.metrics.get("epochs"),
                        r.commit()[0], str(r.dir / "report.html")] for lbl, r in zip(labels, runs, strict=True)])
    curves = (f'<img alt="learning curves" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
              if png else "<p>no learning curves (no history.json with val/ metrics)</p>")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>compare {html.escape(', '.join(labels))}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;margin:.5em 0}}
td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:right}}th{{background:#f3f3f3}}img{{max-width:100%}}</style></head>
<body><h1>{len(runs)} runs compared</h1>{overview}
<h2>learning curves</h2>{curves}
<h2>metrics</h2>{_table(["metric", *labels], [[k, *v] for k, v in metrics.items()])}
<h2>spec differences</h2>{_table(["key", *labels], [[k, *v] for k, v in diff.items()]) if diff else "<p>none: the specs are equal</p>"}
</body></html>"""
