"""The fitted preprocessor: a typed object that turns raw rows into model rows and back.

It is the only thing that knows its own keys. `fit` happens on Dask (tasks/data/fit.py, series.py);
`transform`, `model_rows`, `encode_target` and `decode_target` are pure pandas/numpy, used the same
way by training, evaluation, `conductor predict` and serving, so all of them see the same numbers.
`save`/`load` keep the JSON layout of `preprocessor.json` that earlier run directories hold.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..lazy import LazyModule

pd = LazyModule("pandas")  # loaded on first use: a sweep's driver and trial workers read a Preprocessor only

# Bump when the output format or a statistic changes, so old caches are not reused. 3: medians from a 1001-point
# quantile grid. 4: means and sds (clip bounds, scaler) from per-partition moments merged exactly, in float64
# (the scaler's float32 sums were off by ~1e-7, relative). 5: CSV partitions of 16 MB (sources.CSV_BLOCK), not
# 64: the split is drawn per partition, so a file bigger than a block splits differently.
VERSION = 5
ROW = "__row__"


def as_text(s: pd.Series) -> pd.Series:
    """Each value as str(value), None where missing; the per-value definition is `_as_text_each`, and the
    vectorised paths (str, int, float, bool columns) give the very same Series."""
    fast = _fast_text(s, whole=False)
    return _as_text_each(s) if fast is None else fast


def as_number(s: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(s):
        return s.astype("int64").astype("float64") / 1e9
    return pd.to_numeric(s, errors="coerce").astype("float64")


def label_text(y: pd.Series) -> pd.Series:
    """Labels as text, integral floats without their '.0' (a CSV's 3.0 is the label 3); the per-value
    definition is `_label_text_each`, and the vectorised paths give the very same Series."""
    fast = _fast_text(y, whole=True)
    return _label_text_each(y) if fast is None else fast


def _text(v):
    return None if v is None else str(v)


def _label(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _as_text_each(s: pd.Series) -> pd.Series:
    return s.astype(object).where(s.notna(), None).map(_text)


def _label_text_each(y: pd.Series) -> pd.Series:
    return y.astype(object).map(_label)


# The vectorised text of a column gives the same Series as the per-value definitions above: str values are kept
# as they are, other values get the per-value function once per distinct value (pd.factorize), spread back.
# It serves pandas' str and "string" dtypes, numpy numbers and booleans, and object (or category) columns whose
# values are all str, all floats, all integers or all booleans; anything else (str mixed with numbers, 1 with
# True, which factorize takes for one value, Decimals, dates, nullable numbers, a label's pd.NA or NaT in an
# object column) takes the per-value definition.
def _default_str_dtype():
    return pd.Series(["a"]).dtype


def _fast_text(s: pd.Series, whole: bool) -> pd.Series | None:
    """as_text (whole=False) or label_text (whole=True) of `s` without a Python call per value; None when
    `s` holds values the vectorised paths do not cover."""
    dt, str_dtype = s.dtype, _default_str_dtype()
    if isinstance(dt, pd.StringDtype):  # str (NaN), or "string" (pd.NA: what Dask's read_csv gives text)
        if whole and dt.na_value is not np.nan:
            s = s.fillna(str(pd.NA))  # a label's pd.NA reads '<NA>'
        if not s.notna().any():
            return pd.Series(np.full(len(s), None, dtype=object), index=s.index, name=s.name)
        return pd.Series(s.array.astype(str_dtype, copy=True), index=s.index, name=s.name)
    numpy_kind = dt.kind if isinstance(dt, np.dtype) else None
    if numpy_kind is None and not isinstance(dt, pd.CategoricalDtype) or numpy_kind not in (None, *"iubfO"):
        return None  # nullable numbers, dates, ...
    if numpy_kind in ("i", "u", "b", "f"):
        present = s.notna().to_numpy()
        numbers = s.to_numpy()[present]
    else:
        values = s.astype(object).to_numpy()
        present = ~pd.isna(values)
        kinds = set(map(type, values[present]))
        if whole and not all(t is type(None) or issubclass(t, float) for t in set(map(type, values[~present]))):
            return None  # only None and float NaN are a missing label
        if kinds <= {str} or all(issubclass(t, bool | np.bool_) for t in kinds) or \
                all(issubclass(t, int | np.integer) and not issubclass(t, bool) for t in kinds):
            numbers = values[present]
        elif all(issubclass(t, float) for t in kinds):
            numbers = values[present].astype("float64")
        else:
            return None
    if not present.any():
        return pd.Series(np.full(len(s), None, dtype=object), index=s.index, name=s.name)
    codes, uniques = pd.factorize(numbers)
    each = _label if whole else _text
    texts = [each(v) for v in uniques.tolist()]
    if not whole and numbers.dtype.kind == "f":  # factorize takes -0.0 and 0.0 for one value
        zero = numbers == 0
        codes[zero] = len(texts) + np.signbit(numbers[zero])
        texts += ["0.0", "-0.0"]
    where = np.full(len(s), -1, dtype=np.intp)
    where[present] = codes
    return pd.Series(pd.array(texts, dtype=str_dtype).take(where, allow_fill=True), index=s.index, name=s.name)


def plain_label(v):
    """A label as JSON keeps it: integral numbers as int, the rest as str."""
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if isinstance(v, int | np.integer):
        return int(v)
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return int(v)
    return str(v)


@dataclass
class Preprocessor:
    """Imputation, encoding, clipping and scaling fitted on the train split, plus the target's coding."""

    task: str
    target: str | None
    features: list[str]
    numeric: list[str]
    categorical: list[str]
    columns: list[str]  # encoded columns, in model order
    sources: list[str]  # the feature each encoded column comes from (one-hot parts share one)
    impute: dict  # {"strategy": ..., "values": {column: value}}
    clip: dict[str, list[float]] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)
    encoding: str = "onehot"
    scale: dict = field(default_factory=lambda: {"kind": "none"})
    dtypes: dict[str, str] = field(default_factory=dict)
    time_column: str | None = None
    input_shape: list[int] = field(default_factory=list)
    output_dim: int = 0
    classes: list | None = None
    class_counts: list[int] | None = None
    class_weight: list[float] | None = None
    target_scale: dict | None = None
    window: int | None = None
    horizon: int | None = None
    fingerprint: str = ""
    source: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    time_format: str | None = None  # forecasting: how time_column was read ("number", a strftime format)
    warnings: list[str] = field(default_factory=list)  # said once when fitted, again when the cache is reused
    version: int = VERSION

    # ------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, raw: dict) -> Preprocessor:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def save(self, directory: Path) -> None:
        """preprocessor.json; the source as shown, never with a credential of its URL."""
        from cluster.settings import redact_url

        raw = self.to_dict()
        raw["source"] = redact_url(raw.get("source", ""))
        (Path(directory) / "preprocessor.json").write_text(json.dumps(raw, indent=1))

    @classmethod
    def load(cls, directory: Path) -> Preprocessor:
        return cls.from_dict(json.loads((Path(directory) / "preprocessor.json").read_text()))

    # ------------------------------------------------------------ what a model sees
    @property
    def n_inputs(self) -> int:
        """Columns x0.. of a model row: the encoded features, or window x features for forecasting."""
        return int(np.prod(self.input_shape))

    @property
    def scale_kind(self) -> str:
        return self.scale["kind"]

    @property
    def target_column(self) -> int:
        """Forecasting: the encoded column of the series itself."""
        return self.columns.index(self.target)

    @property
    def target_index(self) -> int | None:
        """What build_model's `target_index` gets: the target's column in each forecasting window step, else None."""
        return self.target_column if self.task == "forecasting" else None

    def missing_columns(self, columns) -> list[str]:
        return [c for c in self.features if c not in columns]

    def transform(self, pdf: pd.DataFrame, scale: bool = True) -> pd.DataFrame:
        """Raw feature rows → float32 model inputs x0..xD-1."""
        missing = self.missing_columns(pdf.columns)
        if missing:
            raise UserError(f"input: columns {missing} are missing; the model was trained on {self.features}")
        out, values = {}, self.impute["values"]
        for c in self.numeric:
            s = as_number(pdf[c])
            if self.impute["strategy"] == "interpolate":
                s = s.interpolate(limit_direction="both")
            if c in values:
                s = s.fillna(values[c])
            out[c] = (s.clip(*self.clip[c]) if c in self.clip else s).to_numpy()
        for c in self.categorical:
            s = as_text(pdf[c])
            if c in values:
                s = s.where(s.notna(), values[c])
            cats = self.categories[c]
            codes = _codes(s, cats)
            if self.encoding == "onehot":
                for i, cat in enumerate(cats):  # an unseen category is all zeros
                    out[f"{c}={cat}"] = (s == cat).to_numpy() if codes is None else codes == i
            elif codes is None:
                out[c] = s.map(lambda v, lk={cat: float(i) for i, cat in enumerate(cats)}: lk.get(v, -1.0)).to_numpy()
            else:
                out[c] = codes
        # float32 columns in model order, each scaled in float64 on its own: no float64 copy of the whole frame
        x, scaled = np.empty((len(pdf), len(self.columns)), dtype="float32", order="F"), scale and self.scale_kind != "none"
        for j, col in enumerate(self.columns):
            v = np.asarray(out[col], dtype="float64")
            x[:, j] = (v - self.scale["center"][col]) / self.scale["scale"][col] if scaled else v
        return pd.DataFrame(x, index=pdf.index, columns=[f"x{j}" for j in range(len(self.columns))])

    def unscale(self, x: np.ndarray) -> np.ndarray:
        """Scaled encoded columns back to their encoded values (for pictures of VAE rows)."""
        if self.scale["kind"] == "none":
            return x
        center = np.array([self.scale["center"][c] for c in self.columns])
        width = np.array([self.scale["scale"][c] for c in self.columns])
        return x * width + center

    # ------------------------------------------------------------ the target
    def encode_target(self, y: pd.Series) -> pd.Series:
        if self.task == "classification":
            text, names = label_text(y), [str(c) for c in self.classes]
            codes = _codes(text, names)
            if codes is None:
                return text.map({name: i for i, name in enumerate(names)})  # NaN for a label train never saw
            found = codes >= 0  # what the map of text to index gives: int64, or float64 with NaN for the unseen
            return pd.Series(codes if found.all() else np.where(found, codes, np.nan), index=y.index, name=y.name)
        ts = self.target_scale or {"center": 0.0, "scale": 1.0}
        return ((as_number(y) - ts["center"]) / ts["scale"]).astype("float32")

    def decode_target(self, values: np.ndarray) -> np.ndarray:
        """Model-space regression/forecast values back to the target's own units."""
        ts = self.target_scale or {"center": 0.0, "scale": 1.0}
        return np.asarray(values, dtype="float64") * ts["scale"] + ts["center"]

    def labels(self, indices) -> np.ndarray:
        """Class indices → the labels as the user wrote them."""
        return np.asarray(self.classes, dtype=object)[np.asarray(indices, dtype=int)]

    def model_rows(self, pdf: pd.DataFrame) -> pd.DataFrame:
        """One partition of raw rows → model rows: x0.., y (none for generative), __row__."""
        x = self.transform(pdf)
        if self.task in ("classification", "regression"):
            x["y"] = self.encode_target(pdf[self.target]).to_numpy()
        x[ROW] = pdf[ROW].to_numpy().astype("int64")
        if "y" in x:
            x = x[x["y"].notna()]
            if self.task == "classification":
                x["y"] = x["y"].astype("int64")
        return x

    def series(self, pdf: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Forecasting: encoded inputs (N, F) and the scaled series (N,) of time-ordered raw rows."""
        x = self.transform(pdf).to_numpy()
        return x, x[:, self.target_column]


def _codes(s: pd.Series, categories: list[str]) -> np.ndarray | None:
    """The position of each text value among `categories`, -1 for an unseen or missing one: each distinct value
    is looked up once. None when a category is listed twice (the callers then look up value by value)."""
    index = pd.Index(categories, dtype=object)
    if not index.is_unique:
        return None
    codes, uniques = pd.factorize(s)  # -1 for a missing value
    return np.append(index.get_indexer(np.asarray(uniques, dtype=object)), -1)[codes].astype(np.int64)
