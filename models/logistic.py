"""Logistic regression: P(y=1|x) = 1 / (1 + e^-(β0 + Σβixi)); softmax over K > 2 classes."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Model
from .params import LogisticParams, tasks_of


class LogisticRegression(Model):
    Params = LogisticParams
    tasks = tasks_of("logistic")

    def __init__(self, input_shape, output_dim, task, params=None, class_weight=None):
        super().__init__(input_shape, output_dim, task, params or LogisticParams(), class_weight)
        self.binary = self.output_dim == 2
        # Two classes: one logit and the sigmoid of the formula; more: one logit per class.
        self.linear = nn.Linear(self.in_features, 1 if self.binary else self.output_dim)

    def forward(self, x):
        return self.linear(x.reshape(x.shape[0], -1))  # (B, 1) or (B, K)

    def predict(self, x):
        logits = self(x)
        if self.binary:
            p = torch.sigmoid(logits)
            return torch.cat([1 - p, p], dim=-1)
        return logits.softmax(-1)

    def loss(self, batch):
        if not self.binary:
            return super().loss(batch)
        logit = self(batch["x"]).view(-1)
        y = batch["y"].float().view(-1)
        weight = None
        if self.class_weight is not None:
            weight = self.class_weight[y.long()]
            weight = weight / weight.mean()  # Σ w_i l_i / Σ w_i, as F.cross_entropy(weight=...) does
        loss = F.binary_cross_entropy_with_logits(logit, y, weight=weight)
        acc = ((logit > 0).float() == y).float().mean()
        return loss, {"loss": loss.detach(), "accuracy": acc.detach()}
