"""The search space: sampling every dimension, and checking it against the spec before anything starts."""
from __future__ import annotations

import copy
from typing import Any

import optuna

from ..errors import UserError
from ..spec import Spec, apply_overrides, validate


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
