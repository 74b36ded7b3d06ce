"""Evaluation: metrics, the one batch path, plots, permutation importance, baselines, and `evaluate` once per run.
Attributes load on first use (tasks/lazy.py): scikit-learn, matplotlib and torch come with them."""
from ..lazy import lazy

_WHERE = {"BASELINE_ROWS": ".baselines", "score_baselines": ".baselines", "verdict": ".table",
          "versus": ".table", "evaluate": ".evaluate", "prediction_frame": ".evaluate",
          "model_outputs": ".outputs", "predict_all": ".outputs", "score": ".outputs", "MAIN_METRIC": ".plots"}
__getattr__ = lazy(__name__, _WHERE)
__all__ = sorted(_WHERE)
