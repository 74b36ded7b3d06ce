"""How often preprocessing reads its source (each CSV block's parses, counted), its progress lines, and the
forecasting size limit (issue 13)."""
from __future__ import annotations

import collections
import re

import dask.dataframe.io.csv as dask_csv
import numpy as np
import pandas as pd
import pytest

from conftest import tree
from tasks.data import ROW, preprocess
from tasks.errors import UserError
from tasks.spec import Data

BLOCKS = 3  # one CSV file each: a block (a Dask partition) per file


@pytest.fixture
def parses(monkeypatch):
    """Counts the parses of each CSV block by its first line of values: dask's CSV reader calls
    pandas_read_text once per block it turns into a partition."""
    counts: collections.Counter = collections.Counter()
    real = dask_csv.pandas_read_text

    def counting(reader, block, *args, **kwargs):
        counts[bytes(block).split(b"\n", 2)[1]] += 1
        return real(reader, block, *args, **kwargs)

    monkeypatch.setattr(dask_csv, "pandas_read_text", counting)
    return counts


def table(tmp_path, n=600, seed=0):
    rng = np.random.default_rng(seed)
    folder = tmp_path / "table"
    folder.mkdir()
    for i in range(BLOCKS):
        df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.lognormal(size=n),
                           "city": rng.choice(["paris", "lyon", "nice"], n), "label": rng.choice([0.0, 1.0, 2.0], n)})
        df.loc[rng.choice(n, 30, replace=False), "a"] = np.nan
        df.loc[rng.choice(n, 20, replace=False), "city"] = None
        df.to_csv(folder / f"part-{i}.csv", index=False)
    return folder


def test_a_classification_source_is_read_three_times(tmp_path, parses):
    """Pass 1: checks, partition lengths, column and target statistics; pass 2: scale statistics; pass 3: the
    four outputs at once. Before issue 13: ten."""
    folder = table(tmp_path)
    spec = Data(source=str(folder / "*.csv"), target="label",
                preprocessing={"clip_outliers": 3.0, "scale": "standard", "impute": "median"})
    prep = preprocess(spec, tmp_path / "home", log=lambda *_: None)
    assert len(parses) == BLOCKS
    assert set(parses.values()) == {3}, dict(parses)
    state = prep.preprocessor
    assert state.classes == [0, 1, 2] and sum(state.counts.values()) == BLOCKS * 600
    assert sorted(p.name for p in (prep.dir / "test_raw").iterdir()) == [f"part-0000{i}.parquet" for i in range(BLOCKS)]
    rows = pd.concat([pd.read_csv(f) for f in sorted(folder.glob("*.csv"))], ignore_index=True)
    for split in ("train", "val", "test", "test_raw"):
        out = pd.read_parquet(prep.path(split))
        assert out[ROW].is_unique and out[ROW].between(0, len(rows) - 1).all()
    raw = pd.read_parquet(prep.path("test_raw")).sort_values(ROW)
    pd.testing.assert_frame_equal(raw.drop(columns=[ROW]).reset_index(drop=True),
                                  rows.loc[raw[ROW]].reset_index(drop=True), check_dtype=False)


def test_without_scaling_two_passes_and_forecasting_two(tmp_path, parses):
    folder = table(tmp_path)
    preprocess(Data(source=str(folder / "*.csv"), target="label", task="regression",
                    preprocessing={"scale": "none"}), tmp_path / "home", log=lambda *_: None)
    assert set(parses.values()) == {2}, dict(parses)
    parses.clear()
    preprocess(Data(source=str(folder / "*.csv"), target="a", task="forecasting", features=["b"], window=4,
                    horizon=1), tmp_path / "home", log=lambda *_: None)
    assert set(parses.values()) == {2}, dict(parses)  # row checks, then the whole series


def test_scaler_means_are_float64_means_of_the_encoded_train_rows(tmp_path):
    """The encoded values are float32; their means are summed in float64, so they equal pandas' float64 means
    (a float32 sum per partition was off by ~1e-7)."""
    folder = table(tmp_path, n=20_000)
    prep = preprocess(Data(source=str(folder / "*.csv"), target="label", preprocessing={"clip_outliers": 3.0}),
                      tmp_path / "home", log=lambda *_: None)
    state = prep.preprocessor
    rows = pd.concat([pd.read_csv(f) for f in sorted(folder.glob("*.csv"))], ignore_index=True)
    train = rows.loc[np.sort(pd.read_parquet(prep.path("train"))[ROW].to_numpy())]
    encoded = state.transform(train, scale=False).astype("float64")
    for i, column in enumerate(state.columns):
        assert state.scale["center"][column] == pytest.approx(encoded[f"x{i}"].mean(), rel=1e-12, abs=1e-15)
        assert state.scale["scale"][column] == pytest.approx(encoded[f"x{i}"].std(ddof=0), rel=1e-9)


def test_a_long_pass_says_how_far_it_is(tmp_path, parses, monkeypatch):
    import time

    import tasks.data.passes as passes

    folder = table(tmp_path)
    real = dask_csv.pandas_read_text  # the counting one: slowed, so each pass takes a while

    def slow(*args, **kwargs):
        time.sleep(0.3)
        return real(*args, **kwargs)

    monkeypatch.setattr(dask_csv, "pandas_read_text", slow)
    monkeypatch.setattr(passes, "PROGRESS_EVERY_S", 0.1)
    said = []
    preprocess(Data(source=str(folder / "*.csv"), target="label"), tmp_path / "home", log=said.append)
    progress = said[:-1]
    assert progress and said[-1].startswith("preprocess: {'train'")
    line = re.compile(r"preprocess: pass ([123])/3 (row checks and statistics|scale statistics|transform and write): "
                      r"\d+% of 3 partitions(, ~\d+ s left)?$")
    assert all(line.match(s) for s in progress), progress
    assert {line.match(s).group(1) for s in progress} == {"1", "2", "3"}


def test_a_fast_run_says_one_line(tmp_path):
    said = []
    preprocess(Data(source="builtin:breast_cancer", target="label"), tmp_path / "home", log=said.append)
    assert len(said) == 1 and said[0].startswith("preprocess: {'train'")


def series(tmp_path, n=200):
    path = tmp_path / "series.csv"
    pd.DataFrame({"step": np.arange(n), "value": np.sin(np.arange(n) / 5.0)}).to_csv(path, index=False)
    return Data(source=str(path), task="forecasting", target="value", time_column="step", window=8, horizon=2)


def test_forecasting_refuses_a_series_above_the_limit_before_loading_it(tmp_path, parses, monkeypatch):
    monkeypatch.setenv("CONDUCTOR_FORECAST_MAX_ROWS", "150")
    home = tmp_path / "home"
    with pytest.raises(UserError) as err:
        preprocess(series(tmp_path), home)
    assert re.fullmatch(r"data.source: forecasting keeps the whole series in memory; '.*series.csv' holds 200 rows "
                        r"\(0.00 GB as read\), above the limit of 150 rows; .*CONDUCTOR_FORECAST_MAX_ROWS.*",
                        str(err.value)), str(err.value)
    assert "\n" not in str(err.value)
    assert set(parses.values()) == {1}  # the row checks' pass only: never loaded
    assert tree(home) == []
    monkeypatch.setenv("CONDUCTOR_FORECAST_MAX_ROWS", "200")
    assert preprocess(series(tmp_path), home).preprocessor.window == 8
    monkeypatch.setenv("CONDUCTOR_FORECAST_MAX_ROWS", "lots")
    with pytest.raises(UserError, match="CONDUCTOR_FORECAST_MAX_ROWS: 'lots' is not a row count"):
        preprocess(series(tmp_path, n=199), home)


def test_distinct_text_values_are_counted_over_the_partitions(tmp_path):
    """The union of each partition's distinct values (at most 1001 each): exact up to 1000, then refused."""
    from tasks.data.checks import check_rows, few_distinct
    from tasks.data.sources import load_source

    assert len(few_distinct(pd.Series([f"v{i}" for i in range(5000)] + [None]))) == 1001
    folder = table(tmp_path)
    for i, f in enumerate(sorted(folder.glob("*.csv"))):  # 500 codes per file, 1500 in all, none shared
        df = pd.read_csv(f)
        df["code"] = [f"c{i}-{j % 500}" for j in range(len(df))]
        df.to_csv(f, index=False)
    spec = Data(source=str(folder / "*.csv"), target="label")
    with pytest.raises(UserError, match="text column 'code' .* has over 1000 distinct values in 1800 rows"):
        check_rows(load_source(spec), ["a", "b", "city", "code"], spec)
    spec = Data(source=str(folder / "*.csv"), target="label", drop=["code"])
    assert check_rows(load_source(spec), ["a", "b", "city"], spec)["distinct"]["city"].nunique() == 3
