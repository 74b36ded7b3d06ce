"""The vectorised text of a column (as_text, label_text) and the vectorised category lookup of transform give
exactly what the per-value definitions give, on every dtype they meet, mixed ones included (issue 13)."""
from __future__ import annotations

import decimal
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.data.preprocessor import Preprocessor, as_text, label_text


def as_text_each(s: pd.Series) -> pd.Series:
    """as_text before issue 13, one value at a time."""
    return s.astype(object).where(s.notna(), None).map(lambda v: None if v is None else str(v))


def label_text_each(y: pd.Series) -> pd.Series:
    """label_text before issue 13, one value at a time."""
    def norm(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        if isinstance(v, float | np.floating) and float(v).is_integer():
            return str(int(v))
        return str(v)

    return y.astype(object).map(norm)


def same(s: pd.Series) -> None:
    for fast, each in ((as_text, as_text_each), (label_text, label_text_each)):
        got, want = fast(s), each(s)
        pd.testing.assert_series_equal(got, want, check_dtype=True, check_index_type=True)
        assert type(got.array) is type(want.array)
        assert [type(v) for v in got] == [type(v) for v in want]


CASES = {
    "str": pd.Series(["a", None, "b", "a"]),
    "str indexed and named": pd.Series(["b", "a"], index=[7, 3], name="city"),
    "str all missing": pd.Series([np.nan, np.nan], dtype="str"),
    "str empty": pd.Series([], dtype="str"),
    "str python storage": pd.Series(["a", None], dtype=pd.StringDtype("python", na_value=np.nan)),
    "string with pd.NA": pd.Series([pd.NA, "a"], dtype="string"),
    "string as Dask reads text": pd.Series(["a", None, "b"], dtype=pd.StringDtype("pyarrow", na_value=pd.NA)),
    "string python storage": pd.Series(["a", None], dtype=pd.StringDtype("python", na_value=pd.NA)),
    "string all missing": pd.Series([None, None], dtype="string"),
    "string empty": pd.Series([], dtype="string"),
    "float": pd.Series([1.0, 2.5, np.nan, 1e16, 1e-5, 3e20, -0.0, 0.0, np.inf, -np.inf, 2.0**63, 0.1 + 0.2]),
    "float32": pd.Series([1.5, np.nan, 3.0, -0.0, 0.1], dtype="float32"),
    "float16": pd.Series([1.5, np.nan, 3.0], dtype="float16"),
    "float all missing": pd.Series([np.nan, np.nan]),
    "float empty": pd.Series([], dtype=float),
    "int": pd.Series([3, -1, 3, 0]),
    "uint64": pd.Series(np.array([2**63 + 5, 1], dtype="uint64")),
    "bool": pd.Series([True, False, True]),
    "nullable int": pd.Series([1, pd.NA], dtype="Int64"),
    "datetime": pd.Series(pd.to_datetime(["2020-01-01", None])),
    "category of str": pd.Series(["a", "b", None], dtype="category"),
    "category of float": pd.Series([3.0, 4.5, None], dtype="category"),
    "object of str": pd.Series(["x", None, "y", np.nan], dtype=object),
    "object of str with NUL": pd.Series(["a\x00", "b"], dtype=object),
    "object of np.str_": pd.Series(["x", np.str_("y")], dtype=object),
    "object of int": pd.Series([1, np.int8(3), 2**70, None], dtype=object),
    "object of bool": pd.Series([True, np.bool_(False), None], dtype=object),
    "object of int and bool": pd.Series([True, 1, 0, False], dtype=object),
    "object of float": pd.Series([1.0, np.float64(2.5), None, np.nan, -0.0, 0.0], dtype=object),
    "object of float32": pd.Series([np.float32(2.0), np.float32("nan")], dtype=object),
    "object mixed": pd.Series(["a", 1, 2.0, None, True], dtype=object),
    "object of Decimal": pd.Series([decimal.Decimal("1.5"), decimal.Decimal("2")], dtype=object),
    "object with pd.NA": pd.Series([pd.NA, "a"], dtype=object),
    "object with NaT": pd.Series([None, pd.NaT, "a"], dtype=object),
    "object all None": pd.Series([None, None], dtype=object),
}


@pytest.mark.parametrize("name", CASES)
def test_fast_text_is_the_per_value_text(name):
    same(CASES[name])


labels = st.one_of(st.none(), st.floats(allow_nan=True), st.integers(-2**70, 2**70), st.booleans(), st.text(max_size=3),
                   st.sampled_from([0.0, -0.0, 1.0, 3.0, 1e16, 2.5]))


@settings(max_examples=200, deadline=None)
@given(st.lists(labels, max_size=12))
def test_fast_text_of_any_object_column(values):
    same(pd.Series(values, dtype=object))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=12),
       st.sampled_from(["float32", "float64"]))
def test_fast_text_of_any_float_column(values, dtype):
    same(pd.Series(values, dtype=dtype))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "nan", "<NA>", "", " a"])), max_size=12),
       st.sampled_from(["str", "string", pd.StringDtype("pyarrow", na_value=pd.NA)]))
def test_fast_text_of_any_str_column(values, dtype):
    same(pd.Series(values, dtype=dtype))


def old_categorical(prep: Preprocessor, pdf: pd.DataFrame) -> dict:
    """transform's text columns before issue 13."""
    out, values = {}, prep.impute["values"]
    for c in prep.categorical:
        s = as_text_each(pdf[c])
        if c in values:
            s = s.where(s.notna(), values[c])
        if prep.encoding == "onehot":
            for cat in prep.categories[c]:
                out[f"{c}={cat}"] = (s == cat).astype("float64")
        else:
            lookup = {cat: float(i) for i, cat in enumerate(prep.categories[c])}
            out[c] = s.map(lambda v, lk=lookup: lk.get(v, -1.0)).astype("float64")
    return out


@pytest.mark.parametrize("encoding", ["onehot", "ordinal"])
@pytest.mark.parametrize("fill", [True, False])
def test_category_lookup_is_the_per_value_lookup(encoding, fill):
    rng = np.random.default_rng(0)
    cats = ["lyon", "nan", "nice", "paris"]
    pdf = pd.DataFrame({"city": rng.choice(["paris", "lyon", "nice", "tokyo", "nan", None], 500),
                        "n": rng.choice([1, 2, 3], 500)}, index=rng.permutation(500))
    pdf.loc[pdf.index[:5], "city"] = np.nan
    columns = [f"{c}={v}" for c, vs in (("city", cats), ("n", ["1", "2"])) for v in vs] if encoding == "onehot" \
        else ["city", "n"]
    prep = Preprocessor(task="classification", target=None, features=["city", "n"], numeric=[],
                        categorical=["city", "n"], columns=columns, sources=[c.split("=")[0] for c in columns],
                        impute={"strategy": "median", "values": {"city": "paris", "n": "1"} if fill else {}},
                        categories={"city": cats, "n": ["1", "2"]}, encoding=encoding)
    got = prep.transform(pdf, scale=False)
    want = pd.DataFrame(old_categorical(prep, pdf), index=pdf.index)[columns].astype("float32")
    want.columns = got.columns
    pd.testing.assert_frame_equal(got, want)


def old_classes(y: pd.Series) -> tuple[list, list[int]]:
    """fit_target's classes and counts before issue 13: value_counts of the labels' text, then the raw values."""
    from tasks.data.fit import _label_order
    from tasks.data.preprocessor import plain_label

    counts = label_text_each(y).value_counts()
    by_text = {}
    for v in y.dropna().drop_duplicates():
        by_text.setdefault(label_text_each(pd.Series([v])).iloc[0], plain_label(v))
    classes = [by_text[t] for t in sorted(by_text, key=_label_order)]
    return classes, [int(counts.get(str(c), 0)) for c in classes]


@pytest.mark.parametrize("values", [[3.0, 1.0, 3.0, 10.0, np.nan], ["b", "a", "b", "10", "9", None],
                                    [True, False, False], [2, 0, 1, 1], [0.5, 1.5, 0.5]])
def test_classes_come_from_one_summary_per_partition(values):
    """label_summary per partition and target_from over them give the classes, their order and counts of the
    two computations fit_target made before."""
    import dask
    import dask.dataframe as dd

    from tasks.data.fit import target_from, target_todo
    from tasks.spec import Data

    y = pd.Series(values)
    train = dd.from_pandas(pd.DataFrame({"label": y}), npartitions=2, sort=False)
    prep = Preprocessor(task="classification", target="label", features=[], numeric=[], categorical=[],
                        columns=[], sources=[], impute={"strategy": "median", "values": {}})
    data = Data(source="builtin:digits", target="label")
    target_from(prep, dask.compute(target_todo(train[~train["label"].isna()], data))[0], data)
    assert (prep.classes, prep.class_counts) == old_classes(y)
    assert [type(c) for c in prep.classes] == [type(c) for c in old_classes(y)[0]]


@pytest.mark.parametrize("classes, y", [
    ([0, 1], pd.Series([0, 1, 1, 0])), ([0, 1], pd.Series([0.0, 1.0, np.nan, 2.0])),
    (["a", "b"], pd.Series(["a", "c", None])), (["a", "b"], pd.Series([], dtype="str")),
    ([False, True], pd.Series([True, False])), (["a"], pd.Series([np.nan, np.nan])),
    ([3, 10], pd.Series([10, 3], index=[5, 9], name="label")), (["x", "x"], pd.Series(["x", "y"])),
])
def test_encode_target_is_the_per_value_lookup(classes, y):
    prep = Preprocessor(task="classification", target="label", features=[], numeric=[], categorical=[], columns=[],
                        sources=[], impute={}, classes=classes)
    want = label_text_each(y).map({str(c): i for i, c in enumerate(classes)})  # before issue 13
    pd.testing.assert_series_equal(prep.encode_target(y), want)


def old_transform(prep: Preprocessor, pdf: pd.DataFrame, scale: bool = True) -> pd.DataFrame:
    """Preprocessor.transform before issue 13: whole-frame float64 arithmetic, then float32."""
    from tasks.data.preprocessor import as_number

    out, values = {}, prep.impute["values"]
    for c in prep.numeric:
        s = as_number(pdf[c])
        if prep.impute["strategy"] == "interpolate":
            s = s.interpolate(limit_direction="both")
        if c in values:
            s = s.fillna(values[c])
        if c in prep.clip:
            s = s.clip(*prep.clip[c])
        out[c] = s
    out |= old_categorical(prep, pdf)
    frame = pd.DataFrame(out, index=pdf.index)[prep.columns]
    if scale and prep.scale["kind"] != "none":
        frame = (frame - pd.Series(prep.scale["center"])[prep.columns]) / pd.Series(prep.scale["scale"])[prep.columns]
    frame.columns = [f"x{i}" for i in range(len(prep.columns))]
    return frame.astype("float32")


@pytest.mark.parametrize("preprocessing", [
    {"clip_outliers": 2.0}, {"categorical": "ordinal", "scale": "minmax"}, {"scale": "none", "impute": "mean"},
    {"impute": "interpolate", "clip_outliers": 1.0},
])
def test_transform_is_the_whole_frame_arithmetic(preprocessing, tmp_path):
    """transform scales a column at a time into float32: bit for bit what the float64 frame arithmetic gave."""
    from tasks.data import preprocess
    from tasks.spec import Data

    rng = np.random.default_rng(1)
    n = 600
    df = pd.DataFrame({"age": rng.normal(40, 10, n), "income": rng.lognormal(10, 1, n),
                       "city": rng.choice(["paris", "lyon", "nice"], n), "flag": rng.choice([True, False], n),
                       "label": rng.choice(["yes", "no"], n)})
    df.loc[rng.choice(n, 60, replace=False), "age"] = np.nan
    df.loc[rng.choice(n, 40, replace=False), "city"] = None
    df.to_csv(tmp_path / "d.csv", index=False)
    prep = preprocess(Data(source=str(tmp_path / "d.csv"), target="label", preprocessing=preprocessing),
                      tmp_path / "home", log=lambda *_: None).preprocessor
    rows = pd.read_csv(tmp_path / "d.csv").sample(frac=1.0, random_state=0)
    rows.loc[rows.index[:5], "city"] = "tokyo"  # unseen
    for scale in (True, False):
        pd.testing.assert_frame_equal(prep.transform(rows, scale), old_transform(prep, rows, scale))
