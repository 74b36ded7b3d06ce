"""Preprocessing out of core (issue 13): one Dask worker process with a memory limit, and a data set written
to files beforehand, in chunks, whose size as pandas frames is larger than that limit. Preprocessing
completes, the nanny never restarts the worker, every row lands in one split, the fitted statistics equal
pandas' on the whole train split, and the peak RSS of this process and all its descendants stays within
1.2x the worker's limit plus the peak of the same tree preprocessing a 1 MB file.

The rows are wide in memory and cheap to process (3 numbers, one text column of ~1 kB values, a label), so
that a data set over the limit fits the test's time budget. It is one CSV file, read in blocks of
tasks/data/sources.py CSV_BLOCK (16 MB): a block costs a worker ~6x its size to read, ~11x with the transform,
and at 64 MB blocks the nanny killed this worker over and over (KilledWorker)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from rss_tree import TreeRSS

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

LIMIT = 512 * 2**20  # the worker's floor (pandas, pyarrow, dask, tasks.data imported) is ~250-310 MiB
OVER = 1.05  # the data set's size as pandas frames, over LIMIT
FILE_ROWS = 0  # rows per file; 0: the whole data set in one CSV, read in CSV_BLOCK partitions
WIDTH, K = 1000, 4.0
NUM = ["a", "b", "c"]


def write_chunks(folder: Path, target_bytes: float, rows: int = FILE_ROWS, seed: int = 0) -> tuple[int, int]:
    """CSV files of `rows` rows each (0: chunks of 10,000 rows appended to one file) until their size as pandas
    frames reaches target_bytes; returns (rows, bytes as pandas frames)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    kinds = np.array([f"kind {i} " + "abcdefgh"[i] * (WIDTH - 7) for i in range(8)], dtype=object)
    total = size = 0
    one, rows = rows == 0, rows or 10_000
    while size < target_bytes:
        x = rng.normal([0.0, 3.0, -2.0], [1.0, 2.0, 0.5], (rows, 3)) + rng.exponential(1.0, (rows, 3))
        x[rng.random((rows, 3)) < 0.05] = np.nan
        df = pd.DataFrame(x, columns=NUM)
        df["kind"] = np.where(rng.random(rows) < 0.03, None, kinds[rng.integers(0, 8, rows)])
        df["label"] = (x[:, 0] + rng.normal(0, 1, rows) > 1).astype("int64")
        table = pa.Table.from_pandas(df, preserve_index=False)
        with open(folder / ("part-00000.csv" if one else f"part-{total // rows:05d}.csv"), "ab") as f:
            pacsv.write_csv(table, f, pacsv.WriteOptions(include_header=total == 0 or not one))
        size += int(df.memory_usage(deep=True).sum())
        total += rows
    return total, size


class NannyRestarts(logging.Handler):
    """What the nanny says when it kills its worker (over the memory budget, or dead) and restarts it."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.said: list[str] = []

    def emit(self, record):
        if "estart" in (text := record.getMessage()):
            self.said.append(text)


@pytest.fixture
def small_worker(tmp_path):
    """A LocalCluster of one worker process (1 thread, LIMIT, the nanny's default thresholds) and a Client
    that is the default only inside the test."""
    from distributed import Client, LocalCluster

    nanny = [logging.getLogger(n) for n in ("distributed.nanny", "distributed.nanny.memory")]
    levels, handler = [n.level for n in nanny], NannyRestarts()
    for n in nanny:  # distributed.nanny.memory's records reach the handler through distributed.nanny
        n.setLevel(logging.WARNING)
    nanny[0].addHandler(handler)
    cluster = client = None
    try:
        cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, memory_limit=LIMIT,
                               dashboard_address=":0", local_directory=str(tmp_path / "dask"))
        client = Client(cluster, set_as_default=True)
        yield client, handler
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
        nanny[0].removeHandler(handler)
        for n, level in zip(nanny, levels, strict=True):
            n.setLevel(level)


def data_spec(source: str):
    from tasks.spec import Data

    return Data.model_validate({
        "source": source, "task": "classification", "target": "label",
        "split": {"val": 0.15, "test": 0.15, "seed": 0},
        "preprocessing": {"impute": "median", "categorical": "onehot", "clip_outliers": K, "scale": "standard"}})


def rows_of(prepared, split: str, columns=None) -> pd.DataFrame:
    return pq.read_table(prepared.path(split), columns=columns).to_pandas()


def raw_train(folder: Path, rows: int, train_rows: np.ndarray) -> pd.DataFrame:
    """The train rows of every file, read by pandas one file at a time, the text column as categories."""
    train = np.zeros(rows, dtype=bool)
    train[train_rows] = True
    parts, start = [], 0
    for f in sorted(folder.glob("part-*.csv")):
        df = pd.read_csv(f)
        parts.append(df[train[start:start + len(df)]].astype({"kind": "category"}))
        start += len(df)
    return pd.concat(parts, ignore_index=True)


def relative(a: float, b: float, size: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), size, 1e-300)


def check_statistics(prep, train: pd.DataFrame, out_train: pd.DataFrame) -> None:
    """The preprocessor's statistics against pandas on the whole train split (the medians within a rank
    bound: Dask's quantile is approximate; the scaler with conductor's medians, as it fitted)."""
    kind = train["kind"].astype(object)
    assert prep.categories == {"kind": sorted(kind.dropna().unique())}
    assert prep.impute["values"]["kind"] == kind.value_counts().sort_index().idxmax()
    assert dict(zip(prep.classes, prep.class_counts, strict=True)) == train["label"].value_counts().to_dict()
    mu, sd = train[NUM].mean(), train[NUM].std()
    for c in NUM:
        for got, want in zip(prep.clip[c], (mu[c] - K * sd[c], mu[c] + K * sd[c]), strict=True):
            assert relative(got, want, 0.0) <= 1e-9, (c, got, want)
        med = prep.impute["values"][c]
        assert abs((train[c] < med).sum() / train[c].notna().sum() - 0.5) <= 0.01, (c, med)
    enc = {c: train[c].fillna(prep.impute["values"][c]).clip(*prep.clip[c]) for c in NUM}
    filled = kind.fillna(prep.impute["values"]["kind"])
    enc |= {f"kind={v}": (filled == v).astype("float64") for v in prep.categories["kind"]}
    enc = pd.DataFrame(enc)[prep.columns].astype("float32").astype("float64")
    center, width = enc.mean(), enc.std(ddof=0)
    for c in prep.columns:
        assert relative(prep.scale["center"][c], center[c], width[c]) <= 1e-9, c
        assert relative(prep.scale["scale"][c], width[c], width[c]) <= 1e-9, c
    x = out_train.filter(regex=r"^x\d+$").astype("float64")
    assert np.isfinite(x.to_numpy()).all()
    assert (x.mean().abs() < 1e-5).all() and ((x.std(ddof=0) - 1).abs() < 1e-4).all()


def test_preprocessing_a_data_set_larger_than_the_workers_memory(small_worker, tmp_path):
    from tasks.data import ROW, preprocess

    client, nanny = small_worker
    small, big = tmp_path / "small", tmp_path / "big"
    write_chunks(small, 1e6, rows=1000)  # ~1 MB on disk: the baseline
    rows, size = write_chunks(big, OVER * LIMIT)
    assert size > LIMIT
    pids = client.run(os.getpid)
    with TreeRSS() as base:
        preprocess(data_spec(str(small / "*.csv")), tmp_path / "home-small", log=lambda *_: None)
    with TreeRSS() as rss:
        prepared = preprocess(data_spec(str(big / "*.csv")), tmp_path / "home", log=print)
    assert rss.samples >= 20 and rss.gap < 2.0, (rss.samples, rss.gap)  # sampled all along, every 0.2 s
    assert client.run(os.getpid) == pids and not nanny.said, ("the nanny restarted the worker", nanny.said)
    bound = 1.2 * LIMIT + base.peak
    print(f"{rows} rows, {size / 2**20:.0f} MiB as pandas frames, worker limit {LIMIT / 2**20:.0f} MiB; peak RSS "
          f"of the process tree {rss.peak / 2**20:.0f} MiB (1 MB file: {base.peak / 2**20:.0f} MiB, "
          f"bound {bound / 2**20:.0f} MiB)")
    assert rss.peak <= bound

    prep = prepared.preprocessor
    split_rows = {s: rows_of(prepared, s, [ROW])[ROW].to_numpy() for s in ("train", "val", "test")}
    assert {s: len(r) for s, r in split_rows.items()} == prep.counts
    assert sum(prep.counts.values()) == rows
    every = np.sort(np.concatenate(list(split_rows.values())))
    assert (every == np.arange(rows)).all()  # each row in exactly one split
    check_statistics(prep, raw_train(big, rows, split_rows["train"]), rows_of(prepared, "train"))
