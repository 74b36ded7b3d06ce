"""Pruning from rank 0: inside a trial's training workers, rank 0 reports the validation metric to the
Optuna trial every epoch and asks whether to prune; the answer is broadcast so every worker stops together."""
from __future__ import annotations

from dataclasses import dataclass

import optuna

from ..spec import Sweep
from .storage import make_pruner, make_storage


@dataclass
class TrialHook:
    """The link to one Optuna trial that travels to the training workers (a HookFactory of tasks/train)."""

    storage_url: str
    study: str
    trial_id: int
    metric: str
    sweep: dict
    epochs: int

    def open(self, rank: int) -> TrialReporter:
        return TrialReporter(self, rank)


class TrialReporter:
    def __init__(self, link: TrialHook, rank: int):
        self.rank, self.metric, self.trial = rank, link.metric, None
        if rank == 0:
            import ray

            study = optuna.load_study(study_name=link.study, storage=make_storage(link.storage_url, heartbeat=False),
                                      pruner=make_pruner(Sweep.model_validate(link.sweep), link.epochs))
            self.trial = optuna.trial.Trial(study, link.trial_id)
            self.trial.set_user_attr("node_id", ray.get_runtime_context().get_node_id())
            self.trial.set_user_attr("node_ip", ray.util.get_node_ip_address())

    def should_stop(self, row: dict, progress) -> bool:
        prune = False
        if self.rank == 0 and self.metric in row:
            self.trial.report(float(row[self.metric]), step=int(row["epoch"]))
            prune = self.trial.should_prune()
        import ray.train.torch
        import torch
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            flag = torch.tensor([1 if prune else 0], device=ray.train.torch.get_device())
            dist.broadcast(flag, src=0)  # every worker of the trial stops at the same epoch
            prune = bool(flag.item())
        return prune
