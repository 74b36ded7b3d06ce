"""Data the tests make for themselves (no downloads): a user's messy customer table."""
from __future__ import annotations

import numpy as np
import pandas as pd


def customers(n: int = 1200, seed: int = 0) -> pd.DataFrame:
    """A user's table: numbers and text, holes in both, an outlier, labels as strings."""
    rng = np.random.default_rng(seed)
    age = rng.normal(45, 12, n)
    income = rng.lognormal(10.5, 0.4, n)
    plan = rng.choice(["basic", "plus", "pro"], n, p=[0.5, 0.3, 0.2])
    score = 0.08 * (age - 45) + 1.5 * (plan == "pro") - 1.0 * (plan == "basic") + rng.normal(0, 0.7, n)
    df = pd.DataFrame({"customer": np.arange(10_000, 10_000 + n), "age": age.round(0), "income": income,
                       "plan": plan, "region": rng.choice(["north", "south", "east", "west"], n),
                       "churn": np.where(score > 0.2, "stays", "leaves")})
    df.loc[rng.choice(n, n // 12, replace=False), "age"] = np.nan
    df.loc[rng.choice(n, n // 15, replace=False), "plan"] = None
    df.loc[3, "income"] = 5e7
    return df
