"""Batch inference: a run directory's preprocessor and model applied to new raw rows, on Dask."""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
import torch

from .data import expand_source
from .errors import UserError
from .forecast import order_by_time, series_xy, windows
from .preprocess import ROW, decode_target

BATCH = 1024
_MODELS: dict[str, torch.nn.Module] = {}


def load_run(run_dir: str | Path) -> tuple[torch.nn.Module, dict]:
    """The model (weights_only load) and the fitted preprocessor state of a run directory."""
    from models import load_model

    run_dir = Path(run_dir)
    missing = [f for f in ("model.pt", "model.json", "preprocessor.json") if not (run_dir / f).is_file()]
    if missing:
        raise UserError(f"RUN_DIR: {str(run_dir)!r} is not a run directory (missing {missing})")
    key = str(run_dir.resolve())
    if key not in _MODELS:
        _MODELS[key] = load_model(run_dir)
    return _MODELS[key], json.loads((run_dir / "preprocessor.json").read_text())


@torch.no_grad()
def _outputs(model, x: np.ndarray) -> np.ndarray:
    outs = [model.predict(torch.from_numpy(np.ascontiguousarray(x[i:i + BATCH], dtype=np.float32))).numpy() for i in range(0, len(x), BATCH)]
    return np.concatenate(outs) if outs else np.zeros((0, max(model.output_dim, 1)), "float32")


def predict_frame(pdf: pd.DataFrame, run_dir: str, id_column: str | None) -> pd.DataFrame:
    """One partition of raw rows → predictions in the user's terms, next to an id column."""
    from .preprocess import encode

    model, state = load_run(run_dir)
    x = encode(pdf, state).to_numpy().copy()
    out = pd.DataFrame({id_column: pdf[id_column].to_numpy()}) if id_column else pd.DataFrame(index=range(len(pdf)))
    result = _outputs(model, x)
    task = state["task"]
    if task == "classification":
        classes = state["classes"]
        labels = np.asarray(classes, dtype=object)
        picked = labels[result.argmax(-1)] if len(result) else labels[:0]
        # explicit dtype: an empty partition (Dask's meta) must say what the labels are, not float64
        out["prediction"] = (pd.Series(picked, dtype="int64") if all(isinstance(c, int) for c in classes)
                             else pd.Series(picked.astype(str), dtype="str"))
        for i, c in enumerate(classes):
            out[f"p_{c}"] = result[:, i]
    elif task == "regression":
        out["prediction"] = decode_target(result, state).reshape(-1)
    else:  # generative: how well the model reconstructs each row (an anomaly score)
        out["recon_mse"] = ((result - x) ** 2).mean(-1)
    return out


def predict_series(pdf: pd.DataFrame, run_dir: str, id_column: str | None) -> pd.DataFrame:
    """Forecasting: one forecast per window of the time-ordered input, labelled by its last step."""
    model, state = load_run(run_dir)
    window, horizon = state["window"], state["horizon"]
    pdf = order_by_time(pdf, state.get("time_column"))
    if len(pdf) < window:
        raise UserError(f"INPUT: {len(pdf)} rows, but the model reads windows of {window}; give at least {window}")
    x, target = series_xy(pdf, state)
    # windows() wants room for the targets; forecast from every window, including the last one
    padded = np.concatenate([target, np.zeros(horizon, target.dtype)])
    xp = np.concatenate([x, np.zeros((horizon, x.shape[1]), x.dtype)])
    inputs, _, first = windows(xp, padded, window, horizon)
    last = first - 1
    keep = last < len(pdf)
    inputs, last = inputs[keep], last[keep]
    preds = decode_target(_outputs(model, inputs), state)
    label = id_column or state.get("time_column")
    out = pd.DataFrame({label: pdf[label].to_numpy()[last]}) if label else pd.DataFrame({"row": last})
    for h in range(horizon):
        out[f"prediction_t+{h + 1}"] = preds[:, h]
    return out


def read_input(path: str) -> dd.DataFrame:
    kind, files, _ = expand_source(path)
    try:
        return dd.read_csv(files, assume_missing=True) if kind == "csv" else dd.read_parquet(files)
    except Exception as e:  # noqa: BLE001 - the user's file
        raise UserError(f"INPUT: cannot read {path!r} as {kind} ({type(e).__name__}: {str(e).splitlines()[0]})") from None


def predict(run_dir: str | Path, input_path: str, out_path: str | Path, id_column: str | None = None) -> dict:
    """Write predictions for every row of INPUT to OUTPUT (.csv or .parquet), atomically."""
    run_dir = str(Path(run_dir))
    _, state = load_run(run_dir)
    out_path = Path(out_path)
    if not out_path.name.lower().endswith((".csv", ".parquet")):
        raise UserError(f"--out: {str(out_path)!r} must end in .csv or .parquet")
    ddf = read_input(input_path)
    needed = list(state["features"])
    missing = [c for c in needed if c not in ddf.columns]
    if missing:
        raise UserError(f"INPUT: columns {missing} are missing from {input_path!r}; the model was trained on "
                        f"{needed}")
    if id_column and id_column not in ddf.columns:
        raise UserError(f"--id: column {id_column!r} not in {input_path!r}; columns are {list(ddf.columns)}")
    id_column = id_column or (ROW if ROW in ddf.columns else None)
    if id_column is None:  # number the rows as they come, across partitions
        ddf = ddf.assign(row=1).assign(row=lambda d: d["row"].cumsum() - 1)
        id_column = "row"
    if state["task"] == "forecasting":
        result = dd.from_pandas(predict_series(ddf.compute(), run_dir, id_column if id_column != "row" else None),
                                npartitions=1)
    else:
        meta = predict_frame(ddf._meta.head(0), run_dir, id_column)
        result = ddf.map_partitions(predict_frame, run_dir, id_column, meta=meta)
    tmp = out_path.parent / f".tmp-{uuid.uuid4().hex[:6]}-{out_path.name}"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if out_path.name.lower().endswith(".csv"):
            result.to_csv(str(tmp), single_file=True, index=False)
        else:
            result.repartition(npartitions=1).to_parquet(str(tmp), write_index=False)
            only = next(Path(tmp).glob("*.parquet"))
            os.replace(only, str(tmp) + ".single")
            shutil.rmtree(tmp)
            os.replace(str(tmp) + ".single", tmp)
        os.replace(tmp, out_path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True) if Path(tmp).is_dir() else Path(tmp).unlink(missing_ok=True)
        raise
    rows = len(pd.read_parquet(out_path, columns=[]) if out_path.suffix == ".parquet" else pd.read_csv(out_path, usecols=[0]))
    return {"run_dir": run_dir, "input": input_path, "out": str(out_path), "rows": rows, "task": state["task"]}
