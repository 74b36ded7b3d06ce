"""Evaluation: metrics, the one batch path, plots, permutation importance, baselines, and `evaluate` once per run."""
from .baselines import BASELINE_ROWS, score_baselines, verdict, versus
from .evaluate import evaluate, prediction_frame
from .outputs import model_outputs, predict_all, score
from .plots import MAIN_METRIC

__all__ = ["BASELINE_ROWS", "MAIN_METRIC", "evaluate", "model_outputs", "predict_all", "prediction_frame", "score",
           "score_baselines", "verdict", "versus"]
