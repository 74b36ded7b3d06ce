"""Builtin data sets: the files scikit-learn and statsmodels ship, and a seeded generator (`builtin:synthetic`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from ..lazy import LazyModule

pd = LazyModule("pandas")  # loaded on first use: drivers import this module for checks that never need it

SYNTHETIC_KEYS = {"rows", "features", "informative", "classes", "weights", "noise", "seed", "partitions"}


def builtin_frame(name: str, task: str, options: dict | None = None) -> pd.DataFrame:
    """A builtin data set as pandas: scikit-learn's and statsmodels' bundled files, or a generator."""
    if name == "digits":
        return digits_frame()
    if name == "breast_cancer":
        from sklearn.datasets import load_breast_cancer

        b = load_breast_cancer(as_frame=True)
        frame = b.frame.rename(columns={"target": "label"})
        frame["label"] = np.asarray(b.target_names)[frame["label"]]  # string labels: malignant/benign
        return frame
    if name == "diabetes":
        from sklearn.datasets import load_diabetes

        return load_diabetes(as_frame=True, scaled=False).frame.rename(columns={"target": "progression"})
    if name == "sunspots":
        import statsmodels.api as sm

        frame = sm.datasets.sunspots.load_pandas().data
        return frame.rename(columns={"YEAR": "year", "SUNACTIVITY": "sunactivity"}).astype({"year": int})
    if name == "macrodata":
        import statsmodels.api as sm

        # US quarterly macro series 1959Q1-2009Q3; `t` (1959.0, 1959.25, ...) orders it as data.time_column
        frame = sm.datasets.macrodata.load_pandas().data.astype({"year": int, "quarter": int})
        frame.insert(0, "t", frame["year"] + (frame["quarter"] - 1) / 4)
        return frame
    if name == "synthetic":
        return synthetic_frame(task, options or {})
    raise UserError(f"data.source: unknown builtin {name!r}")


def digits_frame() -> pd.DataFrame:
    """scikit-learn's digits as `load_digits(as_frame=True).frame` gives them (tests/unit/data/test_builtin_digits.py
    compares the two), read from the file scikit-learn ships without importing scikit-learn: that import is ~1 s of
    a command's start here, in the checks that run before any engine on one core, and a sweep needs it nowhere else
    in its own process."""
    import gzip
    import importlib.util

    found = importlib.util.find_spec("sklearn")  # finds the package (its __init__.py) without importing it
    path = Path(found.origin).parent / "datasets" / "data" / "digits.csv.gz" if found and found.origin else None
    if path is None or not path.is_file():  # a scikit-learn that keeps it elsewhere: its own loader
        from sklearn.datasets import load_digits

        return load_digits(as_frame=True).frame.rename(columns={"target": "label"})
    with gzip.open(path, "rt", encoding="utf-8") as f:
        data = np.loadtxt(f, delimiter=",")
    frame = pd.DataFrame(data[:, :-1], columns=[f"pixel_{r}_{c}" for r in range(8) for c in range(8)])
    frame["label"] = data[:, -1].astype(int)
    return frame


def synthetic_frame(task: str, options: dict) -> pd.DataFrame:
    unknown = set(options) - SYNTHETIC_KEYS
    if unknown:
        raise UserError(f"data.synthetic: unknown keys {sorted(unknown)}; allowed {sorted(SYNTHETIC_KEYS)}")
    rows, feats = int(options.get("rows", 2000)), int(options.get("features", 20))
    seed = int(options.get("seed", 0))
    cols = [f"x{i}" for i in range(feats)]
    if task == "regression":
        from sklearn.datasets import make_regression

        x, y = make_regression(n_samples=rows, n_features=feats, n_informative=int(options.get("informative", min(feats, 10))),
                               noise=float(options.get("noise", 10.0)), random_state=seed)
        frame = pd.DataFrame(x.astype(np.float32), columns=cols)
        frame["y"] = y
        return frame
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=rows, n_features=feats, n_informative=int(options.get("informative", min(feats, 10))),
        n_redundant=0, n_classes=int(options.get("classes", 2)), weights=options.get("weights"),
        flip_y=float(options.get("noise", 0.01)), random_state=seed,
    )
    frame = pd.DataFrame(x.astype(np.float32), columns=cols)
    frame["label"] = y
    return frame
