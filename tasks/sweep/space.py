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
        current = _field_value(raw, key)
        _check_dimension(key, dim, current)
        samples = dim.choices if dim.choices is not None else [dim.low, dim.high]
        for value in samples:
            try:
                trial_spec(copy.deepcopy(raw), {key: value})
            except UserError as e:
                raise UserError(f"sweep.space.{key}: value {value!r} is not allowed ({str(e).split(': ', 1)[-1]})") from None


def _field_value(raw: dict, key: str) -> Any:
    """The spec's current value of a space key; only train.* and model.* change per trial (data is
    preprocessed once per sweep, so a data key would be silently ignored)."""
    hint = "tune keys such as train.lr, train.batch_size, model.params.<name>"
    if not key.startswith(("train.", "model.params.")):
        raise UserError(f"sweep.space.{key}: only train.* and model.params.* keys can change per trial "
                        f"(the data is preprocessed once per sweep); {hint}")
    node: Any = raw
    *parents, leaf = key.split(".")
    for p in parents:
        node = node.get(p) if isinstance(node, dict) else None
    if not isinstance(node, dict) or leaf not in node:
        raise UserError(f"sweep.space.{key}: not a field of the spec; {hint}")
    return node[leaf]


def _check_dimension(key: str, dim, current: Any) -> None:
    """What Optuna would refuse (or silently round) only at the first trial."""
    if dim.choices is not None:
        return
    ints = isinstance(dim.low, int) and isinstance(dim.high, int)
    if dim.log and dim.step is not None:
        raise UserError(f"sweep.space.{key}: log and step cannot be combined; drop one of them")
    if dim.step is not None and dim.step <= 0:
        raise UserError(f"sweep.space.{key}: step must be positive, got {dim.step:g}")
    if ints and dim.step is not None and dim.step != int(dim.step):
        raise UserError(f"sweep.space.{key}: an integer range needs an integer step, got {dim.step:g}")
    if isinstance(current, int) and not isinstance(current, bool) and not ints:
        raise UserError(f"sweep.space.{key}: an integer field; write low and high as integers "
                        f"(got {dim.low!r}..{dim.high!r})")
    if isinstance(current, float) and ints:
        raise UserError(f"sweep.space.{key}: a float field, but low and high are integers (Optuna would draw "
                        f"only whole numbers); write them as {float(dim.low)} and {float(dim.high)}")
    if isinstance(current, list | dict | str | bool) or current is None:
        raise UserError(f"sweep.space.{key}: a range does not fit this field (now {current!r}); use choices: [...]")
