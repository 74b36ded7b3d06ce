"""The objective: one Optuna trial = one training run of the spec with the trial's parameters.

Pruning is control flow, as in optuna-examples: rank 0 of the trial's workers calls `trial.report`
and `trial.should_prune` every epoch (tasks/sweep/reporter.py); a pruned run comes back stopped,
and here it becomes `optuna.TrialPruned`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import optuna

from ..data import Prepared
from ..progress import Follower, format_row, say
from ..spec import Spec
from ..train import Tracking
from .reporter import TrialHook
from .space import suggest, trial_spec


@dataclass
class SweepContext:
    """What every trial of one sweep shares."""

    spec: Spec
    prepared: Prepared
    study: str
    storage_url: str
    home: Path
    parallel: int
    wandb_mode: str

    def trial_dir(self, number: int) -> Path:
        return trial_dir(self.home, self.spec.name, self.study, number)


def trial_dir(home: Path, name: str, study: str, number: int) -> Path:
    return Path(home) / name / "sweeps" / study / f"t{number:03d}"


def objective(trial: optuna.Trial, ctx: SweepContext) -> float:
    from ..train.ray_train import train_on_ray

    sweep = ctx.spec.sweep
    params = suggest(trial, sweep.space)
    spec = trial_spec(ctx.spec.model_dump(mode="json"), params)
    name = f"{ctx.study}-t{trial.number}"
    hook = TrialHook(ctx.storage_url, ctx.study, trial._trial_id, sweep.metric, sweep.model_dump(mode="json"),
                     spec.train.epochs)
    tracking = Tracking(spec.tracking.wandb.project, ctx.wandb_mode, name, ctx.study, spec.tracking.wandb.entity,
                        job_type="trial", config_extra={"trial": params})
    progress_path = ctx.home / ".progress" / f"{name}.jsonl"
    with Follower(progress_path, lambda rec: format_row(f"[t{trial.number}]", rec["row"], rec["epochs"])):
        trained = train_on_ray(spec, ctx.prepared, ctx.trial_dir(trial.number), ctx.home, tracking, hook=hook,
                               share=ctx.parallel, progress_path=str(progress_path), evaluate=False)
    prog = trained.progress
    trial.set_user_attr("epochs", prog.epoch)
    trial.set_user_attr("best_epoch", prog.best_epoch)
    trial.set_user_attr("wandb_run_dir", trained.wandb.get("run_dir"))
    if prog.stopped in ("pruned", "diverged"):  # a diverged trial is stopped like a pruned one, not retried
        why = f"diverged ({prog.diverged})" if prog.diverged else f"pruned after {prog.epoch} epochs"
        trial.set_user_attr("diverged", prog.diverged or None)
        say(f"[t{trial.number}] {why}")
        raise optuna.TrialPruned()
    value = next(r for r in prog.history if r["epoch"] == prog.best_epoch)[sweep.metric]
    say(f"[t{trial.number}] {sweep.metric} {value:.4f}  {params}")
    return value
