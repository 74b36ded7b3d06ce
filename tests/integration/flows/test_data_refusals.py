"""A bad line of the user's CSV, found by Dask mid-computation inside the Prefect preprocess task: it
arrives as a UserError (not wrapped), the task is not retried for it, and the worker logs no traceback."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.errors import UserError

pytestmark = pytest.mark.integration


def test_bad_line_fails_the_preprocess_task_once(engines, tmp_path, monkeypatch, capfd):
    from prefect import flow
    from prefect_dask import DaskTaskRunner

    import flows.common as common

    n = 40_000
    df = pd.DataFrame({"age": np.arange(n, dtype=float).astype(object), "label": ["a", "b"] * (n // 2)})
    df.loc[n - 1, "age"] = "abc"  # line n + 1: far past dask's sample
    path = tmp_path / "late.csv"
    df.to_csv(path, index=False)
    calls, real = tmp_path / "calls", common.preprocess  # a file: Prefect ships the task to Dask by value

    def counted(*a, **k):
        with open(calls, "a") as f:
            f.write("call\n")
        return real(*a, **k)

    monkeypatch.setattr(common, "preprocess", counted)

    @flow(name="data-refusal", persist_result=False)
    def one_task(data: dict, home: str):
        return common.preprocess_task.submit(data, home).result()

    runner = DaskTaskRunner(address=engines["dask"])
    with pytest.raises(UserError, match=f"late.csv line {n + 1}, column 'age': 'abc' is not a number"):
        one_task.with_options(task_runner=runner)({"source": str(path), "target": "label"}, str(tmp_path / "home"))
    assert calls.read_text().count("call") == 1  # retries=1, but not for the user's error
    assert "Compute Failed" not in capfd.readouterr().err
    assert not (tmp_path / "home").exists()
