"""Optuna pieces of a sweep: storage, sampler, pruner, the search space, and pruning from rank 0.

Optuna's storage is the one source of truth: the driver asks for trials, and rank 0 of each trial's
Ray Train run reports the validation metric to the same trial every epoch and asks whether to prune;
the answer is broadcast so that every worker of the trial stops together.
"""
from __future__ import annotations

import copy
import warnings
from typing import Any

import optuna

from .errors import UserError
from .spec import Spec, Sweep, apply_overrides, validate

HEARTBEAT_S = 2
GRACE_S = 8


def make_storage(url: str, heartbeat: bool = True) -> optuna.storages.BaseStorage:
    """RDB storage (SQLite or PostgreSQL) with heartbeats: a trial whose process died is failed and retried."""
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    else:
        kwargs["engine_kwargs"] = {"pool_pre_ping": True}
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5 and warn every time
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if heartbeat:
                kwargs.update(heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                              heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3))
            return optuna.storages.RDBStorage(url, **kwargs)
    except Exception as e:  # noqa: BLE001 - a wrong URL or an unreachable server is the user's
        raise UserError(f"--storage: cannot open Optuna storage {redact_url(url)!r} ({type(e).__name__}: "
                        f"{str(e).splitlines()[0]})") from None


def redact_url(url: str) -> str:
    """postgresql://user:secret@host/db → postgresql://user:***@host/db, for logs and summaries."""
    import re

    return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", url)


def make_sampler(sweep: Sweep, seed: int) -> optuna.samplers.BaseSampler:
    return {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, sweep.trials // 4))),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "qmc": lambda: optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False),
        "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False),
    }[sweep.sampler]()


def make_pruner(sweep: Sweep, epochs: int) -> optuna.pruners.BasePruner:
    if sweep.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3)
    if sweep.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2)
    return optuna.pruners.NopPruner()


def suggest(trial: optuna.Trial, space: dict) -> dict[str, Any]:
    """Sample every dimension: float/int ranges (log or step) and categorical choices."""
    params = {}
    for key, dim in space.items():
        if dim.choices is not None:
            params[key] = trial.suggest_categorical(key, dim.choices)
        elif isinstance(dim.low, int) and isinstance(dim.high, int):
            params[key] = trial.suggest_int(key, dim.low, dim.high, log=dim.log, step=int(dim.step or 1))
        else:
            params[key] = trial.suggest_float(key, dim.low, dim.high, log=dim.log, step=dim.step)
    return params


def trial_spec(raw: dict, params: dict) -> Spec:
    return validate(apply_overrides(raw, params), "sweep trial")


def check_space(spec: Spec) -> None:
    """Every space key must be a spec field, and its values must validate: checked before anything starts."""
    if spec.sweep is None:
        raise UserError("sweep: the spec has no sweep section (metric, direction, trials, space)")
    if not spec.sweep.space:
        raise UserError("sweep.space: empty; name at least one spec key to tune, e.g. train.lr: {low: 1e-4, high: 1e-1, log: true}")
    raw = spec.model_dump(mode="json")
    for key, dim in spec.sweep.space.items():
        node: Any = raw
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if not isinstance(node, dict) or leaf not in node:
            raise UserError(f"sweep.space.{key}: not a field of the spec; tune keys such as train.lr, "
                            "train.batch_size, model.params.<name>")
        samples = dim.choices if dim.choices is not None else [dim.low, dim.high]
        for value in samples:
            try:
                trial_spec(copy.deepcopy(raw), {key: value})
            except UserError as e:
                raise UserError(f"sweep.space.{key}: value {value!r} is not allowed ({str(e).split(': ', 1)[-1]})") from None
    metric = spec.sweep.metric
    if not metric.startswith(("val/", "train/")):
        raise UserError(f"sweep.metric: {metric!r} must be a validation or train metric such as val/accuracy or val/loss")


class TrialReporter:
    """Inside a Ray Train worker: report each epoch's metric to the Optuna trial and decide on pruning."""

    def __init__(self, cfg: dict, rank: int):
        self.rank, self.metric = rank, cfg["metric"]
        self.trial = None
        if rank == 0:
            import ray

            storage = make_storage(cfg["storage"], heartbeat=False)
            sweep = Sweep.model_validate(cfg["sweep"])
            study = optuna.load_study(study_name=cfg["study"], storage=storage,
                                      pruner=make_pruner(sweep, cfg["epochs"]))
            self.trial = optuna.trial.Trial(study, cfg["trial_id"])
            ctx = ray.get_runtime_context()
            self.trial.set_user_attr("node_id", ctx.get_node_id())
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
