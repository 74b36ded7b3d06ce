"""The experiment spec: one pydantic model, unknown keys refused, every problem reported at once."""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import UserError

BUILTIN_SETS = ("digits", "breast_cancer", "diabetes", "sunspots", "synthetic")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Split(Strict):
    val: float = Field(default=0.15, ge=0.0, lt=1.0)
    test: float = Field(default=0.15, gt=0.0, lt=1.0)
    seed: int = 0

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
    window: int = Field(default=12, ge=1)
    horizon: int = Field(default=1, ge=1)
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
        from models import validate_params  # models imports only torch and pydantic

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
    seed: int = 0
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


class Sweep(Strict):
    metric: str = "val/loss"
    direction: Literal["minimize", "maximize"] = "minimize"
    trials: int = Field(default=20, ge=1)
    parallel: int = Field(default=2, ge=1)
    sampler: Literal["tpe", "random", "qmc", "cmaes"] = "tpe"
    pruner: Literal["successive_halving", "hyperband", "median", "none"] = "successive_halving"
    space: dict[str, Dimension] = {}


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
        return self


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


def parse_value(text: str) -> Any:
    """`--set` values are YAML scalars or flow collections: 0.01, true, [16, 32], {patience: 3}."""
    return yaml.safe_load(text) if text != "" else ""


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


def load_spec(path: str | Path, overrides: list[str] | dict | None = None) -> Spec:
    """Read a YAML spec, apply `key=value` overrides, validate; raises UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"spec file {str(path)!r} not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if isinstance(overrides, list):
        pairs = {}
        for item in overrides:
            if "=" not in item:
                raise UserError(f"--set {item!r}: expected key=value, e.g. train.lr=0.01")
            k, v = item.split("=", 1)
            pairs[k.strip()] = parse_value(v)
        overrides = pairs
    if overrides:
        raw = apply_overrides(raw or {}, overrides)
    return validate(raw, str(path))
