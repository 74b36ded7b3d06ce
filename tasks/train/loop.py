"""The plain PyTorch loop: runs on a laptop as it is; ray_train.py wraps it for Ray Train.

`fit` never branches on the model type: every model gives `loss(batch) -> (loss, metrics)`.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable

import torch
from torch import nn

from ..data import Preprocessor
from ..evaluate.outputs import NO_INPUTS, predict_all, score
from ..spec import Train
from .optim import optimizer_class
from .state import Progress, diverged_message  # noqa: F401 - their old home: tasks.train.loop


class LossModule(nn.Module):
    """Puts `model.loss` behind `forward`, so DDP's gradient hooks see the call."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch):
        return self.model.loss(batch)


def non_finite(row: dict) -> str:
    """'train/loss nan' for the first metric of an epoch that is NaN or infinite, '' when all are finite."""
    for key, value in row.items():
        if isinstance(value, float) and not math.isfinite(value):
            return f"{key} {value}"
    return ""


def agreed(bad: str, device) -> str:
    """Under DDP every worker stops at the same epoch, or the others would wait forever in all-reduce."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return bad
    flag = torch.tensor([1.0 if bad else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bad or ("a non-finite loss on another worker" if flag.item() else "")


def make_optimizer(params, cfg: Train) -> torch.optim.Optimizer:
    cls = optimizer_class(cfg.optimizer)  # torch's, without its ~1 s import of torch._dynamo (optim.py)
    if cfg.optimizer == "sgd":
        return cls(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def train_epoch(net: nn.Module, batches: Iterable[dict], opt, device) -> tuple[dict, int]:
    """One pass; returns the sample-weighted means of the loss metrics and the samples seen."""
    net.train()
    sums: dict[str, float] = {}
    n = 0
    for batch in batches:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        loss, logs = net(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        b = len(batch["x"])
        n += b
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + float(v) * b
    return {k: v / max(n, 1) for k, v in sums.items()}, n


def fit(net: nn.Module, model: nn.Module, train_batches: Callable[[int], Iterable[dict]],
        val_batches: Callable[[], Iterable[dict]] | None, cfg: Train, prep: Preprocessor,
        report: Callable[[dict, Progress, dict, dict], bool] | None = None,
        progress: Progress | None = None, optimizer_state: dict | None = None,
        best_state: dict | None = None, device="cpu") -> tuple[Progress, dict]:
    """Train until `cfg.epochs`, early stopping on val/loss, or `report` asking to stop.

    `net` is what is trained (LossModule, maybe DDP-wrapped); `model` is the plain module it wraps.
    `report(row, progress, {"optimizer": ...}, best_state)` runs after every epoch; it returns True
    to stop (a pruned trial). Returns the progress and the best weights.
    """
    progress = progress or Progress()
    opt = make_optimizer(net.parameters(), cfg)
    if optimizer_state:
        opt.load_state_dict(optimizer_state)
    best_state = best_state or copy.deepcopy(model.state_dict())
    patience = cfg.early_stopping.patience if cfg.early_stopping else None
    min_delta = cfg.early_stopping.min_delta if cfg.early_stopping else 0.0
    task = model.task
    while progress.epoch < cfg.epochs and not progress.stopped:
        t0 = time.perf_counter()
        train_logs, n = train_epoch(net, train_batches(progress.epoch), opt, device)
        progress.train_seconds += time.perf_counter() - t0
        progress.samples += n
        row = {"epoch": progress.epoch + 1, **{f"train/{k}": v for k, v in train_logs.items()}}
        if val_batches is not None and not non_finite(row):  # NaN weights give NaN predictions: skip scoring
            val = score(task, predict_all(model, val_batches(), device, x_rows=NO_INPUTS), prep)
            row.update({f"val/{k}": v for k, v in val.items()})
        row["epoch_seconds"] = time.perf_counter() - t0
        progress.epoch += 1
        if bad := agreed(non_finite(row), device):
            # a NaN/inf loss never recovers: stop here, keep the last finite epoch's weights, log nothing
            progress.stopped, progress.diverged = "diverged", f"{bad} at epoch {progress.epoch}"
            break
        monitor = row.get("val/loss", row["train/loss"])
        progress.history.append(row)
        # With early stopping the best epoch's weights are kept; without it, the last epoch's (a linear
        # model trained to convergence is then the least-squares fit, not an early-stopped one).
        improved = monitor < progress.best - min_delta if patience else True
        if improved:
            progress.best, progress.best_epoch, progress.bad_epochs = monitor, progress.epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            progress.bad_epochs += 1
        if patience and progress.bad_epochs >= patience:
            progress.stopped = "early"
        elif progress.epoch >= cfg.epochs:
            progress.stopped = "done"
        if report is not None and report(row, progress, {"optimizer": opt.state_dict()}, best_state):
            progress.stopped = "pruned"
    return progress, best_state
