"""report.html: a run's metrics, plots, importance, per-epoch table and spec on one page."""
from __future__ import annotations

import html
from pathlib import Path

import yaml

from cluster.settings import redact_url

from ..spec import Spec


def table(rows: list[dict]) -> str:
    if not rows:
        return "<p>none</p>"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))


def figures(paths: list[str]) -> str:
    return "".join(f'<figure><img src="{html.escape(p)}" alt="{html.escape(p)}"><figcaption>'
                   f'{html.escape(Path(p).stem.replace("_", " "))}</figcaption></figure>' for p in paths)


def baselines_html(task: str, metrics: dict) -> str:
    """The model vs its baselines on the test split, and the verdict line when the model loses."""
    # imported here: `serve status` imports tasks.runs and need not load scikit-learn
    from ..evaluate.table import verdict, versus

    rows = versus(metrics)
    if not rows:
        return ""
    line = verdict(task, metrics)
    return (f"<h2>model vs baselines (test)</h2>{table(rows)}"
            + (f'<p class="verdict"><b>{html.escape(line)}</b></p>' if line else ""))


def report_html(spec: Spec, metrics: dict, history: list[dict], evald: dict, extra: dict) -> str:
    importance = evald.get("importance") or {}
    imp = table([{"column": k, "drop in test metric": v} for k, v in importance.items()]) if importance else ""
    shown = spec.model_dump(mode="json")
    shown["data"]["source"] = source = redact_url(spec.data.source)  # never a credential of its URL
    spec_yaml = html.escape(yaml.safe_dump(shown, sort_keys=False))
    extra_html = "".join(f"<h2>{html.escape(k)}</h2>{v}" for k, v in extra.items())
    shown_metrics = {k: v for k, v in metrics.items() if not k.startswith("baseline/")}  # in their own table
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(spec.name)}: report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:.5em 0}}
td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:right}}th{{background:#f3f3f3}}
figure{{display:inline-block;margin:.5em}}img{{max-width:520px}}pre{{background:#f7f7f7;padding:1em}}</style></head>
<body><h1>{html.escape(spec.name)}</h1><p>model <b>{html.escape(spec.model.name)}</b> on <code>{html.escape(source)}</code>, task {spec.data.task}</p>
<h2>metrics</h2>{table([shown_metrics])}
{baselines_html(spec.data.task, metrics)}
<h2>plots</h2>{figures(evald.get("plots", []))}
{"<h2>permutation importance (test)</h2>" + imp if imp else ""}
{extra_html}
<h2>per epoch</h2>{table(history)}
<h2>spec</h2><pre>{spec_yaml}</pre></body></html>"""
