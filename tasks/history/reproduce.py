"""Does a rerun reproduce its original? Each test metric is compared within the run-to-run noise.

Ray Train's data sharding and thread scheduling make two runs of one spec differ a little even with
every seed fixed, so "equal" means "within a tolerance", and the rule is this:

- accuracy-like metrics (accuracy, balanced_accuracy, f1_macro): a proportion measured on n test rows
  carries a binomial standard error sqrt(p(1-p)/n); the tolerance is 2 of them, at least 0.01.
- r2-like metrics (r2, persistence_r2): 10% of the unexplained variance 1-r2 (what r2 is a ratio of),
  at least 0.02.
- error metrics (loss, rmse, mae, recon_mse, mean_image_mse, elbo): 10% of the original value (relative),
  with an absolute floor of 1e-6.
- anything else under test/: 10% relative, as the error metrics.
"""
from __future__ import annotations

import math

PROPORTIONS = {"accuracy", "balanced_accuracy", "f1_macro"}
R2_LIKE = {"r2", "persistence_r2"}
RELATIVE = 0.10
PROPORTION_FLOOR, R2_FLOOR, ABS_FLOOR = 0.01, 0.02, 1e-6


def tolerance(metric: str, original: float, n_test: int | None) -> float:
    """How far a rerun's `metric` may lie from `original` and still count as the same result."""
    name = metric.split("/")[-1]
    if name in PROPORTIONS:
        p = min(max(original, 0.0), 1.0)
        se = math.sqrt(p * (1 - p) / n_test) if n_test else 0.0
        return max(PROPORTION_FLOOR, 2 * se)
    if name in R2_LIKE or name.startswith("r2_t+"):  # per-step R² of a multi-step forecast
        return max(R2_FLOOR, RELATIVE * abs(1 - original))
    return max(ABS_FLOOR, RELATIVE * abs(original))


def compare_metrics(original: dict, rerun: dict, n_test: int | None) -> list[dict]:
    """One row per numeric test/ metric of the original: both values, the difference, the tolerance and
    whether it holds (a metric the rerun lacks, or that is not finite there, does not)."""
    rows = []
    for key, before in original.items():
        if not key.startswith("test/") or not isinstance(before, int | float) or isinstance(before, bool):
            continue
        after = rerun.get(key)
        tol = tolerance(key, float(before), n_test)
        ok = isinstance(after, int | float) and math.isfinite(after) and abs(after - before) <= tol
        rows.append({"metric": key, "original": before, "rerun": after,
                     "diff": after - before if isinstance(after, int | float) else None,
                     "tolerance": tol, "within": bool(ok)})
    return rows


def verdict(rows: list[dict]) -> str:
    """One line: reproduced, or which metrics moved by how much."""
    if not rows:
        return "not reproduced: the original run has no test metrics to compare"
    off = [r for r in rows if not r["within"]]
    if not off:
        return f"reproduced: all {len(rows)} test metrics within the run-to-run tolerance"
    parts = [f"{r['metric']} " + ("missing" if r["rerun"] is None else f"{r['diff']:+.4g}")
             + f" (tolerance {r['tolerance']:.3g})" for r in off]
    return f"not reproduced: {len(off)} of {len(rows)} test metrics moved beyond the tolerance: {'; '.join(parts)}"
