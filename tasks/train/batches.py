"""Batches of model rows as tensors: from Ray Data shards (training) or straight from Parquet."""
from __future__ import annotations

import numpy as np
import torch

from ..data import ROW


def to_tensors(b: dict, n_x: int, task: str) -> dict:
    """A numpy batch of Parquet columns (x0.., y or y0.., __row__) → tensors x (B, D), y, row."""
    x = np.stack([b[f"x{i}"] for i in range(n_x)], axis=1).astype("float32", copy=False)
    out = {"x": torch.from_numpy(np.ascontiguousarray(x)), "row": torch.from_numpy(np.array(b[ROW], dtype="int64"))}
    ycols = sorted((k for k in b if k == "y" or (k.startswith("y") and k[1:].isdigit())), key=lambda k: (len(k), k))
    if ycols:
        if task == "classification":
            out["y"] = torch.from_numpy(np.array(b["y"], dtype="int64"))
        else:
            out["y"] = torch.from_numpy(np.stack([b[k] for k in ycols], axis=1).astype("float32"))
    return out


def shard_batches(shard, n_x: int, task: str, batch_size: int, shuffle_seed: int | None = None):
    """Ray Data numpy batches → dicts of tensors."""
    kwargs = {"batch_size": batch_size, "batch_format": "numpy", "drop_last": False}
    if shuffle_seed is not None:
        kwargs.update(local_shuffle_buffer_size=4 * batch_size, local_shuffle_seed=shuffle_seed)
    for b in shard.iter_batches(**kwargs):
        yield to_tensors(b, n_x, task)


def table_share(table, n_x: int, task: str, rank: int = 0, world: int = 1) -> dict:
    """This worker's share of a split held whole as an Arrow table, as tensors (empty dict for no rows).
    With world > 1 each rank takes an equal, contiguous n // world rows (the remainder is left out, as Ray Data's
    equal streaming_split leaves it): DDP needs every rank to run the same number of batches."""
    n = table.num_rows // world
    part = table.slice(rank * n, n) if world > 1 else table
    if not part.num_rows:
        return {}
    return to_tensors({c: part.column(c).to_numpy(zero_copy_only=False) for c in part.schema.names}, n_x, task)


def tensor_batches(split: dict, batch_size: int, seed: int | None = None):
    """A split held as tensors, in batches: in order, or shuffled by a permutation seeded with `seed`."""
    n = len(split["x"]) if split else 0
    order = None if seed is None else torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    for i in range(0, n, batch_size):
        idx = slice(i, i + batch_size) if order is None else order[i:i + batch_size]
        yield {k: v[idx] for k, v in split.items()}


def local_batches(path: str, n_x: int, task: str, batch_size: int = 1024):
    """The same batches read straight from Parquet, for evaluation outside Ray: streamed, one Arrow
    batch at a time, so a split larger than memory is scored in bounded memory."""
    from ..data.stream import parquet_batches

    for part in parquet_batches(path, batch_size=batch_size):
        yield to_tensors({c: part.column(c).to_numpy(zero_copy_only=False) for c in part.schema.names}, n_x, task)


def whole_split(path: str, n_x: int, task: str) -> dict:
    """A split as one batch of tensors (empty dict for no rows): what a warm sweep worker keeps."""
    import pandas as pd

    frame = pd.read_parquet(path)
    return to_tensors({c: frame[c].to_numpy() for c in frame.columns}, n_x, task) if len(frame) else {}
