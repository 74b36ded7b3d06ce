"""What every model family shares: the constructor signature, the task heads and `loss(batch)`."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .params import SUPERVISED_TASKS, Params, Width  # noqa: F401 - Width: here too for who reads it from base


class Model(nn.Module):
    """A model sees flat float rows `x` (B, D) and reshapes them to `input_shape` itself.

    `forward(x)` gives raw outputs, `predict(x)` gives what a user wants back (class
    probabilities or values), `loss(batch)` gives `(loss, metrics)` so the training loop never
    branches on the model type.
    """

    Params = Params
    tasks: tuple[str, ...] = SUPERVISED_TASKS
    reads_target = False  # True: the constructor takes `target_index` (forecasting's target among the features)
    saved_defaults: dict = {}  # params a model.json written before they existed means (load_model fills them in)

    def __init__(self, input_shape, output_dim: int, task: str, params: Params,
                 class_weight: list[float] | None = None):
        super().__init__()
        if task not in self.tasks:
            raise ValueError(f"model {type(self).__name__} does not do task {task!r}; it does {list(self.tasks)}")
        self.input_shape = tuple(int(s) for s in input_shape)
        self.output_dim = int(output_dim)
        self.task = task
        self.params = params
        weight = torch.tensor(class_weight, dtype=torch.float32) if class_weight else None
        self.register_buffer("class_weight", weight, persistent=False)

    @property
    def in_features(self) -> int:
        n = 1
        for s in self.input_shape:
            n *= s
        return n

    def shaped(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.input_shape)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        out = self(x)
        if self.task == "classification":
            return out.softmax(dim=-1)
        return out

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        out = self(batch["x"])
        y = batch["y"]
        if self.task == "classification":
            loss = F.cross_entropy(out, y.long().view(-1), weight=self.class_weight)
            acc = (out.argmax(-1) == y.long().view(-1)).float().mean()
            return loss, {"loss": loss.detach(), "accuracy": acc.detach()}
        loss = F.mse_loss(out, y.view_as(out).float())
        return loss, {"loss": loss.detach()}


def activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}[name]()
