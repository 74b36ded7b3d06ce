"""Preprocessing on Dask (threaded scheduler here): checks, train-only statistics, encoding, caching."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import tree
from tasks.data import ROW, Prepared, check_source, preprocess
from tasks.errors import UserError
from tasks.spec import Data


def messy_frame(n=400, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "age": rng.normal(40, 10, n).round(1),
        "income": rng.lognormal(10, 0.5, n),
        "city": rng.choice(["paris", "lyon", "nice"], n),
        "label": rng.choice(["yes", "no"], n),
    })
    df.loc[rng.choice(n, 40, replace=False), "age"] = np.nan
    df.loc[rng.choice(n, 30, replace=False), "city"] = None
    df.loc[5, "income"] = 1e9  # an outlier
    return df


@pytest.fixture
def csv(tmp_path):
    path = tmp_path / "messy.csv"
    messy_frame().to_csv(path, index=False)
    return path


def data(source, **kw) -> Data:
    return Data(source=str(source), **{"target": "label", **kw})


def test_statistics_are_fitted_on_train_only(csv, tmp_path):
    prep = preprocess(data(csv, preprocessing={"impute": "mean", "clip_outliers": 3.0}), tmp_path / "home")
    state = prep.preprocessor
    raw = pd.read_csv(csv)
    train_rows = pd.read_parquet(prep.path("train"))[ROW]
    train = raw.iloc[np.sort(train_rows.to_numpy())]
    assert state.impute["values"]["age"] == pytest.approx(train["age"].mean())
    assert state.impute["values"]["age"] != pytest.approx(raw["age"].mean())
    lo, hi = state.clip["income"]
    assert hi == pytest.approx(train["income"].mean() + 3 * train["income"].std(), rel=1e-6)
    # scaled train features have mean 0 and std 1 per column
    x = pd.read_parquet(prep.path("train")).filter(like="x")
    assert np.allclose(x.mean(), 0, atol=1e-5) and np.allclose(x.std(ddof=0), 1, atol=1e-3)
    assert sorted(state.classes) == ["no", "yes"]
    assert state.categories["city"] == ["lyon", "nice", "paris"]
    assert state.columns == ["age", "income", "city=lyon", "city=nice", "city=paris"]
    assert sum(state.counts.values()) == len(raw)


def test_encode_handles_unseen_categories_and_missing_values(csv, tmp_path):
    state = preprocess(data(csv), tmp_path / "home").preprocessor
    new = pd.DataFrame({"age": [np.nan, 30.0], "income": [1e4, 2e4], "city": ["tokyo", None]})
    x = state.transform(new)
    assert x.shape == (2, 5) and np.isfinite(x.to_numpy()).all()
    onehot = x.iloc[0, 2:].to_numpy() * [state.scale["scale"][c] for c in state.columns[2:]] + \
        [state.scale["center"][c] for c in state.columns[2:]]
    assert np.allclose(onehot, 0, atol=1e-6)  # tokyo: no category lights up
    with pytest.raises(UserError, match="columns \\['city'\\] are missing"):
        state.transform(new.drop(columns=["city"]))


def test_ordinal_and_drop(csv, tmp_path):
    prep = preprocess(data(csv, preprocessing={"categorical": "ordinal", "impute": "drop"}), tmp_path / "home")
    assert prep.preprocessor.columns == ["age", "income", "city"]
    raw = pd.read_csv(csv)
    assert sum(prep.preprocessor.counts.values()) == len(raw.dropna())


def test_cache_is_reused_and_invalidated(csv, tmp_path):
    home = tmp_path / "home"
    first = preprocess(data(csv), home)
    again = preprocess(data(csv), home)
    assert not first.cached and again.cached and again.dir == first.dir
    other = preprocess(data(csv, preprocessing={"scale": "minmax"}), home)
    assert other.dir != first.dir
    x = pd.read_parquet(other.path("train")).filter(like="x")
    assert x.min().min() >= -1e-6 and x.max().max() <= 1 + 1e-6


def test_oversample_and_class_weight(tmp_path):
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"a": rng.normal(size=1000), "label": np.where(rng.random(1000) < 0.95, 0, 1)})
    path = tmp_path / "imb.parquet"
    df.to_parquet(path)
    over = preprocess(data(path, preprocessing={"balance": "oversample"}), tmp_path / "home")
    counts = pd.read_parquet(over.path("train"))["y"].value_counts()
    assert 0.7 < counts[1] / counts[0] < 1.3
    weighted = preprocess(data(path, preprocessing={"balance": "class_weight"}), tmp_path / "home")
    w = weighted.preprocessor.class_weight
    assert w[1] > 5 * w[0]


@pytest.mark.parametrize("case, match", [
    ("no_target", "data.target: column 'nope' not found"),
    ("one_class", "has one class"),
    ("all_nan", "hold only missing values"),
    ("not_tabular", "neither CSV"),
    ("no_file", "no file matches"),
    ("missing_feature", "data.features: columns \\['ghost'\\] not found"),
    ("window", "data.window"),
])
def test_data_errors_write_nothing(case, match, tmp_path):
    home = tmp_path / "home"
    df = pd.DataFrame({"a": np.arange(50.0), "b": np.nan, "label": [0, 1] * 25})
    src = tmp_path / "d.csv"
    df.drop(columns=["b"]).to_csv(src, index=False)
    kw = {}
    if case == "no_target":
        kw = {"target": "nope"}
    elif case == "one_class":
        df.assign(label=1).drop(columns=["b"]).to_csv(src, index=False)
    elif case == "all_nan":
        df.to_csv(src, index=False)
    elif case == "not_tabular":
        src = tmp_path / "d.json"
        src.write_text("{}")
    elif case == "no_file":
        src = tmp_path / "missing-*.csv"
    elif case == "missing_feature":
        kw = {"features": ["a", "ghost"]}
    elif case == "window":
        kw = {"task": "forecasting", "target": "a", "window": 60}
    with pytest.raises(UserError, match=match):
        spec = data(src, **kw)
        check_source(spec)
        preprocess(spec, home)
    assert tree(home) == []


def test_forecasting_windows_are_chronological(tmp_path):
    n = 200
    t = np.arange(n)
    df = pd.DataFrame({"step": t[::-1], "value": np.sin(t[::-1] / 5.0)})  # stored newest first
    df.loc[[20, 21], "value"] = np.nan  # a gap
    path = tmp_path / "series.csv"
    df.to_csv(path, index=False)
    prep = preprocess(Data(source=str(path), task="forecasting", target="value", time_column="step", window=8,
                           horizon=2, preprocessing={"impute": "interpolate"}), tmp_path / "home")
    train, test = pd.read_parquet(prep.path("train")), pd.read_parquet(prep.path("test"))
    assert prep.preprocessor.input_shape == [8, 1] and prep.preprocessor.output_dim == 2
    assert train[ROW].max() < test[ROW].min()  # every test target comes after every train target
    assert {"y0", "y1"} <= set(train.columns) and np.isfinite(train.filter(like="x").to_numpy()).all()
    # the first target of a window is the step after its last input
    row = train.iloc[3]
    assert row["y0"] == pytest.approx(train.iloc[4]["x7"], abs=1e-6)


def test_prepared_load_roundtrip(csv, tmp_path):
    prep = preprocess(data(csv), tmp_path / "home")
    again = Prepared.load(prep.dir)
    assert again.preprocessor == prep.preprocessor


def test_preprocessor_json_of_earlier_runs_still_loads(csv, tmp_path):
    """Run directories written before the typed Preprocessor hold every key, nulls included: they load
    to the same object and transform rows the same way."""
    import json

    from tasks.data import Preprocessor

    prep = preprocess(data(csv), tmp_path / "home").preprocessor
    old = {**prep.to_dict(), "class_weight": None, "target_scale": None, "time_column": None, "window": None}
    (tmp_path / "preprocessor.json").write_text(json.dumps(old))
    again = Preprocessor.load(tmp_path)
    assert again == prep
    rows = messy_frame(seed=3).head(20)
    assert again.transform(rows).equals(prep.transform(rows))


def test_the_cache_is_keyed_by_content_not_size_and_mtime(csv, tmp_path):
    """Same size, same modification time, other bytes: other data, preprocessed again."""
    import os

    home = tmp_path / "home"
    first = preprocess(data(csv), home)
    stat = os.stat(csv)
    text = csv.read_text()
    digits = [i for i, c in enumerate(text) if c.isdigit() and text[i - 1] == "." and c != "9"]
    changed = text[:digits[-1]] + str(int(text[digits[-1]]) + 1) + text[digits[-1] + 1:]  # one digit up
    csv.write_text(changed)
    os.utime(csv, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(csv).st_size == stat.st_size and os.stat(csv).st_mtime_ns == stat.st_mtime_ns
    second = preprocess(data(csv), home)
    assert not second.cached and second.dir != first.dir
    csv.write_text(text)  # the old bytes again: the old entry serves
    assert preprocess(data(csv), home).dir == first.dir


def test_least_recently_used_cache_entries_go_past_the_limit(tmp_path, monkeypatch):
    import os
    import time

    from tasks.data.cache import IN_USE_S, evict

    cache = tmp_path / ".cache"
    old = time.time() - 10 * IN_USE_S
    entries = {}
    for i, name in enumerate(["oldest", "older", "recent", "current"]):
        entries[name] = cache / name
        entries[name].mkdir(parents=True)
        (entries[name] / "part.parquet").write_bytes(b"x" * 600_000)
        when = old + i if name in ("oldest", "older") else time.time() - 60
        os.utime(entries[name], (when, when))
    (cache / ".tmp-x-1-abc").mkdir()  # a staged entry of a running process: never touched
    monkeypatch.setenv("CONDUCTOR_CACHE_MAX_GB", str(1.3e6 / 2**30))  # room for two entries
    removed = evict(cache, keep=entries["current"])
    assert removed == [entries["oldest"], entries["older"]]  # both must go: "recent" is in use, and stays
    assert sorted(p.name for p in cache.iterdir()) == [".tmp-x-1-abc", ".users", "current", "recent"]


def test_an_entry_a_live_process_claimed_is_never_evicted(tmp_path, monkeypatch):
    """A sweep that preprocessed hours ago still reads its entry: its claim (entry.pid) keeps it; a dead
    process's claim does not, and goes."""
    import os
    import subprocess
    import sys
    import time

    from tasks.data.cache import USERS, evict

    cache = tmp_path / ".cache"
    old = time.time() - 86400
    for name in ("swept", "stale", "now"):
        (cache / name).mkdir(parents=True)
        (cache / name / "part.parquet").write_bytes(b"x" * 100_000)
        os.utime(cache / name, (old, old))
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (cache / USERS).mkdir()
    (cache / USERS / f"swept.{live.pid}").touch()
    (cache / USERS / f"stale.{dead.pid}").touch()
    monkeypatch.setenv("CONDUCTOR_CACHE_MAX_GB", "0")
    try:
        removed = evict(cache, keep=cache / "now")
    finally:
        live.kill()
        live.wait()
    assert removed == [cache / "stale"]
    assert sorted(p.name for p in (cache / USERS).iterdir()) == [f"now.{os.getpid()}", f"swept.{live.pid}"]


def test_a_cache_limit_that_is_not_a_number_is_one_error_line(monkeypatch):
    from tasks.data.cache import cache_limit
    from tasks.errors import UserError

    for bad in ("20G", "-1", "nan"):
        monkeypatch.setenv("CONDUCTOR_CACHE_MAX_GB", bad)
        with pytest.raises(UserError, match="CONDUCTOR_CACHE_MAX_GB"):
            cache_limit()


def test_the_median_holds_when_the_values_drift_across_partitions(tmp_path):
    """A file whose values trend (four partitions, each shifted and wider): Dask's median of 0.5 alone lands
    at rank ~0.66; the imputed median must be the train rows' median within 0.01 in rank."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "drift"
    folder.mkdir()
    for i in range(4):
        a = rng.normal(loc=3 * i, scale=1 + i, size=10_000)
        a[::9] = np.nan
        pd.DataFrame({"a": a, "label": rng.integers(0, 2, 10_000)}).to_parquet(folder / f"part-{i}.parquet")
    prep = preprocess(data(folder / "*.parquet"), tmp_path / "home")
    median = prep.preprocessor.impute["values"]["a"]
    raw = pd.concat([pd.read_parquet(f) for f in sorted(folder.glob("*.parquet"))], ignore_index=True)
    train = raw.loc[pd.read_parquet(prep.path("train"))[ROW]]["a"].dropna()
    assert abs((train < median).mean() - 0.5) < 0.01, (median, train.median())
