"""Batch inference: a run's preprocessor and model applied to new raw rows, streamed and written atomically.

Rows are read by Dask a few partitions at a time (as many as there are cores), predicted, and appended to
the output (CSV rows, or Parquet row groups through one writer), so an INPUT larger than memory needs
memory for a few partitions only. A forecast reads the whole series (its windows cross partitions).
"""
from __future__ import annotations

import glob
import os
import sys
import time
from pathlib import Path

import dask
import numpy as np
import pandas as pd

from ..data import ROW, read_table
from ..errors import UserError
from ..runs.load import load_run
from ..staged import staged
from .rows import predict_rows

PROGRESS_EVERY_S = 5.0  # a progress line at most this often, and only once a prediction takes longer


def _local_inputs(input_path: str) -> list[Path]:
    """The local files and folders INPUT names (a path, a glob or file://); none for other URLs."""
    path = input_path.removeprefix("file://")
    if "://" in path:
        return []
    return [Path(p) for p in glob.glob(path)] if any(c in path for c in "*?[") else [Path(path)]


def _check_out(run_dir: Path, input_path: str, out_path: Path) -> None:
    """--out must not replace what this command reads: its own INPUT, or a file of the run it applies."""
    out = out_path.resolve()
    if out.is_relative_to(run_dir.resolve()):
        raise UserError(f"--out: {str(out_path)!r} is inside the run directory {str(run_dir)!r}; "
                        "write predictions somewhere else (a run directory is never changed after it is registered)")
    for src in _local_inputs(input_path):
        src = src.resolve()
        if out == src or out.is_relative_to(src):
            raise UserError(f"--out: {str(out_path)!r} is the INPUT {input_path!r} (or inside it); refusing to "
                            "overwrite the rows it reads, choose another --out")


def predict(run_dir: str | Path, input_path: str, out_path: str | Path, id_column: str | None = None) -> dict:
    """Write predictions for every row of INPUT to OUTPUT (.csv or .parquet), atomically."""
    run_dir = str(Path(run_dir))
    prep = load_run(run_dir).preprocessor
    out_path = Path(out_path)
    if not out_path.name.lower().endswith((".csv", ".parquet")):
        raise UserError(f"--out: {str(out_path)!r} must end in .csv or .parquet")
    _check_out(Path(run_dir), input_path, out_path)
    ddf = read_table(input_path, "INPUT")
    missing = prep.missing_columns(ddf.columns)
    if missing:
        raise UserError(f"INPUT: columns {missing} are missing from {input_path!r}; the model was trained on "
                        f"{prep.features}")
    if id_column and id_column not in ddf.columns:
        raise UserError(f"--id: column {id_column!r} not in {input_path!r}; columns are {list(ddf.columns)}")
    id_column = id_column or (ROW if ROW in ddf.columns else None)
    run, csv = load_run(run_dir), out_path.name.lower().endswith(".csv")
    with staged(out_path, directory=False) as tmp:
        if prep.task == "forecasting":  # windows cross partitions: the series is read whole
            frame = predict_rows(run, ddf.compute(), id_column)
            rows = _Writer(tmp, csv).write(frame).close()
        else:
            rows = _stream(ddf, run, id_column, _Writer(tmp, csv))
    return {"run_dir": run_dir, "input": input_path, "out": str(out_path), "rows": rows, "task": prep.task}


class _Writer:
    """Appends frames to one CSV file or one Parquet file (a row group each); returns the rows written."""

    def __init__(self, path: Path, csv: bool):
        self.path, self.csv, self.rows, self.parquet = path, csv, 0, None

    def write(self, frame: pd.DataFrame) -> _Writer:
        if self.csv:
            frame.to_csv(self.path, mode="a" if self.rows else "w", header=not self.rows, index=False)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self.parquet is None:
                self.parquet = pq.ParquetWriter(self.path, table.schema)
            self.parquet.write_table(table.cast(self.parquet.schema))
        self.rows += len(frame)
        return self

    def close(self) -> int:
        if self.parquet is not None:
            self.parquet.close()
        return self.rows


def _stream(ddf, run, id_column: str | None, writer: _Writer) -> int:
    """Read `ddf` a batch of partitions at a time (read in parallel), predict each, append it: memory holds one
    batch. Rows without an id column are numbered as they come. Progress, with an estimate, on stderr."""
    parts = ddf.to_delayed()
    batch, t0, shown = max(1, os.cpu_count() or 1), time.monotonic(), time.monotonic()
    first = predict_rows(run, ddf._meta.assign(**({} if id_column else {"row": np.zeros(0, "int64")})),
                         id_column or "row")
    for i in range(0, len(parts), batch):
        for pdf in dask.compute(*parts[i:i + batch]):
            if id_column is None:
                pdf = pdf.assign(row=np.arange(writer.rows, writer.rows + len(pdf), dtype="int64"))
            out = predict_rows(run, pdf, id_column or "row")
            writer.write(out)
        done = min(i + batch, len(parts))
        if time.monotonic() - shown > PROGRESS_EVERY_S and done < len(parts):
            shown, elapsed = time.monotonic(), time.monotonic() - t0
            print(f"predict: {done}/{len(parts)} partitions, {writer.rows} rows, {elapsed:.0f}s, "
                  f"~{elapsed / done * (len(parts) - done):.0f}s left", file=sys.stderr, flush=True)
    if writer.rows == 0:
        writer.write(first)  # an empty INPUT: the header (CSV) or the schema (Parquet) alone
    return writer.close()
