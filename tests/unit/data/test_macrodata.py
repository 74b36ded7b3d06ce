"""builtin:macrodata: statsmodels' US quarterly series with a numeric time column `t` = year + (quarter − 1)/4."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.data import ROW, check_source, preprocess
from tasks.data.sources import builtin_frame
from tasks.spec import Data


def test_macrodata_has_its_time_column():
    frame = builtin_frame("macrodata", "forecasting")
    assert len(frame) == 203 and {"t", "year", "quarter", "realgdp", "cpi", "infl"} <= set(frame.columns)
    assert frame["t"].iloc[0] == 1959.0 and frame["t"].iloc[-1] == 2009.5  # 1959Q1 … 2009Q3
    assert (np.diff(frame["t"]) == 0.25).all()


def test_macrodata_forecasts_with_t_as_time_column(tmp_path):
    data = Data(source="builtin:macrodata", task="forecasting", target="cpi", time_column="t",
                features=["infl", "cpi"], window=8, horizon=4)
    check_source(data)
    prepared = preprocess(data, tmp_path / "home", log=lambda *_: None)
    prep = prepared.preprocessor
    assert prep.input_shape == [8, 2] and prep.output_dim == 4 and prep.target_index == 1
    assert prep.time_format == "number"
    train, test = pd.read_parquet(prepared.path("train")), pd.read_parquet(prepared.path("test"))
    assert train[ROW].max() < test[ROW].min()
    cpi = builtin_frame("macrodata", "forecasting")["cpi"].to_numpy()
    # the first test window's targets are the raw cpi values that follow its last input step
    first = test.sort_values(ROW).iloc[0]
    got = prep.decode_target(first[[f"y{h}" for h in range(4)]].to_numpy("float64"))
    assert got == pytest.approx(cpi[int(first[ROW]):int(first[ROW]) + 4], rel=1e-5)
