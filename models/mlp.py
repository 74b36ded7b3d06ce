"""Multi-layer perceptron: layers of affine maps and activations, with dropout."""
from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn

from .base import Model, Params, Width, activation


class MLPParams(Params):
    hidden: list[Width] = Field(default=[128, 64], min_length=1)
    activation: Literal["relu", "gelu", "tanh", "silu"] = "relu"
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    batch_norm: bool = False


class MLP(Model):
    Params = MLPParams

    def __init__(self, input_shape, output_dim, task, params=None, class_weight=None):
        super().__init__(input_shape, output_dim, task, params or MLPParams(), class_weight)
        p = self.params
        layers, width = [], self.in_features
        for h in p.hidden:
            layers += [nn.Linear(width, h)]
            if p.batch_norm:
                layers += [nn.BatchNorm1d(h)]
            layers += [activation(p.activation), nn.Dropout(p.dropout)]
            width = h
        layers.append(nn.Linear(width, self.output_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x.reshape(x.shape[0], -1))  # (B, out)
