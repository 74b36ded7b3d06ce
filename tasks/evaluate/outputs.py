"""The one batch path: a model over batches → its outputs (and loss metrics when targets are there).

Validation every epoch, the test evaluation, `conductor predict` and serving all go through
`predict_all`, so they see the same numbers.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from ..data import Preprocessor
from . import metrics as M

BATCH = 1024


def _to(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def array_batches(x: np.ndarray, batch_size: int = BATCH):
    """Model inputs (N, D) as batches {"x": tensor}, for rows that have no target."""
    for i in range(0, len(x), batch_size):
        yield {"x": torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size], dtype=np.float32))}


NO_INPUTS = np.empty(0, dtype="int64")  # x_rows for a pass that keeps no inputs (validation every epoch)


@torch.no_grad()
def predict_all(model: nn.Module, batches: Iterable[dict], device="cpu", with_loss: bool = True,
                x_rows: np.ndarray | None = None) -> dict:
    """Run the model over batches; returns loss metrics and stacked outputs, targets, row ids and inputs.

    Outputs, targets and row ids are kept for every row (a few numbers each); the inputs are the bulk of a
    split, so `x_rows` (sorted positions in the stream) says which rows' inputs to keep: None keeps all,
    NO_INPUTS none. "x_rows" in the result names the positions of the rows in "x" (None: all)."""
    model.eval()
    sums: dict[str, float] = {}
    outs, ys, rows, xs = [], [], [], []
    n = 0
    for batch in batches:
        batch = _to(batch, device)
        b = len(batch["x"])
        if with_loss:
            _, logs = model.loss(batch)
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + float(v) * b
        outs.append(model.predict(batch["x"]).float().cpu().numpy())
        for key, parts in (("y", ys), ("row", rows)):
            if key in batch:
                parts.append(batch[key].cpu().numpy())
        if x_rows is None:
            xs.append(batch["x"].cpu().numpy())
        else:
            lo, hi = np.searchsorted(x_rows, [n, n + b])
            if hi > lo:
                xs.append(batch["x"].cpu().numpy()[x_rows[lo:hi] - n])
        n += b

    def cat(parts):
        return np.concatenate(parts) if parts else None

    return {"logs": {k: v / max(n, 1) for k, v in sums.items()}, "out": cat(outs), "y": cat(ys),
            "row": cat(rows), "x": cat(xs), "x_rows": x_rows, "n": n}


def sample_rows(n: int, limit: int, seed: int) -> np.ndarray | None:
    """Sorted positions of a seeded sample of `limit` of `n` rows; None when all `n` fit."""
    if n <= limit:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def model_outputs(model: nn.Module, x: np.ndarray, device="cpu") -> np.ndarray:
    """Outputs for model inputs (N, D) without targets: probabilities, values or reconstructions."""
    out = predict_all(model, array_batches(x), device, with_loss=False)["out"]
    return out if out is not None else np.zeros((0, max(getattr(model, "output_dim", 1), 1)), "float32")


def score(task: str, pred: dict, prep: Preprocessor) -> dict:
    """Task metrics of one split's predictions, in the target's own units."""
    logs = dict(pred["logs"])
    if pred["n"] == 0:
        return logs
    if not np.isfinite(pred["out"]).all():  # a diverged model: its loss says so, no metric can be computed
        return {**logs, "loss": float("nan")}
    if task == "classification":
        logs.update(M.classification(pred["y"].astype(int).reshape(-1), pred["out"]))
    elif task in ("regression", "forecasting"):
        logs.update(M.regression(prep.decode_target(pred["y"]), prep.decode_target(pred["out"])))
    return logs
