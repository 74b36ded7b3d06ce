"""Row numbering, the random train/val/test split of tabular rows, and oversampling of rare classes."""
from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd

from .preprocessor import ROW

SPLIT = "__split__"
SPLITS = ("train", "val", "test")


def number_rows(ddf: dd.DataFrame, lengths: list[int] | None = None) -> dd.DataFrame:
    """A __row__ id per row, in source order across partitions: it follows the row into every split.
    `lengths`: the rows of each partition, when an earlier pass counted them (else counted here, a pass)."""
    if lengths is None:
        lengths = ddf.map_partitions(len).compute().tolist()
    if len(lengths) != ddf.npartitions:
        raise ValueError(f"number_rows: {len(lengths)} partition lengths for {ddf.npartitions} partitions")
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).tolist()

    def number(pdf, partition_info=None):
        start = offsets[partition_info["number"]] if partition_info else 0
        pdf = pdf.copy()
        pdf[ROW] = np.arange(start, start + len(pdf), dtype="int64")
        return pdf

    meta = ddf._meta.assign(**{ROW: np.int64(0)})
    return ddf.map_partitions(number, meta=meta)


def _assign(pdf: pd.DataFrame, seed: int, val: float, test: float, partition_info=None) -> pd.DataFrame:
    part = partition_info["number"] if partition_info else 0
    u = np.random.default_rng([seed, part]).random(len(pdf))
    pdf = pdf.copy()
    pdf[SPLIT] = np.where(u < test, 2, np.where(u < test + val, 1, 0)).astype("int8")
    return pdf


def assign_split(ddf: dd.DataFrame, seed: int, val: float, test: float) -> dd.DataFrame:
    """A __split__ column: 0 train, 1 val, 2 test, drawn per row from a generator seeded per partition."""
    meta = ddf._meta.assign(**{SPLIT: np.int8(0)})
    return ddf.map_partitions(_assign, seed, val, test, meta=meta)


def split_rows(ddf: dd.DataFrame, features: list[str], data) -> dd.DataFrame:
    """assign_split by data.split; with data.preprocessing.impute: drop, rows missing a feature go after it."""
    ddf = assign_split(ddf, data.split.seed, data.split.val, data.split.test)
    return ddf.dropna(subset=features) if data.preprocessing.impute == "drop" else ddf


def oversample(pdf: pd.DataFrame, class_counts: list[int]) -> pd.DataFrame:
    """Repeat each row of class c round(n_max / n_c) times, so the classes weigh about the same."""
    top = max(class_counts)
    reps = np.array([max(1, round(top / max(c, 1))) for c in class_counts])
    return pdf.loc[pdf.index.repeat(reps[pdf["y"].to_numpy()])].reset_index(drop=True)


def class_warnings(prep, labels: pd.Series | None, data) -> list[str]:
    """One-line warnings about the classes: labels that only val/test rows hold (the model never learns
    them and their rows drop out of the metrics), and classes under 1% of the rows."""
    if labels is None or not len(labels):
        return []
    total, out = int(labels.sum()), []
    learned = {str(c) for c in prep.classes or []}
    unseen = {k: int(n) for k, n in labels.items() if k not in learned}
    if unseen:
        out.append(f"data.target: label(s) {sorted(unseen)} of {data.target!r} occur only in the val/test splits "
                   f"({sum(unseen.values())} rows); the model never sees them in training and those rows are left "
                   "out of its metrics; add rows of them or drop them from the source")
    rare = {k: int(n) for k, n in labels.items() if k in learned and n < 0.01 * total}
    if rare:
        fix = " (data.preprocessing.balance: class_weight or oversample helps)" \
            if data.preprocessing.balance == "none" else ""
        out.append(f"data.target: class(es) {dict(sorted(rare.items()))} of {data.target!r} hold under 1% of the "
                   f"{total} rows; their metrics rest on few rows{fix}")
    return out
