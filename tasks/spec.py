"""The experiment spec: one pydantic model, unknown keys refused, every problem reported at once."""
from __future__ import annotations

import copy
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import UserError

BUILTIN_SETS = ("digits", "breast_cancer", "diabetes", "sunspots", "macrodata", "synthetic")
SEED_MAX = 2**32 - 1  # numpy's and torch's seed range
# What each task reports every epoch, as val/<name> (and train/<name> for the train loop's own logs):
# the names a sweep may optimise. The direction of each follows from HIGHER_IS_BETTER.
TASK_METRICS = {
    "classification": {"val": ("loss", "accuracy", "f1_macro", "balanced_accuracy"), "train": ("loss", "accuracy")},
    "regression": {"val": ("loss", "r2", "rmse", "mae"), "train": ("loss",)},
    "forecasting": {"val": ("loss", "r2", "rmse", "mae"), "train": ("loss",)},
    "generative": {"val": ("loss", "elbo", "recon_mse"), "train": ("loss", "elbo", "recon_mse")},
}
HIGHER_IS_BETTER = {"accuracy", "f1_macro", "balanced_accuracy", "r2", "elbo", "persistence_r2"}
MAIN_METRIC = {"classification": "accuracy", "regression": "r2", "forecasting": "r2", "generative": "recon_mse"}


class Strict(BaseModel):
    """Unknown keys are refused; so are inf and nan, which YAML reads as numbers (.inf, .nan)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Split(Strict):
    val: float = Field(default=0.15, ge=0.0, lt=1.0)
    test: float = Field(default=0.15, gt=0.0, lt=1.0)
    seed: int = Field(default=0, ge=0, le=SEED_MAX)

    @model_validator(mode="after")
    def _room_to_train(self):
        if self.val + self.test >= 0.9:
            raise ValueError(f"val + test must leave at least 10% to train, got {self.val + self.test:g}")
        return self


class Preprocessing(Strict):
    impute: Literal["mean", "median", "most_frequent", "interpolate", "drop", "none"] = "median"
    scale: Literal["standard", "minmax", "none"] = "standard"
    categorical: Literal["onehot", "ordinal", "none"] = "onehot"
    clip_outliers: float | None = Field(default=None, gt=0)
    balance: Literal["none", "class_weight", "oversample"] = "none"


class Data(Strict):
    source: str
    task: Literal["classification", "regression", "forecasting", "generative"] = "classification"
    target: str | None = None
    features: list[str] | None = None
    drop: list[str] = []  # columns to leave out when features is null (ids, leaky columns, a generative set's labels)
    shape: list[int] | None = None
    time_column: str | None = None
    time_format: str | None = None  # strftime format of time_column when its dates are ambiguous (31/12 or 12/31)
    window: int = Field(default=12, ge=1)
    horizon: int = Field(default=1, ge=1)
    # forecasting: the seasonal_naive baseline's period in steps (2..window); null: detected from the train series
    season: int | None = Field(default=None, ge=2)
    split: Split = Split()
    preprocessing: Preprocessing = Preprocessing()
    # builtin:synthetic only: rows, features, classes and class weights of the generator
    synthetic: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _cross_checks(self):
        problems = []
        if self.source.startswith("builtin:"):
            name = self.source.split(":", 1)[1]
            if name not in BUILTIN_SETS:
                problems.append(f"data.source: unknown builtin {name!r}; choose from {list(BUILTIN_SETS)}")
        if self.task == "generative" and self.target:
            problems.append("data.target: a generative task has no target; remove it")
        if self.task != "generative" and not self.target:
            problems.append(f"data.target: required for task {self.task!r}")
        if self.season is not None and self.task != "forecasting":
            problems.append(f"data.season: only for task forecasting (got {self.task!r}); remove it")
        elif self.season is not None and self.season > self.window:
            problems.append(f"data.season: {self.season} is longer than data.window ({self.window}); the seasonal "
                            "naive baseline looks one season back inside the window: give a season <= window")
        if self.shape is not None and (not self.shape or any(s < 1 for s in self.shape)):
            problems.append(f"data.shape: positive sizes expected, got {self.shape}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Model_(Strict):
    name: str
    params: dict[str, Any] = {}

    @model_validator(mode="after")
    def _known_model(self):
        from models import validate_params  # no torch: models/params.py

        try:
            self.params = validate_params(self.name, self.params).model_dump()
        except ValidationError as e:
            raise ValueError("; ".join(
                f"model.params.{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()
            )) from None
        return self


class EarlyStopping(Strict):
    patience: int = Field(default=5, ge=1)
    min_delta: float = Field(default=0.0, ge=0.0)


class Train(Strict):
    epochs: int = Field(default=20, ge=1)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    weight_decay: float = Field(default=0.0, ge=0)
    workers: int = Field(default=2, ge=1)
    use_gpu: Literal["auto"] | bool = "auto"
    seed: int = Field(default=0, ge=0, le=SEED_MAX)
    early_stopping: EarlyStopping | None = EarlyStopping()
    max_failures: int = Field(default=2, ge=0)


class WandbCfg(Strict):
    project: str = "conductor"
    mode: Literal["online", "offline", "disabled"] = "offline"
    entity: str | None = None


class Tracking(Strict):
    wandb: WandbCfg = WandbCfg()


class Dimension(Strict):
    """A float range, an int range (low and high written as integers), or a list of choices."""

    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _range_or_choices(self):
        if self.choices is not None:
            if not self.choices:
                raise ValueError("choices must not be empty")
            if self.low is not None or self.high is not None:
                raise ValueError("give either low/high or choices, not both")
        elif self.low is None or self.high is None:
            raise ValueError("give low and high, or choices")
        elif self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        elif self.log and self.low <= 0:
            raise ValueError("log scale needs low > 0")
        return self


def metric_direction(metric: str) -> str:
    """'maximize' or 'minimize' for a metric name such as val/accuracy or val/loss."""
    return "maximize" if metric.split("/")[-1] in HIGHER_IS_BETTER else "minimize"


class Sweep(Strict):
    metric: str = "val/loss"
    direction: Literal["minimize", "maximize"] | None = None  # None: from the metric (loss, rmse minimize; accuracy maximize)
    trials: int = Field(default=20, ge=1)
    parallel: int = Field(default=2, ge=1)
    sampler: Literal["tpe", "random", "qmc", "cmaes"] = "tpe"
    pruner: Literal["successive_halving", "hyperband", "median", "none"] = "successive_halving"
    space: dict[str, Dimension] = {}

    @model_validator(mode="after")
    def _direction_of_metric(self):
        inferred = metric_direction(self.metric)
        known = {m for by_split in TASK_METRICS.values() for names in by_split.values() for m in names}
        if self.direction is None:
            self.direction = inferred
        elif self.metric.split("/")[-1] in known and self.direction != inferred:
            better = "higher" if inferred == "maximize" else "lower"
            raise ValueError(f"sweep.direction: {self.direction} contradicts {self.metric} ({better} is better); "
                             f"write {inferred} or leave direction out")
        return self


class Spec(Strict):
    name: str
    data: Data
    model: Model_
    train: Train = Train()
    tracking: Tracking = Tracking()
    sweep: Sweep | None = None

    @model_validator(mode="after")
    def _cross_checks(self):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", self.name):
            raise ValueError(f"name: {self.name!r} must be letters, digits, '_', '.', '-' (it names a directory)")
        problems = self._model_fits_data() + (self._metric_reported() if self.sweep else [])
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _model_fits_data(self) -> list[str]:
        from models.params import FAMILIES

        task, name, shape = self.data.task, self.model.name, self.data.shape
        if task not in FAMILIES[name][1]:
            fits = sorted(n for n, (_, tasks) in FAMILIES.items() if task in tasks)
            return [f"model.name: {name!r} does not do {task}; for {task} choose from {fits}"]
        if name == "cnn" and (shape is None or len(shape) != 3):
            return [f"data.shape: model cnn needs [channels, height, width], e.g. [1, 8, 8]; got {shape}"]
        if name == "rnn" and task != "forecasting" and (shape is None or len(shape) != 2):
            return [f"data.shape: model rnn on {task} needs [steps, features], e.g. [8, 8]; got {shape}"]
        return []

    def _metric_reported(self) -> list[str]:
        prefix, _, leaf = self.sweep.metric.partition("/")
        reported = TASK_METRICS[self.data.task]
        if leaf not in reported.get(prefix, ()):
            choices = [f"{p}/{m}" for p, names in reported.items() for m in names]
            return [f"sweep.metric: {self.sweep.metric!r} is not reported for {self.data.task}; choose from {choices}"]
        if prefix == "val" and self.data.split.val == 0:
            return [f"sweep.metric: {self.sweep.metric} needs a validation split but data.split.val is 0; "
                    "give data.split.val (e.g. 0.15) or tune a train/ metric"]
        return []


def _loc(err: dict) -> str:
    parts = [str(p) for p in err["loc"] if not str(p).startswith("function-after")]
    return ".".join(parts)


def _describe(e: ValidationError) -> str:
    msgs = []
    for err in e.errors():
        loc, msg = _loc(err), err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        if err["type"] == "missing":
            msg = "required"
        msgs.append(msg if (not loc or msg.startswith(loc)) else f"{loc}: {msg}")
    return "; ".join(msgs)


def apply_overrides(raw: dict, overrides: dict[str, Any]) -> dict:
    """Set dotted keys (train.lr, model.params.dropout) in a copy of the raw spec dict."""
    out = copy.deepcopy(raw)
    for key, value in overrides.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            if not isinstance(node.get(p, {}), dict):
                raise UserError(f"--set {key}: {p!r} is not a section")
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def validate(raw: dict, where: str = "spec") -> Spec:
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a mapping of keys (name, data, model, ...), got {type(raw).__name__}")
    try:
        return Spec.model_validate(raw)
    except ValidationError as e:
        raise UserError(f"{where}: {_describe(e)}") from None
