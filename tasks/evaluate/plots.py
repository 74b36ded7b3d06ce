"""Evaluation plots as PNG: learning curves, confusion matrix, predicted vs actual, the forecast and
its R² per horizon step, permutation importance, and grids of VAE rows."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..data import Preprocessor  # noqa: E402
from ..spec import MAIN_METRIC  # noqa: E402,F401 - here too for the callers that read it from plots
from .metrics import confusion_counts  # noqa: E402


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def plot_learning_curves(history: list[dict], task: str, path: Path) -> str:
    epochs = [r["epoch"] for r in history]
    metric = f"val/{MAIN_METRIC[task]}" if task != "generative" else "val/elbo"
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for key in ("train/loss", "val/loss"):
        if history and key in history[0]:
            axes[0].plot(epochs, [r[key] for r in history], marker="o", ms=3, label=key)
    axes[0].set(xlabel="epoch", ylabel="loss", title="loss")
    if axes[0].lines:
        axes[0].legend()
    if history and metric in history[0]:
        axes[1].plot(epochs, [r[metric] for r in history], marker="o", ms=3, color="C2")
    axes[1].set(xlabel="epoch", ylabel=metric, title=metric)
    return _save(fig, path)


def plot_confusion(actual: np.ndarray, predicted: np.ndarray, classes: list, path: Path) -> str:
    """Class indices, actual and predicted, counted (metrics.confusion_counts) and drawn with the labels."""
    labels = [str(c) for c in classes]
    cm = confusion_counts(actual, predicted, len(labels))
    size = max(4, 0.5 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xticklabels=labels, yticklabels=labels,
           xlabel="predicted", ylabel="actual", title="confusion matrix (test)")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, cm[i, j], ha="center", va="center", color="white" if cm[i, j] > cm.max() / 2 else "black")
    return _save(fig, path)


PLOT_POINTS = 50_000  # a scatter of more points draws for minutes and shows no more


def plot_predicted_vs_actual(actual: np.ndarray, predicted: np.ndarray, path: Path, title: str) -> str:
    if len(actual) > PLOT_POINTS:  # a seeded sample of the points, said in the title
        keep = np.random.default_rng(0).choice(len(actual), PLOT_POINTS, replace=False)
        title = f"{title} ({PLOT_POINTS:,} of {len(actual):,} rows)"
        actual, predicted = np.asarray(actual)[keep], np.asarray(predicted)[keep]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].scatter(actual, predicted, s=10, alpha=0.7)
    lo, hi = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    axes[0].plot([lo, hi], [lo, hi], "k--", lw=1)
    axes[0].set(xlabel="actual", ylabel="predicted", title=title)
    axes[1].scatter(predicted, actual - predicted, s=10, alpha=0.7)
    axes[1].axhline(0, color="k", lw=1)
    axes[1].set(xlabel="predicted", ylabel="residual", title="residuals")
    return _save(fig, path)


def plot_series(actual: np.ndarray, predicted: np.ndarray, path: Path) -> str:
    fig, ax = plt.subplots(figsize=(10, 3.5))
    ax.plot(actual, label="actual", lw=1.5)
    ax.plot(predicted, label="forecast (t+1)", lw=1.5)
    ax.set(xlabel="test step", title="one-step forecast on the test stretch")
    ax.legend()
    return _save(fig, path)


def plot_horizon_r2(model_r2: list[float], persistence_r2: list[float], path: Path) -> str:
    steps = np.arange(1, len(model_r2) + 1)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, model_r2, marker="o", label="model")
    ax.plot(steps, persistence_r2, marker="s", ls="--", label="persistence")
    ax.set(xlabel="steps ahead", ylabel="test R²", xticks=steps, title="test R² per horizon step")
    ax.legend()
    return _save(fig, path)


def plot_importance(importance: dict[str, float], metric: str, path: Path) -> str:
    items = list(importance.items())[:20][::-1]
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.3 * len(items) + 1)))
    ax.barh([k for k, _ in items], [v for _, v in items], color="C1")
    ax.set(xlabel=f"drop in test {metric} when shuffled", title="permutation importance")
    return _save(fig, path)


def image_shape(prep: Preprocessor) -> tuple[int, int] | None:
    shape = prep.input_shape
    if len(shape) == 3 and shape[0] == 1:
        return shape[1], shape[2]
    d = len(prep.columns)
    side = int(round(d ** 0.5))
    return (side, side) if side * side == d else None


def plot_grid(images: np.ndarray, hw: tuple[int, int], path: Path, title: str, cols: int = 8) -> str:
    rows = int(np.ceil(len(images) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.1 + 0.4))
    for ax, img in zip(np.ravel(axes), list(images) + [None] * (rows * cols - len(images)), strict=True):
        ax.axis("off")
        if img is not None:
            ax.imshow(img.reshape(hw), cmap="gray_r")
    fig.suptitle(title)
    return _save(fig, path)
