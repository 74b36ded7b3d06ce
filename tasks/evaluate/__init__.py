"""Evaluation: metrics, the one batch path, plots, permutation importance, and `evaluate` once per run."""
from .evaluate import evaluate, prediction_frame
from .outputs import model_outputs, predict_all, score
from .plots import MAIN_METRIC

__all__ = ["MAIN_METRIC", "evaluate", "model_outputs", "predict_all", "prediction_frame", "score"]
