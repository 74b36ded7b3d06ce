"""Names to model families; the one place to add a family."""
from __future__ import annotations

import json
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
    return model_class(name).Params.model_validate(params or {})


def build_model(name: str, input_shape, output_dim: int, task: str, params: dict | None = None,
                class_weight: list[float] | None = None) -> nn.Module:
    cls = model_class(name)
    return cls(input_shape, output_dim, task, validate_params(name, params), class_weight=class_weight)


def describe(model: Model, name: str) -> dict:
    """What `model.json` holds: enough to rebuild the module."""
    return {"name": name, "params": model.params.model_dump(), "input_shape": list(model.input_shape),
            "output_dim": model.output_dim, "task": model.task}


def save_model(model: Model, name: str, directory: str | Path) -> None:
    directory = Path(directory)
    torch.save(model.state_dict(), directory / "model.pt")
    (directory / "model.json").write_text(json.dumps(describe(model, name), indent=2))


def load_model(directory: str | Path, map_location: str = "cpu") -> Model:
    """Rebuild from `model.json` and load `model.pt` with `weights_only=True`."""
    directory = Path(directory)
    meta = json.loads((directory / "model.json").read_text())
    model = build_model(meta["name"], meta["input_shape"], meta["output_dim"], meta["task"], meta["params"])
    state = torch.load(directory / "model.pt", map_location=map_location, weights_only=True)
    model.load_state_dict(state)
    return model.eval()
