"""Optuna's plots of a study for report.html: interactive plotly HTML, and PNG where a picture is lighter."""
from __future__ import annotations

import html
import os
import secrets
import warnings
from pathlib import Path

import optuna

from ..staged import PREFIX, remove

PLOTS = {
    "optimization_history": "plot_optimization_history",
    "param_importances": "plot_param_importances",
    "parallel_coordinate": "plot_parallel_coordinate",
    "intermediate_values": "plot_intermediate_values",
}
# the plot whose first drawing in a process imports scikit-learn (fANOVA's forests, ~1.2 s with SciPy)
SKLEARN_PLOTS = ("param_importances",)


def draw_on(workers: list, name: str, study: str, storage_url: str, home: str, baselines_of: tuple | None = None) -> tuple:
    """(the worker that registers, (folder, Ray ref, plots the registrar draws itself) or None): Optuna's plots
    (~0.7 s) drawn by another warm worker into a staged folder while the registering one scores the best trial on
    test (tasks/sweep/best.py moves the folder into the run); `baselines_of` (prepared, spec): the drawer scores the
    baselines too (TrialWorker.study_plots). Each role costs imports the first time in a process: drawing
    scikit-learn (Optuna's importance plot), plotly and matplotlib, ~1.3 s; registering torch's evaluation modules
    and matplotlib, ~0.5 s. The roles go where those are loaded already (`TrialWorker.roles`: a worker kept from an
    earlier sweep; drawing also the one that warmed up while the last trial ran), drawing first; else in order.
    A drawer that has not loaded them yet (a cold sweep's: its warm-up still importing scikit-learn) draws only
    the plot that needs scikit-learn, and the registrar the others once it has scored the best trial: the two
    cores share the drawing instead of one waiting ~1 s for the other."""
    import ray

    if len(workers) < 2:
        return workers[0], None
    a, b = ray.get([w.roles.remote() for w in workers[:2]], timeout=60)
    score = lambda drawer, registrar: 2 * drawer[0] + registrar[1]  # noqa: E731 - drawing costs the most
    # the drawer's roles: when its drawing imports are done (roles[2]) it draws all
    (registrar, drawer), roles = ((workers[1], workers[0]), a) if score(a, b) > score(b, a) else (workers[:2], b)
    only, mine = (None, ()) if roles[2] else (SKLEARN_PLOTS, tuple(p for p in PLOTS if p not in SKLEARN_PLOTS))
    folder = Path(home) / name / f"{PREFIX}plots-{os.getpid()}-{secrets.token_hex(4)}"
    return registrar, (str(folder), drawer.study_plots.remote(study, storage_url, str(folder), baselines_of, only), mine)


def plotting(importance: bool = True):
    """matplotlib.pyplot (Agg), with what Optuna's plots import the first time in a process: plotly (~0.4 s) and,
    for the importance plot only, scikit-learn's forests (`optuna.importance`, ~1.2 s with SciPy). Drawing a
    study's plots, or warming up for it (TrialWorker.warm_up)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib  # noqa: F401
    import plotly.graph_objects  # noqa: F401

    if importance:
        import optuna.importance  # noqa: F401
    return plt


def study_plots(study: optuna.Study, out_dir: Path, as_name: str | None = None, only=None) -> dict:
    """Write out_dir/<plot>.html (plotly, one shared plotly.min.js) and <plot>.png (matplotlib), for every plot
    or those named in `only`. The links name the folder `as_name` (default its own name): where it will be when
    drawn elsewhere and moved. Returns the report's HTML, the PNGs, and what was drawn or skipped (`merge`)."""
    plt = plotting(importance=any(p in SKLEARN_PLOTS for p in (PLOTS if only is None else only)))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    folder = as_name or out_dir.name
    done, pngs, skipped = [], [], []
    for name, fn in PLOTS.items():
        if only is not None and name not in only:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fig = getattr(optuna.visualization, fn)(study)
                fig.write_html(out_dir / f"{name}.html", include_plotlyjs="directory")
                done.append(name)
                ax = getattr(optuna.visualization.matplotlib, fn)(study)
                figure = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
                figure.set_size_inches(8, 4.5)
                figure.tight_layout()
                figure.savefig(out_dir / f"{name}.png", dpi=100)
                plt.close(figure)
                pngs.append(f"{folder}/{name}.png")
        except (ValueError, RuntimeError, ZeroDivisionError) as e:  # e.g. importances need 2+ complete trials
            skipped.append(f"{name} ({str(e).splitlines()[0][:80]})")
    return page(folder, done, pngs, skipped)


def page(folder: str, done: list[str], pngs: list[str], skipped: list[str]) -> dict:
    """The report's sweep section: links to the interactive plots, the pictures, what could not be drawn."""
    links = " · ".join(f'<a href="{folder}/{n}.html">{n.replace("_", " ")}</a>' for n in done)
    imgs = "".join(f'<figure><img src="{html.escape(p)}"><figcaption>{html.escape(Path(p).stem.replace("_", " "))}'
                   f"</figcaption></figure>" for p in pngs)
    note = f"<p>not drawn: {html.escape('; '.join(skipped))}</p>" if skipped else ""
    return {"html": f"<p>interactive: {links}</p>{imgs}{note}", "png": pngs, "done": done, "skipped": skipped}


def merge(out_dir: Path, parts: list[dict], theirs: Path | None = None) -> dict:
    """The plots drawn in two places as one section, in PLOTS' order: `theirs`, another worker's folder, moves
    into out_dir file by file (what out_dir has already stays: plotly.min.js, drawn in both)."""
    out_dir = Path(out_dir)
    if theirs is not None:
        for f in Path(theirs).iterdir():
            if not (out_dir / f.name).exists():
                os.replace(f, out_dir / f.name)
        remove(Path(theirs))
    order = {n: i for i, n in enumerate(PLOTS)}
    done = sorted((n for p in parts for n in p["done"]), key=order.get)
    pngs = sorted((f for p in parts for f in p["png"]), key=lambda f: order.get(Path(f).stem, len(order)))
    return page(out_dir.name, done, pngs, [s for p in parts for s in p["skipped"]])
