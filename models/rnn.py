"""Recurrent network: h_t = σ(W_hh h_{t−1} + W_xh x_t + b_h), with cell rnn, lstm or gru."""
from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn

from .base import Model, Params, Width

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RNNParams(Params):
    cell: Literal["rnn", "lstm", "gru"] = "lstm"
    hidden_size: Width = 64
    num_layers: int = Field(default=1, ge=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


class RNN(Model):
    """Reads a window (B, T, F) and maps the last hidden state to the output (horizon or classes)."""

    Params = RNNParams

    def __init__(self, input_shape, output_dim, task, params=None, class_weight=None):
        super().__init__(input_shape, output_dim, task, params or RNNParams(), class_weight)
        if len(self.input_shape) != 2:
            raise ValueError(f"rnn needs input shape [steps, features], got {list(self.input_shape)}")
        p = self.params
        self.rnn = CELLS[p.cell](
            input_size=self.input_shape[1], hidden_size=p.hidden_size, num_layers=p.num_layers,
            dropout=p.dropout if p.num_layers > 1 else 0.0, batch_first=True,
        )
        self.head = nn.Linear(p.hidden_size, self.output_dim)

    def forward(self, x):
        out, _ = self.rnn(self.shaped(x))  # (B, T, H)
        return self.head(out[:, -1])  # (B, out)
