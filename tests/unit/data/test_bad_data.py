"""Data the run must refuse (one UserError naming file, line, column and value) or warn about, on Dask."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import tree
from tasks.data import check_source, preprocess
from tasks.errors import UserError
from tasks.spec import Data

BAD_LINE = 40_001  # 1-based, the header is line 1: far past the sample dask infers dtypes from


@pytest.fixture(scope="module")
def good_lines(tmp_path_factory) -> list[bytes]:
    rng = np.random.default_rng(0)
    n = BAD_LINE + 1000
    df = pd.DataFrame({"age": rng.integers(18, 90, n).astype(float), "x": rng.normal(size=n).round(4),
                       "label": rng.choice(["a", "b"], n)})
    path = tmp_path_factory.mktemp("big") / "good.csv"
    df.to_csv(path, index=False)
    return path.read_bytes().split(b"\n")


def spoil(lines: list[bytes], path, line: int, new: bytes):
    lines = list(lines)
    lines[line - 1] = new
    path.write_bytes(b"\n".join(lines))
    return path


def data(source, **kw) -> Data:
    return Data(source=str(source), **{"target": "label", **kw})


@pytest.mark.parametrize("case, match", [
    ("text", f"good.csv line {BAD_LINE}, column 'age': 'abc' is not a number; fix the file or list the column "
             "in data.drop"),
    ("ragged", f"good.csv line {BAD_LINE}: 4 fields, but the header \\(line 1\\) has 3"),
    ("byte", f"good.csv line {BAD_LINE}, byte 4 of the line \\(offset \\d+ of the file\\): b'\\\\xff' is not UTF-8"),
])
def test_bad_line_past_the_sample_is_named(case, match, good_lines, tmp_path):
    old = good_lines[BAD_LINE - 1]
    new = {"text": b"abc," + old.split(b",", 1)[1], "ragged": old + b",7", "byte": old[:3] + b"\xff" + old[4:]}[case]
    path = spoil(good_lines, tmp_path / "good.csv", BAD_LINE, new)
    spec, home = data(path), tmp_path / "home"
    with pytest.raises(UserError, match=f"^data.source: .*{match}"):
        check_source(spec)  # a small file gets its full pass here, before any engine starts
    with pytest.raises(UserError, match=f"^data.source: .*{match}") as err:
        preprocess(spec, home)  # a big one (or a run submitted without the CLI) inside the flow
    assert "\n" not in str(err.value)
    assert tree(home) == []


def test_bad_line_in_the_sample_is_named_before_any_engine(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,label\n1,2,x\n3,4,y,5\n")
    with pytest.raises(UserError, match="d.csv line 3: 4 fields, but the header \\(line 1\\) has 3"):
        check_source(data(path))


def test_user_error_crosses_the_distributed_client(good_lines, tmp_path):
    """The flow runs preprocess on a Dask cluster: the parse error raised in a worker comes back as its own
    type, and becomes the UserError that the Prefect task's retry condition recognises."""
    from distributed import Client, LocalCluster

    path = spoil(good_lines, tmp_path / "good.csv", BAD_LINE, b"abc,1.0,a")
    with LocalCluster(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0") as cluster, \
            Client(cluster):
        with pytest.raises(UserError, match=f"line {BAD_LINE}, column 'age': 'abc'"):
            preprocess(data(path), tmp_path / "home")


def small(tmp_path, df: pd.DataFrame, name="d.csv"):
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def frame(n=200, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "label": rng.choice(["x", "y"], n)})


@pytest.mark.parametrize("kw, match", [
    ({"features": ["a", "label"]}, "data.features: lists the target 'label'"),
    ({"features": ["a", "b", "a"]}, "data.features: \\['a'\\] listed more than once"),
])
def test_feature_list_refusals_before_any_engine(kw, match, tmp_path):
    with pytest.raises(UserError, match=match):
        check_source(data(small(tmp_path, frame()), **kw))


def test_duplicate_column_names_in_the_file(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,a,label\n1,2,3,x\n4,5,6,y\n")
    with pytest.raises(UserError, match="d.csv line 1 names column\\(s\\) \\['a'\\] more than once"):
        check_source(data(path))


def test_infinite_values_are_counted_per_column(tmp_path):
    df = frame()
    df.loc[[3, 7], "b"] = np.inf
    df.loc[9, "b"] = -np.inf
    with pytest.raises(UserError, match="infinite values .* \\{'b': 3\\}"):
        preprocess(data(small(tmp_path, df)), tmp_path / "home")
    assert tree(tmp_path / "home") == []


def test_id_like_text_column_is_refused_only_when_chosen_automatically(tmp_path):
    df = frame().assign(email=[f"u{i}@example.com" for i in range(200)])
    path = small(tmp_path, df)
    with pytest.raises(UserError, match="text column 'email' .* distinct values in 200 rows.*name it in data.drop"):
        preprocess(data(path), tmp_path / "home")
    assert preprocess(data(path, drop=["email"]), tmp_path / "home").preprocessor.features == ["a", "b"]
    listed = preprocess(data(path, features=["a", "email"], preprocessing={"categorical": "ordinal"}), tmp_path / "home")
    assert listed.preprocessor.categorical == ["email"]


def series(times) -> pd.DataFrame:
    return pd.DataFrame({"date": times, "value": np.arange(len(times), dtype=float)})


def test_day_first_dates_sort_as_dates_not_text(tmp_path):
    days = pd.date_range("2020-01-01", periods=90, freq="D")
    df = series(days.strftime("%d/%m/%Y")).sample(frac=1.0, random_state=0)  # shuffled, 13/01.. tells day first
    prep = preprocess(Data(source=str(small(tmp_path, df)), task="forecasting", target="value", time_column="date",
                           window=4), tmp_path / "home")
    assert prep.preprocessor.time_format == "%d/%m/%Y"
    raw = pd.read_parquet(prep.path("test_raw"))
    assert (pd.to_datetime(raw["date"], format="%d/%m/%Y").diff().dropna() == pd.Timedelta("1D")).all()
    assert raw["value"].is_monotonic_increasing  # value is the day number: time order, not text order


def test_ambiguous_day_month_is_refused_unless_time_format_says(tmp_path):
    path = small(tmp_path, series([f"{m:02d}/{d:02d}/2020" for m in range(1, 13) for d in range(1, 6)]))  # all <= 12
    spec = {"source": str(path), "task": "forecasting", "target": "value", "time_column": "date", "window": 4}
    with pytest.raises(UserError, match="read as day/month or month/day .* data.time_format: '%d/%m/%Y'"):
        preprocess(Data(**spec), tmp_path / "home")
    prep = preprocess(Data(**spec, time_format="%m/%d/%Y"), tmp_path / "home")
    assert prep.preprocessor.time_format == "%m/%d/%Y"


def test_unparseable_time_names_line_and_value(tmp_path):
    times = list(pd.date_range("2020-01-01", periods=40, freq="D").strftime("%Y-%m-%d"))
    times[16] = "yesterday"
    path = small(tmp_path, series(times))
    with pytest.raises(UserError, match="data.time_column: 'date' at .*d.csv line 18: 'yesterday' is neither a number nor a date"):
        preprocess(Data(source=str(path), task="forecasting", target="value", time_column="date", window=4),
                   tmp_path / "home")


def test_numeric_time_stays_numeric(tmp_path):
    df = pd.DataFrame({"t": np.arange(40)[::-1] * 7 + 3, "value": np.arange(40.0)})  # text order: '10' < '3'
    prep = preprocess(Data(source=str(small(tmp_path, df)), task="forecasting", target="value", time_column="t",
                           window=4), tmp_path / "home")
    assert prep.preprocessor.time_format == "number"
    assert pd.read_parquet(prep.path("test_raw"))["t"].is_monotonic_increasing


def test_rare_classes_and_labels_only_in_val_test_warn_once_per_run(tmp_path, capsys):
    df = frame(n=1000)
    df.loc[:4, "label"] = "rare"  # 0.5% of the rows
    path = small(tmp_path, df)
    said = []
    preprocess(data(path), tmp_path / "home", warn=said.append)
    assert len(said) == 1 and "class(es) {'rare': 5}" in said[0] and "under 1%" in said[0]
    again = []
    preprocess(data(path), tmp_path / "home", warn=again.append)  # cached: said again
    assert again == said
    preprocess(data(path), tmp_path / "home")
    assert capsys.readouterr().err == f"warning: {said[0]}\n"


def test_label_only_in_val_or_test_warns(tmp_path):
    df = frame(n=400)
    path = small(tmp_path, df)
    from tasks.data.sources import load_source
    from tasks.data.split import assign_split, number_rows

    spec = data(path)
    split = assign_split(number_rows(load_source(spec)), 0, spec.split.val, spec.split.test).compute()
    first_test = int(split.index[split["__split__"] == 2][0])
    df.loc[first_test, "label"] = "ghost"
    small(tmp_path, df)
    said = []
    preprocess(data(path), tmp_path / "home", warn=said.append)
    assert any("label(s) ['ghost'] of 'label' occur only in the val/test splits (1 rows)" in s for s in said)


def test_worker_log_of_a_parse_failure_is_dropped_and_others_kept():
    import logging

    from tasks.data.locate import QuietParseFailures

    def record(msg):
        return logging.LogRecord("distributed.worker", logging.ERROR, __file__, 1, msg, None, None)

    quiet = QuietParseFailures()
    assert not quiet.filter(record("Compute Failed\nKey: x\nException: 'ValueError(\\'Mismatched dtypes found in"))
    assert not quiet.filter(record("Compute Failed\nException: \"ParserError('Error tokenizing data.')\""))
    assert quiet.filter(record("Compute Failed\nException: 'MemoryError()'"))
    assert quiet.filter(record("Worker stream died"))


def test_a_cached_source_is_not_read_again_until_its_bytes_change(tmp_path, monkeypatch):
    """With CONDUCTOR_HOME, check_source trusts the cache entry made from the same spec and bytes (its
    preprocessing ran these checks); a changed file is read and checked again."""
    import importlib

    precheck = importlib.import_module("tasks.data.precheck")
    path = tmp_path / "d.csv"
    pd.DataFrame({"x": np.arange(200.0), "label": ["a", "b"] * 100}).to_csv(path, index=False)
    spec, home = data(path), tmp_path / "home"
    assert preprocess(spec, home, log=lambda *_: None).dir == precheck.cache_entry(spec, home)

    def unread(*_):
        raise AssertionError("the source was read")

    with monkeypatch.context() as m:
        m.setattr(importlib.import_module("tasks.data.sources"), "load_source", unread)
        check_source(spec, home)  # the cached entry vouches for it
        with pytest.raises(AssertionError, match="was read"):
            check_source(spec)  # without a home: checked as before
    path.write_text(path.read_text() + "1,2,3\n")
    with pytest.raises(UserError, match="d.csv line 202: 3 fields, but the header \\(line 1\\) has 2"):
        check_source(spec, home)
