"""Each family's hyperparameters and tasks, without torch: a spec is checked (tasks/spec.py) by processes that
never build a model — the CLI before any engine starts, a sweep's driver — and importing torch there cost
2-3 s of every command's start-up on 2 cores. The modules (models/<family>.py) take their Params from here."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

SUPERVISED_TASKS = ("classification", "regression", "forecasting")
Width = Annotated[int, Field(ge=1, le=65536)]  # a layer's units or channels
Activation = Literal["relu", "gelu", "tanh", "silu"]


class Params(BaseModel):
    """Hyperparameters of a family; unknown keys, inf and nan are refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class LinearParams(Params):
    pass


class LogisticParams(Params):
    pass


class MLPParams(Params):
    hidden: list[Width] = Field(default=[128, 64], min_length=1)
    activation: Activation = "relu"
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    batch_norm: bool = False


class CNNParams(Params):
    channels: list[Width] = Field(default=[16, 32], min_length=1)
    kernel_size: int = Field(default=3, ge=1)
    hidden: Width = 64
    activation: Activation = "relu"
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)


class RNNParams(Params):
    cell: Literal["rnn", "lstm", "gru"] = "lstm"
    hidden_size: Width = 64
    num_layers: int = Field(default=1, ge=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    relative: Literal["last", "revin", "none"] = "last"  # forecasting: the frame each window is read in
    ar: bool = False  # forecasting: + a linear map of the target's window, in that frame


class VAEParams(Params):
    latent_dim: Width = 8
    hidden: list[Width] = Field(default=[128, 64], min_length=1)
    activation: Activation = "relu"
    beta: float = Field(default=1.0, gt=0.0)


# name -> (its Params, the tasks it does); models/registry.py maps the same names to the modules
FAMILIES: dict[str, tuple[type[Params], tuple[str, ...]]] = {
    "linear": (LinearParams, ("regression", "forecasting")),
    "logistic": (LogisticParams, ("classification",)),
    "mlp": (MLPParams, SUPERVISED_TASKS),
    "cnn": (CNNParams, ("classification", "regression")),
    "rnn": (RNNParams, SUPERVISED_TASKS),
    "vae": (VAEParams, ("generative",)),
}


def family(name: str) -> tuple[type[Params], tuple[str, ...]]:
    if name not in FAMILIES:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(FAMILIES)}")
    return FAMILIES[name]


def validate_params(name: str, params: dict | None) -> Params:
    return family(name)[0].model_validate(params or {})


def tasks_of(name: str) -> tuple[str, ...]:
    return family(name)[1]
