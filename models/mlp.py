"""Multi-layer perceptron: layers of affine maps and activations, with dropout."""
from __future__ import annotations

from torch import nn

from .base import Model, activation
from .params import MLPParams, tasks_of


class MLP(Model):
    Params = MLPParams
    tasks = tasks_of("mlp")

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
