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
import pandas as pd

from ..errors import UserError

VERSION = 3  # 3: medians from a 1001-point quantile grid. Bump when the output format or a statistic changes, so old caches are not reused
ROW = "__row__"


def as_text(s: pd.Series) -> pd.Series:
    return s.astype(object).where(s.notna(), None).map(lambda v: None if v is None else str(v))


def as_number(s: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(s):
        return s.astype("int64").astype("float64") / 1e9
    return pd.to_numeric(s, errors="coerce").astype("float64")


def label_text(y: pd.Series) -> pd.Series:
    """Labels as text, integral floats without their '.0' (a CSV's 3.0 is the label 3)."""
    def norm(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        if isinstance(v, float | np.floating) and float(v).is_integer():
            return str(int(v))
        return str(v)

    return y.astype(object).map(norm)


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
            if c in self.clip:
                s = s.clip(*self.clip[c])
            out[c] = s
        for c in self.categorical:
            s = as_text(pdf[c])
            if c in values:
                s = s.where(s.notna(), values[c])
            if self.encoding == "onehot":
                for cat in self.categories[c]:  # an unseen category is all zeros
                    out[f"{c}={cat}"] = (s == cat).astype("float64")
            else:
                lookup = {cat: float(i) for i, cat in enumerate(self.categories[c])}
                out[c] = s.map(lambda v, lk=lookup: lk.get(v, -1.0)).astype("float64")
        frame = pd.DataFrame(out, index=pdf.index)[self.columns]
        if scale and self.scale["kind"] != "none":
            frame = (frame - pd.Series(self.scale["center"])[self.columns]) / pd.Series(self.scale["scale"])[self.columns]
        frame.columns = [f"x{i}" for i in range(len(self.columns))]
        return frame.astype("float32")

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
            lookup = {str(c): i for i, c in enumerate(self.classes)}
            return label_text(y).map(lookup)  # NaN for a label the train split never saw
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
