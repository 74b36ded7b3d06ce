"""Preprocessing on Dask: check schema → clean → impute → encode → clip → scale → split → Parquet.

Every statistic is fitted on the train split only and saved in `preprocessor.json`; `transform`
is the one function that applies it, here and in `conductor predict`, so both see the same numbers.
The output lands in runs/.cache/<fingerprint>/ and a re-run with the same source and spec skips it.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from .data import load_source, source_fingerprint
from .errors import UserError
from .fsutil import atomic_dir
from .spec import Data

VERSION = 1  # bump when the output format or a statistic changes, so old caches are not reused
SPLITS = ("train", "val", "test")
ROW = "__row__"
SPLIT = "__split__"


@dataclass
class Prepared:
    """A finished preprocessing output: where it is and its fitted state."""

    dir: Path
    state: dict
    cached: bool = False
    seconds: float = 0.0

    def path(self, split: str) -> str:
        return str(self.dir / split)

    @classmethod
    def load(cls, directory: Path) -> Prepared:
        return cls(Path(directory), json.loads((Path(directory) / "preprocessor.json").read_text()), cached=True)


# ---------------------------------------------------------------- transform (pure pandas)

def _as_text(s: pd.Series) -> pd.Series:
    return s.astype(object).where(s.notna(), None).map(lambda v: None if v is None else str(v))


def _numeric(s: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(s):
        return s.astype("int64").astype("float64") / 1e9
    return pd.to_numeric(s, errors="coerce").astype("float64")


def encode(pdf: pd.DataFrame, state: dict, scale: bool = True) -> pd.DataFrame:
    """Raw feature rows → float32 model inputs x0..xD-1, using only the fitted state."""
    missing = [c for c in state["features"] if c not in pdf.columns]
    if missing:
        raise UserError(f"input: columns {missing} are missing; the model was trained on {state['features']}")
    out = {}
    imp = state["impute"]
    for c in state["numeric"]:
        s = _numeric(pdf[c])
        if imp["strategy"] == "interpolate":
            s = s.interpolate(limit_direction="both")
        if c in imp["values"]:
            s = s.fillna(imp["values"][c])
        if c in state["clip"]:
            lo, hi = state["clip"][c]
            s = s.clip(lo, hi)
        out[c] = s
    for c in state["categorical"]:
        s = _as_text(pdf[c])
        if c in imp["values"]:
            s = s.where(s.notna(), imp["values"][c])
        cats = state["categories"][c]
        if state["encoding"] == "onehot":
            for cat in cats:  # an unseen category is all zeros
                out[f"{c}={cat}"] = (s == cat).astype("float64")
        else:
            lookup = {cat: float(i) for i, cat in enumerate(cats)}
            out[c] = s.map(lambda v, lk=lookup: lk.get(v, -1.0)).astype("float64")
    frame = pd.DataFrame(out, index=pdf.index)[state["columns"]]
    if scale and state["scale"]["kind"] != "none":
        center = pd.Series(state["scale"]["center"])[state["columns"]]
        width = pd.Series(state["scale"]["scale"])[state["columns"]]
        frame = (frame - center) / width
    frame.columns = [f"x{i}" for i in range(len(state["columns"]))]
    return frame.astype("float32")


def n_inputs(state: dict) -> int:
    """Columns x0.. of a model row: the encoded features, or window x features for forecasting."""
    return int(np.prod(state["input_shape"]))


def encode_target(y: pd.Series, state: dict) -> pd.Series:
    if state["task"] == "classification":
        lookup = {str(c): i for i, c in enumerate(state["classes"])}
        return _label_text(y).map(lookup)  # NaN for a label the train split never saw
    ts = state.get("target_scale") or {"center": 0.0, "scale": 1.0}
    return ((_numeric(y) - ts["center"]) / ts["scale"]).astype("float32")


def decode_target(values: np.ndarray, state: dict) -> np.ndarray:
    """Model-space regression/forecast values back to the target's own units."""
    ts = state.get("target_scale") or {"center": 0.0, "scale": 1.0}
    return np.asarray(values, dtype="float64") * ts["scale"] + ts["center"]


def _label_text(y: pd.Series) -> pd.Series:
    def norm(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        if isinstance(v, float | np.floating) and float(v).is_integer():
            return str(int(v))
        return str(v)

    return y.astype(object).map(norm)


def _plain(v):
    """A label as JSON keeps it: integral numbers as int, the rest as str."""
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if isinstance(v, int | np.integer):
        return int(v)
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return int(v)
    return str(v)


def frame_xy(pdf: pd.DataFrame, state: dict) -> pd.DataFrame:
    """One partition of raw rows → model rows: x0.., y (none for generative), __row__."""
    x = encode(pdf, state)
    if state["task"] in ("classification", "regression"):
        x["y"] = encode_target(pdf[state["target"]], state).to_numpy()
    x[ROW] = pdf[ROW].to_numpy().astype("int64")
    if "y" in x:
        x = x[x["y"].notna()]
        if state["task"] == "classification":
            x["y"] = x["y"].astype("int64")
    return x


# ---------------------------------------------------------------- checks

def check_columns(columns: list[str], dtypes: dict, data: Data) -> tuple[list[str], list[str], list[str]]:
    """Schema checks on metadata alone. Returns (features, numeric, categorical)."""
    where = data.source
    if data.target and data.target not in columns:
        raise UserError(f"data.target: column {data.target!r} not found in {where}; columns are {columns}")
    if data.time_column and data.time_column not in columns:
        raise UserError(f"data.time_column: column {data.time_column!r} not found in {where}; columns are {columns}")
    unknown = [c for c in data.drop if c not in columns]
    if unknown:
        raise UserError(f"data.drop: columns {unknown} not found in {where}; columns are {columns}")
    exclude = {data.time_column, *data.drop}
    if data.task != "forecasting":
        exclude.add(data.target)
    if data.features is not None:
        missing = [c for c in data.features if c not in columns]
        if missing:
            raise UserError(f"data.features: columns {missing} not found in {where}; columns are {columns}")
        features = list(data.features)
        if data.task == "forecasting" and data.target not in features:
            features.append(data.target)  # the series' own past is an input
    else:
        features = [c for c in columns if c not in exclude and c != ROW]
    if not features:
        raise UserError(f"data.features: no input columns left in {where}")
    numeric, categorical = [], []
    for c in features:
        dt = dtypes[c]
        if pd.api.types.is_bool_dtype(dt) or pd.api.types.is_numeric_dtype(dt) or pd.api.types.is_datetime64_any_dtype(dt):
            numeric.append(c)
        else:
            categorical.append(c)
    if categorical and data.preprocessing.categorical == "none":
        raise UserError(f"data.preprocessing.categorical: 'none' but columns {categorical} hold text; "
                        "choose onehot or ordinal, or leave them out of data.features")
    if data.task == "regression" and not pd.api.types.is_numeric_dtype(dtypes[data.target]):
        raise UserError(f"data.target: column {data.target!r} is {dtypes[data.target]}, regression needs numbers")
    if data.task == "forecasting" and data.target in categorical:
        raise UserError(f"data.target: column {data.target!r} is {dtypes[data.target]}, forecasting needs numbers")
    if data.shape is not None and data.task == "forecasting":
        raise UserError("data.shape: forecasting inputs are shaped [window, features]; remove data.shape")
    return features, numeric, categorical


def check_rows(ddf: dd.DataFrame, features: list[str], data: Data) -> dict:
    """Checks that need one pass over the rows: empty data, all-missing columns, one class."""
    cols = list(dict.fromkeys(features + ([data.target] if data.target else [])))
    todo = {"rows": ddf.shape[0], "missing": ddf[cols].isna().sum()}
    if data.task == "classification":
        todo["classes"] = ddf[data.target].dropna().drop_duplicates().head(1001, npartitions=-1, compute=False)
    got = dask.compute(todo)[0]
    if got["rows"] == 0:
        raise UserError(f"data.source: {data.source!r} holds no rows")
    empty = [c for c, n in got["missing"].items() if n == got["rows"]]
    if empty:
        raise UserError(f"data: column(s) {empty} hold only missing values; leave them out of data.features "
                        "or fix the source")
    if data.task == "classification":
        labels = got["classes"]
        if len(labels) < 2:
            shown = _plain(labels.iloc[0]) if len(labels) else None
            raise UserError(f"data.target: column {data.target!r} has one class ({shown!r}); "
                            "classification needs at least two")
        if len(labels) > 1000:
            raise UserError(f"data.target: column {data.target!r} has over 1000 classes; "
                            "is this a regression target? set data.task: regression")
    if data.preprocessing.impute == "none":
        holes = [c for c in features if got["missing"][c] > 0]
        if holes:
            raise UserError(f"data.preprocessing.impute: 'none' but columns {holes} have missing values; "
                            "choose mean, median, most_frequent or drop")
    return got


# ---------------------------------------------------------------- fit

def _fit_state(train: dd.DataFrame, features, numeric, categorical, data: Data, dtypes) -> dict:
    """Fit imputation, categories and clipping bounds on train (raw); scaling comes after."""
    p = data.preprocessing
    strategy = p.impute
    num = train[numeric].map_partitions(lambda d: d.apply(_numeric)) if numeric else None
    todo = {}
    if numeric:
        todo["mean"], todo["std"] = num.mean(), num.std()
        todo["median"] = num.quantile(0.5) if strategy in ("median", "drop", "interpolate", "none") else None
        if strategy == "most_frequent":
            todo["mode"] = {c: num[c].value_counts() for c in numeric}
    todo["cats"] = {c: train[c].map_partitions(_as_text, meta=(c, "object")).value_counts() for c in categorical}
    got = dask.compute(todo)[0]
    values, clip = {}, {}
    for c in numeric:
        if strategy == "mean":
            values[c] = float(got["mean"][c])
        elif strategy == "most_frequent":
            counts = got["mode"][c]
            values[c] = float(counts.sort_index().idxmax()) if len(counts) else float(got["mean"][c])
        else:  # median; also the fallback for drop/interpolate/none where a hole still turns up at predict time
            values[c] = float(got["median"][c])
        if p.clip_outliers is not None:
            mu, sd = float(got["mean"][c]), float(got["std"][c] or 0.0)
            if sd > 0:
                clip[c] = [mu - p.clip_outliers * sd, mu + p.clip_outliers * sd]
        if not math.isfinite(values[c]):  # all missing in train: nothing better than zero
            values[c] = 0.0
    categories = {}
    for c in categorical:
        counts = got["cats"][c]
        categories[c] = sorted(str(k) for k in counts.index)
        if len(counts):
            values[c] = str(counts.sort_index().idxmax())  # most frequent, ties by name
    columns = list(numeric)
    for c in categorical:
        columns += [f"{c}={cat}" for cat in categories[c]] if p.categorical == "onehot" else [c]
    return {
        "version": VERSION, "task": data.task, "target": data.target, "time_column": data.time_column,
        "features": features, "numeric": numeric, "categorical": categorical,
        "dtypes": {c: str(dtypes[c]) for c in features},
        "impute": {"strategy": strategy, "values": values}, "clip": clip,
        "categories": categories, "encoding": p.categorical if p.categorical != "none" else "onehot",
        "columns": columns, "sources": [col.split("=", 1)[0] for col in columns],
        "scale": {"kind": "none"},
    }


def _fit_scale(encoded: dd.DataFrame | pd.DataFrame, state: dict, kind: str) -> dict:
    """Scaling statistics of the encoded train columns (x0..), keyed by encoded column name."""
    if kind == "none":
        return {"kind": "none"}
    if kind == "standard":
        center, width = dask.compute(encoded.mean(), encoded.std(ddof=0))
    else:
        center, top = dask.compute(encoded.min(), encoded.max())
        width = top - center
    width = width.where(width > 1e-12, 1.0).fillna(1.0)
    cols = state["columns"]
    return {"kind": kind,
            "center": {cols[i]: float(center.iloc[i]) for i in range(len(cols))},
            "scale": {cols[i]: float(width.iloc[i]) for i in range(len(cols))}}


# ---------------------------------------------------------------- the step

def _assign_split(pdf: pd.DataFrame, seed: int, val: float, test: float, partition_info=None) -> pd.DataFrame:
    part = partition_info["number"] if partition_info else 0
    u = np.random.default_rng([seed, part]).random(len(pdf))
    pdf = pdf.copy()
    pdf[SPLIT] = np.where(u < test, 2, np.where(u < test + val, 1, 0)).astype("int8")
    return pdf


def _number_rows(ddf: dd.DataFrame) -> dd.DataFrame:
    lengths = ddf.map_partitions(len).compute().tolist()
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).tolist()

    def number(pdf, partition_info=None):
        start = offsets[partition_info["number"]] if partition_info else 0
        pdf = pdf.copy()
        pdf[ROW] = np.arange(start, start + len(pdf), dtype="int64")
        return pdf

    meta = ddf._meta.assign(**{ROW: np.int64(0)})
    return ddf.map_partitions(number, meta=meta)


def _write(frame: dd.DataFrame, path: Path) -> None:
    frame.to_parquet(str(path), write_index=False, name_function=lambda i: f"part-{i:05d}.parquet")


def preprocess(data: Data, home: Path, log=print) -> Prepared:
    """Run (or reuse) preprocessing of `data`; returns where its Parquet splits and state are."""
    t0 = time.perf_counter()
    fingerprint = f"{source_fingerprint(data)}-v{VERSION}"
    final = Path(home) / ".cache" / fingerprint
    if (final / "preprocessor.json").is_file():
        prepared = Prepared.load(final)
        log(f"preprocess: cached {final.name} ({prepared.state['counts']})")
        return prepared
    ddf = load_source(data)
    dtypes = dict(ddf.dtypes.items())
    features, numeric, categorical = check_columns(list(ddf.columns), dtypes, data)
    check_rows(ddf, features, data)
    if data.target and data.task != "forecasting":
        ddf = ddf[~ddf[data.target].isna()]  # clean: a row without a target teaches nothing
    if data.task == "forecasting":
        from .forecast import preprocess_series

        state, frames = preprocess_series(ddf.compute(), features, numeric, categorical, data, dtypes)
    else:
        state, frames = _preprocess_rows(ddf, features, numeric, categorical, data, dtypes)
    state["fingerprint"] = fingerprint
    state["source"] = data.source
    with atomic_dir(final, home) as tmp:
        for name, frame in frames.items():
            if isinstance(frame, pd.DataFrame):
                frame = dd.from_pandas(frame, npartitions=1, sort=False)
            _write(frame, tmp / name)
        counts = {s: int(len(pd.read_parquet(tmp / s, columns=[ROW]))) for s in SPLITS}
        if counts["train"] == 0 or (data.split.val > 0 and counts["val"] == 0) or counts["test"] == 0:
            raise UserError(f"data.split: too few rows to split ({counts}); use more data or other fractions")
        state["counts"] = counts
        (tmp / "preprocessor.json").write_text(json.dumps(state, indent=1))
    prepared = Prepared(final, state, cached=False, seconds=time.perf_counter() - t0)
    log(f"preprocess: {counts} rows, {len(state['columns'])} columns in {prepared.seconds:.1f}s")
    return prepared


def _preprocess_rows(ddf, features, numeric, categorical, data: Data, dtypes):
    p, sp = data.preprocessing, data.split
    ddf = _number_rows(ddf)
    meta = ddf._meta.assign(**{SPLIT: np.int8(0)})
    ddf = ddf.map_partitions(_assign_split, sp.seed, sp.val, sp.test, meta=meta)
    if p.impute == "drop":
        ddf = ddf.dropna(subset=features)
    train = ddf[ddf[SPLIT] == 0]
    state = _fit_state(train, features, numeric, categorical, data, dtypes)
    if data.task == "classification":
        counts = train[data.target].map_partitions(_label_text, meta=(data.target, "object")).value_counts().compute()
        raw = train[data.target].dropna().drop_duplicates().compute()
        by_text = {}
        for v in raw:
            by_text.setdefault(_label_text(pd.Series([v])).iloc[0], _plain(v))
        state["classes"] = [by_text[t] for t in sorted(by_text, key=lambda t: (not _is_num(t), _num_key(t)))]
        n, k = float(counts.sum()), len(state["classes"])
        state["class_counts"] = [int(counts.get(str(c), 0)) for c in state["classes"]]
        if k < 2:
            raise UserError(f"data.target: the train split of {data.target!r} holds one class; "
                            "classification needs at least two")
        state["class_weight"] = ([n / (k * max(c, 1)) for c in state["class_counts"]]
                                 if p.balance == "class_weight" else None)
        state["output_dim"] = k
    elif data.task == "regression":
        if p.scale != "none":
            y = train[data.target].map_partitions(_numeric)
            mu, sd = dask.compute(y.mean(), y.std(ddof=0))
            state["target_scale"] = {"center": float(mu), "scale": float(sd) if sd > 1e-12 else 1.0}
        state["output_dim"] = 1
    else:
        state["output_dim"] = 0
    encoded = train.map_partitions(encode, state, False, meta=_x_meta(len(state["columns"])))
    state["scale"] = _fit_scale(encoded, state, p.scale)
    state["input_shape"] = _input_shape(data, len(state["columns"]))
    xy_meta = _xy_meta(len(state["columns"]), data.task)
    frames = {}
    for i, name in enumerate(SPLITS):
        part = ddf[ddf[SPLIT] == i]
        xy = part.map_partitions(frame_xy, state, meta=xy_meta)
        if name == "train" and p.balance == "oversample" and data.task == "classification":
            xy = xy.map_partitions(_oversample, state["class_counts"], meta=xy_meta)
        frames[name] = xy
    frames["test_raw"] = ddf[ddf[SPLIT] == 2].drop(columns=[SPLIT])
    return state, frames


def _oversample(pdf: pd.DataFrame, class_counts: list[int]) -> pd.DataFrame:
    """Repeat each row of class c round(n_max / n_c) times, so the classes weigh about the same."""
    top = max(class_counts)
    reps = np.array([max(1, round(top / max(c, 1))) for c in class_counts])
    return pdf.loc[pdf.index.repeat(reps[pdf["y"].to_numpy()])].reset_index(drop=True)


def _is_num(t: str) -> bool:
    try:
        float(t)
        return True
    except ValueError:
        return False


def _num_key(t: str):
    return (float(t), "") if _is_num(t) else (0.0, t)


def _x_meta(d: int) -> pd.DataFrame:
    return pd.DataFrame({f"x{i}": pd.Series(dtype="float32") for i in range(d)})


def _xy_meta(d: int, task: str) -> pd.DataFrame:
    meta = _x_meta(d)
    if task == "classification":
        meta["y"] = pd.Series(dtype="int64")
    elif task == "regression":
        meta["y"] = pd.Series(dtype="float32")
    meta[ROW] = pd.Series(dtype="int64")
    return meta


def _input_shape(data: Data, d: int) -> list[int]:
    if data.shape is None:
        return [d]
    if int(np.prod(data.shape)) != d:
        raise UserError(f"data.shape: {data.shape} holds {int(np.prod(data.shape))} values but the features "
                        f"encode to {d} columns")
    return list(data.shape)


def check_source(data: Data) -> None:
    """The cheap checks (file exists and reads, columns exist, dtypes fit) before any engine starts."""
    ddf = load_source(data)
    check_columns(list(ddf.columns), dict(ddf.dtypes.items()), data)
