"""Names to model families; the one place to add a family."""
from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import torch
from torch import nn

from .base import Model, Params
from .cnn import CNN
from .linear import LinearRegression
from .logistic import LogisticRegression
from .mlp import MLP
from .rnn import RNN
from .vae import VAE

MODELS: dict[str, type[Model]] = {
    "linear": LinearRegression,
    "logistic": LogisticRegression,
    "mlp": MLP,
    "cnn": CNN,
    "rnn": RNN,
    "vae": VAE,
}


def model_class(name: str) -> type[Model]:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    return MODELS[name]


def validate_params(name: str, params: dict | None) -> Params:
    return model_class(name).Params.model_validate(params or {})  # = models.params.validate_params, for a module


def build_model(name: str, input_shape, output_dim: int, task: str, params: dict | None = None,
                class_weight: list[float] | None = None, target_index: int | None = None) -> nn.Module:
    """`target_index`: forecasting's target among each step's features (Preprocessor.target_index), for the
    families that model the target relative to its last value (rnn); the others ignore it."""
    cls = model_class(name)
    extra = {"target_index": target_index} if cls.reads_target else {}
    return cls(input_shape, output_dim, task, validate_params(name, params), class_weight=class_weight, **extra)


def describe(model: Model, name: str) -> dict:
    """What `model.json` holds: enough to rebuild the module."""
    meta = {"name": name, "params": model.params.model_dump(), "input_shape": list(model.input_shape),
            "output_dim": model.output_dim, "task": model.task}
    if getattr(model, "target_index", None) is not None:
        meta["target_index"] = model.target_index
    return meta


def save_model(model: Model, name: str, directory: str | Path) -> None:
    directory = Path(directory)
    torch.save(model.state_dict(), directory / "model.pt")
    (directory / "model.json").write_text(json.dumps(describe(model, name), indent=2))


class WeightsError(ValueError):
    """model.pt is not a plain tensor file (a pickle that would run code, or a corrupt file), or its
    tensors do not fit model.json. Nothing of it ran; callers turn this into the user's error."""


def load_model(directory: str | Path, map_location: str = "cpu") -> Model:
    """Rebuild from `model.json` and load `model.pt` with `weights_only=True`: tensors, never code."""
    directory = Path(directory)
    meta = json.loads((directory / "model.json").read_text())
    # a param that model.json does not name was written before it existed: it means the old behaviour
    params = {**model_class(meta["name"]).saved_defaults, **meta["params"]}
    model = build_model(meta["name"], meta["input_shape"], meta["output_dim"], meta["task"], params,
                        target_index=meta.get("target_index"))
    path = directory / "model.pt"
    try:
        with warnings.catch_warnings():  # a foreign pickle protocol warns first; the refusal says enough
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise WeightsError(f"{path}: not a plain weights file (torch.load with weights_only=True refused it: "
                           f"{_why(e)}); refusing to load it") from None
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: not a plain weights file (a {type(state).__name__}, not a state dict); "
                           "refusing to load it")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as e:
        raise WeightsError(f"{path}: its tensors do not fit the model in model.json ({_why(e)})") from None
    return model.eval()


def _why(e: BaseException) -> str:
    """The reason in torch's error, without its boilerplate (which suggests loading unsafely)."""
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [ln.strip().removeprefix("WeightsUnpickler error:").strip() for ln in str(e).splitlines()]
    reasons = [ln for ln in lines if ln and not ln.startswith(boilerplate)]
    return f"{type(e).__name__}: {' '.join(reasons[:2])[:200].rstrip('.')}"
