"""`conductor predict` on the integration run: the evaluation reproduced exactly, new rows with unseen
categories, missing columns refused, nothing half-written."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures_data import customers

from tasks.data import Preprocessor
from tasks.errors import UserError

pytestmark = pytest.mark.integration


def test_predict_reproduces_the_evaluation_exactly(smoke_run, tmp_path):
    from tasks.predict import predict

    run_dir = Path(smoke_run["run_dir"])
    test_raw = run_dir.parents[1] / ".cache" / Preprocessor.load(run_dir).fingerprint / "test_raw"
    out = predict(run_dir, str(test_raw), tmp_path / "p.parquet")
    got = pd.read_parquet(out["out"]).sort_values("__row__").reset_index(drop=True)
    want = pd.read_parquet(run_dir / "predictions.parquet").sort_values("row").reset_index(drop=True)
    assert got["__row__"].tolist() == want["row"].tolist()
    assert got["prediction"].tolist() == want["prediction"].tolist()
    assert set(got["prediction"]) <= {"stays", "leaves"}  # the user's own labels come back
    for c in ("p_leaves", "p_stays"):
        np.testing.assert_allclose(got[c], want[c], rtol=0, atol=1e-6)


def test_predict_new_rows_with_unseen_categories_and_an_id(smoke_run, tmp_path):
    from tasks.predict import predict

    new = customers(50, seed=9).drop(columns=["churn"])
    new.loc[0, "plan"] = "enterprise"  # never seen in training
    new.loc[1, "region"] = None
    src = tmp_path / "new.csv"
    new.to_csv(src, index=False)
    out = predict(smoke_run["run_dir"], str(src), tmp_path / "p.csv", id_column="customer")
    got = pd.read_csv(out["out"])
    assert got["customer"].tolist() == new["customer"].tolist() and out["rows"] == 50
    assert got[["p_leaves", "p_stays"]].sum(axis=1).round(5).eq(1).all()
    with pytest.raises(UserError, match="columns \\['plan'\\] are missing"):
        new.drop(columns=["plan"]).to_csv(src, index=False)
        predict(smoke_run["run_dir"], str(src), tmp_path / "q.csv")
    assert not (tmp_path / "q.csv").exists()


def test_predict_streams_partition_by_partition_in_order(smoke_run, tmp_path, monkeypatch):
    """Five input files (five partitions), read two at a time: one output file each way, rows numbered across
    files in input order, the same predictions as one in-memory call, the Parquet written a row group per
    partition (appended, never gathered), and a progress line with what is left."""
    import pyarrow.parquet as pq

    from tasks.predict import batch, predict
    from tasks.predict.rows import predict_rows
    from tasks.runs.load import load_run

    monkeypatch.setattr(batch, "PROGRESS_EVERY_S", -1.0)
    monkeypatch.setattr(batch.os, "cpu_count", lambda: 2)
    frames = [customers(40 + 7 * i, seed=20 + i).drop(columns=["churn", "customer"]) for i in range(5)]
    folder = tmp_path / "in"
    folder.mkdir()
    for i, frame in enumerate(frames):
        frame.to_csv(folder / f"part-{i}.csv", index=False)
    whole = pd.concat(frames, ignore_index=True)
    want = predict_rows(load_run(smoke_run["run_dir"]), whole.assign(row=np.arange(len(whole))), "row")
    for out in (tmp_path / "p.parquet", tmp_path / "p.csv"):
        summary = predict(smoke_run["run_dir"], str(folder / "part-*.csv"), out)
        got = pd.read_parquet(out) if out.suffix == ".parquet" else pd.read_csv(out)
        assert summary["rows"] == len(whole) == len(got)
        assert got["row"].tolist() == list(range(len(whole)))
        assert got["prediction"].tolist() == want["prediction"].tolist()
        np.testing.assert_allclose(got["p_leaves"], want["p_leaves"], rtol=0, atol=1e-6)
    assert pq.ParquetFile(tmp_path / "p.parquet").num_row_groups == 5
