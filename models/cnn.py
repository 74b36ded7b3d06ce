"""Convolutional network: y_ij = Σ_k x_{i−s_k, j−t_k} · w_k + b, activations, pooling."""
from __future__ import annotations

from torch import nn

from .base import Model, activation
from .params import CNNParams, tasks_of


class CNN(Model):
    Params = CNNParams
    tasks = tasks_of("cnn")

    def __init__(self, input_shape, output_dim, task, params=None, class_weight=None):
        super().__init__(input_shape, output_dim, task, params or CNNParams(), class_weight)
        if len(self.input_shape) != 3:
            raise ValueError(f"cnn needs data.shape [channels, height, width], got {list(self.input_shape)}")
        p = self.params
        c, h, w = self.input_shape
        blocks = []
        for out_c in p.channels:
            # "same" keeps H x W for even kernels too (k // 2 grew them by one and broke the head's size)
            blocks += [nn.Conv2d(c, out_c, p.kernel_size, padding="same"), activation(p.activation)]
            if min(h, w) >= 2:  # pool while there is room: 8x8 -> 4x4 -> 2x2
                blocks.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            c = out_c
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(p.dropout), nn.Linear(c * h * w, p.hidden),
            activation(p.activation), nn.Dropout(p.dropout), nn.Linear(p.hidden, self.output_dim),
        )

    def forward(self, x):
        return self.head(self.features(self.shaped(x)))  # (B, C, H, W) -> (B, out)
