"""Linear regression: y = β0 + β1x1 + … + βnxn, fitted by minimising the squared error."""
from __future__ import annotations

from torch import nn

from .base import Model
from .params import LinearParams, tasks_of


class LinearRegression(Model):
    Params = LinearParams
    tasks = tasks_of("linear")

    def __init__(self, input_shape, output_dim, task, params=None, class_weight=None):
        super().__init__(input_shape, output_dim, task, params or LinearParams(), class_weight)
        self.linear = nn.Linear(self.in_features, self.output_dim)  # weight = β1..βn, bias = β0

    def forward(self, x):
        return self.linear(x.reshape(x.shape[0], -1))
