"""The best trial becomes a run: its weights scored on the test split and registered through the same
path as `conductor run`, with Optuna's plots in report.html and a `<study>-summary` W&B run."""
from __future__ import annotations

import json
import os
from pathlib import Path

import optuna

from cluster.settings import redact_url

from .. import tracking
from ..data import Prepared
from ..names import check_name
from ..runs import new_run, new_run_id, register
from ..runs.repro import attach_repro
from ..spec import Spec
from ..staged import remove
from .objective import trial_dir
from .plots import PLOTS, merge, study_plots
from .space import trial_spec
from .storage import counts, make_storage


def register_best(spec: Spec, prepared: Prepared, study_name: str, storage_url: str, home: Path,
                  wandb_mode: str, run_id: str | None = None, drawn: tuple | None = None,
                  baselines: dict | None = None) -> dict:
    """Evaluate the best trial's weights on the test split and register them as a run directory (named
    `run_id` when the CLI chose it, with the repro record it left for that id). `drawn`: (folder, Ray ref)
    of Optuna's plots being drawn by another warm worker; they move into the run directory (drawn here when
    that worker failed). `baselines`: their test metrics when scored already (on Dask, during the trials)."""
    import torch

    from models import build_model

    from ..evaluate import evaluate, score_baselines, verdict
    from ..train import local_batches
    from ..train.checkpoint import read_progress

    study = optuna.load_study(study_name=study_name, storage=make_storage(storage_url, heartbeat=False))
    best = study.best_trial
    spec_t = trial_spec(spec.model_dump(mode="json"), best.params)
    prep = prepared.preprocessor
    src = trial_dir(home, spec.name, study_name, best.number)
    model = build_model(spec_t.model.name, prep.input_shape, prep.output_dim, prep.task, spec_t.model.params,
                        target_index=prep.target_index)
    model.load_state_dict(torch.load(src / "model.pt", weights_only=True))
    progress = read_progress(src).to_dict()
    c = counts(study)
    info = {"study": study_name, "storage": redact_url(storage_url),
            "best": {"trial": best.number, "params": best.params, "value": best.value},
            "trials": {k: c[k] for k in ("complete", "pruned", "failed")}}
    run_dir = home / spec.name / check_name(run_id or new_run_id(), "run_id")
    with new_run(home, spec.name, run_dir.name) as stage:
        result = evaluate(model, local_batches(prepared.path("test"), prep.n_inputs, prep.task), prep,
                          progress["history"], stage, seed=spec_t.train.seed)
        torch.save(model.state_dict(), stage / "model.pt")
        plots = _plots(study, stage / "sweep", drawn)
        (stage / "sweep.json").write_text(json.dumps(info, indent=2))
        if baselines is None:  # scored by the worker that drew the plots, else here
            baselines = plots.get("baselines")
            if baselines is None:
                baselines = score_baselines(prepared, prep, spec)
        extra = {f"best/{spec.sweep.metric}": best.value, **baselines}
        metrics = register(stage, spec_t, prep, progress, result["metrics"], extra_metrics=extra,
                           extra_html={"sweep": plots["html"]})
        repro = attach_repro(stage, home, run_dir.name, spec_t, prep)
        wb = _summary_run(spec, study_name, wandb_mode, home, best, metrics, info, stage, plots["png"], repro)
    return {"run_dir": str(run_dir), "metrics": metrics, "wandb": wb, "verdict": verdict(prep.task, metrics), **info}


def _plots(study: optuna.Study, out: Path, drawn: tuple | None) -> dict:
    """Optuna's plots in out: drawn by another worker (`drawn`: its folder, Ray ref, and the plots to draw here
    meanwhile, none when it draws all: plots.draw_on), or all here when there is none or it failed."""
    if drawn is not None:
        folder, ref, names = drawn
        mine = study_plots(study, out, only=names) if names else None
        try:
            import ray

            result = ray.get(ref, timeout=300)  # the drawing, and the baselines when asked for
            if mine is None:
                os.replace(folder, out)
                return result
            return {**result, **merge(out, [mine, result], theirs=Path(folder))}
        except Exception:  # noqa: BLE001 - the drawing worker died or failed: they are drawn here instead
            remove(Path(folder))
        if mine is not None:
            return merge(out, [mine, study_plots(study, out, only=[p for p in PLOTS if p not in names])])
    return study_plots(study, out)


def _summary_run(spec: Spec, study_name: str, mode: str, home: Path, best, metrics: dict, info: dict,
                 stage: Path, pngs: list[str], repro: dict) -> dict:
    run = tracking.start(spec.tracking.wandb.project, mode, home, name=f"{study_name}-summary", group=study_name,
                         job_type="sweep-summary", entity=spec.tracking.wandb.entity,
                         config={"best_params": best.params, "study": study_name, "spec": spec.model_dump(mode="json"),
                                 "repro": repro})
    if run is not None:
        import wandb

        run.summary.update({**metrics, "best_value": best.value, "best_trial": best.number,
                            **{f"trials/{k}": v for k, v in info["trials"].items()}})
        run.log({f"sweep/{Path(p).stem}": wandb.Image(str(stage / p)) for p in pngs})
        run.finish()
        (stage / "wandb.json").write_text(json.dumps({"mode": mode, "run_dir": tracking.run_dir(run), "id": run.id}))
    return {"mode": mode, "run_dir": tracking.run_dir(run)}
