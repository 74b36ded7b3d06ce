"""One trial on a warm worker: the objective, with Optuna's pruning as visible control flow.

The job that crosses to the worker is typed (TrialJob); the worker keeps the prepared splits in memory
(TrialData) from trial to trial, so a trial costs its epochs and little else.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import optuna
import torch

from ..data import Prepared, Preprocessor
from ..finite import dumps as finite_json
from ..spec import validate
from ..train import LossModule, Progress, fit, tensor_batches, whole_split
from .job import TrialJob


class TrialData:
    """A prepared directory's train and val splits as whole tensors, read once per worker process."""

    def __init__(self, prepared_dir: str):
        prepared = Prepared.load(Path(prepared_dir))
        self.preprocessor: Preprocessor = prepared.preprocessor
        self.splits = {}
        for split in ("train", "val"):
            self.splits[split] = whole_split(prepared.path(split), self.preprocessor.n_inputs, self.preprocessor.task)

    def batches(self, batch_size: int, seed: int):
        """fit's train_batches(epoch) and val_batches(): a seeded shuffle per epoch, val in one batch."""
        def train_batches(epoch: int):
            return tensor_batches(self.splits["train"], batch_size, seed * 1000 + epoch)

        return train_batches, (lambda: iter([self.splits["val"]]))


def reseed(seed: int, threads: int) -> None:
    """What makes a warm process give a fresh process's result: every generator, and the thread count."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)


def run_trial(trial: optuna.Trial, job: TrialJob, data: TrialData, log_row=None) -> tuple[Progress, dict]:
    """Train the trial's spec with the plain `fit`; report every epoch; prune when Optuna says so.
    Returns the progress and the best weights; raises optuna.TrialPruned for a pruned trial (after the
    weights and progress are saved, so a pruned trial's curve is kept too)."""
    from models import build_model

    spec = validate(job.spec_json, "sweep trial")
    cfg, prep = spec.train, data.preprocessor
    reseed(cfg.seed, job.threads)
    model = build_model(spec.model.name, prep.input_shape, prep.output_dim, prep.task, spec.model.params,
                        class_weight=prep.class_weight, target_index=prep.target_index)
    train_batches, val_batches = data.batches(cfg.batch_size, cfg.seed)

    def report(row, progress, extra, best) -> bool:
        if log_row is not None:
            log_row(row)
        if job.metric not in row:
            return False
        trial.report(float(row[job.metric]), step=int(row["epoch"]))
        # after the last epoch the training is paid for: keep it a complete trial
        return int(row["epoch"]) < cfg.epochs and trial.should_prune()

    progress, best = fit(LossModule(model), model, train_batches, val_batches, cfg, prep, report=report)
    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(best, out / "model.pt")
    (out / "progress.json").write_text(finite_json(progress.to_dict()))
    if progress.stopped == "diverged":  # stopped like a pruned trial: retrying the same parameters diverges again
        trial.set_user_attr("diverged", progress.diverged)
        raise optuna.TrialPruned(f"diverged ({progress.diverged})")
    if progress.stopped == "pruned":
        raise optuna.TrialPruned(f"pruned after {progress.epoch} epochs")
    return progress, best
