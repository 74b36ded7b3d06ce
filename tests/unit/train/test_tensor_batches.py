"""A split held as tensors (a warm sweep worker's, a small split's share on a Ray Train worker): every row once
per epoch, a seeded shuffle that repeats for the same seed, in order without one."""
from __future__ import annotations

import torch

from tasks.train import tensor_batches


def test_tensor_batches_cover_every_row_once():
    split = {"x": torch.arange(20.0).reshape(10, 2), "y": torch.arange(10), "row": torch.arange(100, 110)}
    ordered = list(tensor_batches(split, 4))
    assert [len(b["y"]) for b in ordered] == [4, 4, 2]
    assert torch.equal(torch.cat([b["row"] for b in ordered]), split["row"])
    one, again, other = (list(tensor_batches(split, 3, seed)) for seed in (7, 7, 8))
    rows = torch.cat([b["row"] for b in one])
    assert sorted(rows.tolist()) == list(range(100, 110)) and not torch.equal(rows, split["row"])
    assert torch.equal(rows, torch.cat([b["row"] for b in again]))
    assert not torch.equal(rows, torch.cat([b["row"] for b in other]))
    for b in one:  # the columns of a row stay together
        assert torch.equal(b["x"][:, 0], 2.0 * b["y"]) and torch.equal(b["row"], b["y"] + 100)
    assert list(tensor_batches({}, 4, 1)) == []


def test_table_share_gives_each_rank_an_equal_contiguous_share():
    import pyarrow as pa

    from tasks.train import table_share

    table = pa.table({"x0": [float(i) for i in range(7)], "y": list(range(7)), "__row__": list(range(100, 107))})
    whole = table_share(table, 1, "classification")
    assert whole["row"].tolist() == list(range(100, 107)) and whole["x"].shape == (7, 1)
    shares = [table_share(table, 1, "classification", rank, 2) for rank in (0, 1)]
    assert [s["row"].tolist() for s in shares] == [[100, 101, 102], [103, 104, 105]]  # 7 // 2 each, as DDP needs
    assert torch.equal(shares[1]["x"][:, 0], shares[1]["y"].float())
    assert table_share(table.slice(0, 0), 1, "classification") == {}
