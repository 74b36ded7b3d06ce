"""One loaded run, scoring raw rows through the same function as `conductor predict` (predict_rows).

`score_many` is what dynamic batching calls: the requests' rows become one DataFrame, are scored
once, and are cut back into one answer per request (forecasting requests are each their own series).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UserError
from ..predict import predict_rows
from ..runs import load_run
from .rows import BadRequest, Columns, to_frame

Rows = dict[str, list]  # checked values per column, from rows.check


def _state(run) -> dict:
    """The fitted preprocessor's fields that serving needs, as a plain dict."""
    keys = ("task", "features", "numeric", "categorical", "categories", "dtypes", "classes", "window", "horizon",
            "time_column")
    return {k: getattr(run.preprocessor, k, None) for k in keys}


class Scorer:
    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.run = load_run(self.run_dir)
        state = _state(self.run)
        self.task = state["task"]
        dtypes = state.get("dtypes") or {}
        time = state.get("time_column") if self.task == "forecasting" else None
        required = [*state["features"], *([time] if time and time not in state["features"] else [])]
        self.columns = Columns(tuple(required), frozenset(state["numeric"]),
                               frozenset(c for c in state["numeric"] if str(dtypes.get(c, "")).startswith("datetime")),
                               time)
        self.window = state.get("window")
        self.info = {"run_id": self.run_dir.name, "run": self.run_dir.parent.name, "task": self.task}
        self.schema = {**self.info, "columns": [self._describe(c, dtypes.get(c), state) for c in required]}
        if self.task == "classification":
            self.schema["classes"] = state["classes"]
        if self.task == "forecasting":
            self.schema.update(window=state["window"], horizon=state["horizon"], time_column=state.get("time_column"))

    def _describe(self, col: str, dtype, state: dict) -> dict:
        if col == self.columns.time and col not in self.columns.numeric:
            return {"name": col, "type": "time", "note": "orders the rows: numbers, or times as text"}
        if col in self.columns.datetime:
            return {"name": col, "type": "datetime"}
        if col in self.columns.numeric:
            return {"name": col, "type": "bool" if str(dtype) == "bool" else "number"}
        return {"name": col, "type": "category", "categories": (state.get("categories") or {}).get(col, [])}

    def score(self, rows: Rows, id_column: str | None = None) -> list[dict]:
        """Checked rows → one record per prediction (forecasting: the next `horizon` steps after the last row)."""
        pdf = to_frame(rows, self.columns)
        try:
            if self.task == "forecasting":
                if len(pdf) < self.window:
                    raise BadRequest(422, "body", f"{len(pdf)} rows, but the model reads windows of {self.window}: "
                                                  f"send the last {self.window} (or more) rows of the series")
                return records(predict_rows(self.run, pdf, id_column).iloc[[-1]])
            out = predict_rows(self.run, pdf[list(self.columns.features)], None)
        except UserError as e:
            raise BadRequest(422, "body", str(e)) from None
        if id_column is not None:
            out.insert(0, id_column, pdf[id_column].to_numpy())
        return records(out)

    def score_many(self, items: list[tuple[Rows, str | None]]) -> list[list[dict] | Exception]:
        """One answer (or its exception) per (rows, id column); row tasks are scored as one frame."""
        if self.task == "forecasting" or len(items) == 1:
            return [self._safe(*item) for item in items]
        merged = {c: [v for rows, _ in items for v in rows[c]] for c in self.columns.features}
        try:
            out = self.score(merged)
        except Exception:  # noqa: BLE001 - find whose rows it was: score them one by one
            return [self._safe(*item) for item in items]
        answers, start = [], 0
        for rows, id_column in items:
            n = len(rows[self.columns.features[0]])
            part = out[start:start + n]
            if id_column is not None:
                part = [{id_column: i, **r} for i, r in zip(rows[id_column], part, strict=True)]
            answers.append(part)
            start += n
        return answers

    def _safe(self, rows: Rows, id_column: str | None = None) -> list[dict] | Exception:
        try:
            return self.score(rows, id_column)
        except Exception as e:  # noqa: BLE001 - handed back to the request it belongs to
            return e


def records(out: pd.DataFrame) -> list[dict]:
    """Predictions as JSON-ready records: plain Python numbers and labels, no NaN."""
    rows = out.to_dict(orient="records")
    for r in rows:
        for k, v in r.items():
            if isinstance(v, np.generic):
                v = v.item()
            if isinstance(v, float) and not math.isfinite(v):
                v = None
            r[k] = v
    return rows
