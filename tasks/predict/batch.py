"""Batch inference: a run's preprocessor and model applied to new raw rows on Dask, written atomically."""
from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path

import dask.dataframe as dd
import pandas as pd

from ..data import ROW, read_table
from ..errors import UserError
from ..runs.load import load_run
from ..staged import staged
from .rows import predict_rows


def _partition(pdf: pd.DataFrame, run_dir: str, id_column: str | None) -> pd.DataFrame:
    return predict_rows(load_run(run_dir), pdf, id_column)  # each Dask worker loads the run once


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
    if id_column is None:  # number the rows as they come, across partitions
        ddf = ddf.assign(row=1).assign(row=lambda d: d["row"].cumsum() - 1)
        id_column = "row"
    if prep.task == "forecasting":
        frame = predict_rows(load_run(run_dir), ddf.compute(), id_column if id_column != "row" else None)
        result = dd.from_pandas(frame, npartitions=1)
    else:
        meta = _partition(ddf._meta.head(0), run_dir, id_column)
        result = ddf.map_partitions(_partition, run_dir, id_column, meta=meta)
    with staged(out_path, directory=False) as tmp:
        if out_path.name.lower().endswith(".csv"):
            result.to_csv(str(tmp), single_file=True, index=False)
        else:
            parts = Path(f"{tmp}.parts")
            try:
                result.repartition(npartitions=1).to_parquet(str(parts), write_index=False)
                os.replace(next(parts.glob("*.parquet")), tmp)
            finally:
                shutil.rmtree(parts, ignore_errors=True)
    rows = len(pd.read_parquet(out_path, columns=[]) if out_path.suffix == ".parquet" else pd.read_csv(out_path, usecols=[0]))
    return {"run_dir": run_dir, "input": input_path, "out": str(out_path), "rows": rows, "task": prep.task}
