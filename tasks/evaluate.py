"""Test evaluation: metrics, a predictions table, plots and permutation importance, as files."""
from __future__ import annotations

import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from . import metrics as M  # noqa: E402
from .preprocess import decode_target  # noqa: E402
from .train import predict_all, score  # noqa: E402

MAIN_METRIC = {"classification": "accuracy", "regression": "r2", "forecasting": "r2", "generative": "recon_mse"}


def prediction_frame(task: str, pred: dict, state: dict) -> pd.DataFrame:
    """Test predictions in the user's terms: original labels and probabilities, or values."""
    frame = pd.DataFrame({"row": pred["row"]}) if pred["row"] is not None else pd.DataFrame(index=range(pred["n"]))
    if task == "classification":
        classes = state["classes"]
        frame["label"] = [classes[i] for i in pred["y"].astype(int).reshape(-1)]
        frame["prediction"] = [classes[i] for i in pred["out"].argmax(-1)]
        for i, c in enumerate(classes):
            frame[f"p_{c}"] = pred["out"][:, i]
    elif task == "regression":
        frame["target"] = decode_target(pred["y"], state).reshape(-1)
        frame["prediction"] = decode_target(pred["out"], state).reshape(-1)
    elif task == "forecasting":
        y, out = decode_target(pred["y"], state), decode_target(pred["out"], state)
        for h in range(out.shape[1]):
            frame[f"target_t+{h + 1}"] = y[:, h]
            frame[f"prediction_t+{h + 1}"] = out[:, h]
    else:
        frame["recon_mse"] = ((pred["out"] - pred["x"]) ** 2).mean(-1)
    return frame


def permutation_importance(model, pred: dict, state: dict, repeats: int = 3, seed: int = 0) -> dict[str, float]:
    """Drop of the main test metric when one source column (all its one-hot parts) is shuffled."""
    task = state["task"]
    x, y = pred["x"], pred["y"]
    if task not in ("classification", "regression") or x is None or len(x) < 2:
        return {}
    metric = MAIN_METRIC[task]

    def value(xs):
        with torch.no_grad():
            out = model.predict(torch.from_numpy(xs)).numpy()
        return score(task, {"logs": {}, "out": out, "y": y, "n": len(xs)}, state)[metric]

    base = value(x)
    rng = np.random.default_rng(seed)
    sources = np.array(state["sources"])
    result = {}
    for col in state["features"]:
        idx = np.flatnonzero(sources == col)
        drops = []
        for _ in range(repeats):
            xs = x.copy()
            xs[:, idx] = xs[rng.permutation(len(xs))][:, idx]
            drops.append(base - value(xs))
        result[col] = float(np.mean(drops))
    return dict(sorted(result.items(), key=lambda kv: -kv[1]))


# ---------------------------------------------------------------- plots

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


def plot_confusion(frame: pd.DataFrame, classes: list, path: Path) -> str:
    from sklearn.metrics import confusion_matrix

    labels = [str(c) for c in classes]
    cm = confusion_matrix(frame["label"].astype(str), frame["prediction"].astype(str), labels=labels)
    size = max(4, 0.5 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xticklabels=labels, yticklabels=labels,
           xlabel="predicted", ylabel="actual", title="confusion matrix (test)")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, cm[i, j], ha="center", va="center", color="white" if cm[i, j] > cm.max() / 2 else "black")
    return _save(fig, path)


def plot_predicted_vs_actual(actual: np.ndarray, predicted: np.ndarray, path: Path, title: str) -> str:
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


def plot_importance(importance: dict[str, float], metric: str, path: Path) -> str:
    items = list(importance.items())[:20][::-1]
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.3 * len(items) + 1)))
    ax.barh([k for k, _ in items], [v for _, v in items], color="C1")
    ax.set(xlabel=f"drop in test {metric} when shuffled", title="permutation importance")
    return _save(fig, path)


def _image_shape(state: dict) -> tuple[int, int] | None:
    shape = state.get("input_shape", [])
    if len(shape) == 3 and shape[0] == 1:
        return shape[1], shape[2]
    d = len(state["columns"])
    side = int(round(d ** 0.5))
    return (side, side) if side * side == d else None


def _unscale(x: np.ndarray, state: dict) -> np.ndarray:
    if state["scale"]["kind"] == "none":
        return x
    cols = state["columns"]
    center = np.array([state["scale"]["center"][c] for c in cols])
    width = np.array([state["scale"]["scale"][c] for c in cols])
    return x * width + center


def plot_grid(images: np.ndarray, hw: tuple[int, int], path: Path, title: str, cols: int = 8) -> str:
    rows = int(np.ceil(len(images) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.1 + 0.4))
    for ax, img in zip(np.ravel(axes), list(images) + [None] * (rows * cols - len(images)), strict=True):
        ax.axis("off")
        if img is not None:
            ax.imshow(img.reshape(hw), cmap="gray_r")
    fig.suptitle(title)
    return _save(fig, path)


def evaluate(model, test_batches, state: dict, history: list[dict], out_dir: Path, device="cpu",
             seed: int = 0) -> dict:
    """Score the test split and write predictions.parquet, plots/*.png and eval.json into out_dir."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    plots = out_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    task = state["task"]
    model = model.to(device).eval()
    pred = predict_all(model, test_batches, device)
    test = score(task, pred, state)
    frame = prediction_frame(task, pred, state)
    files = [plot_learning_curves(history, task, plots / "learning_curves.png")]
    importance = {}
    if task == "classification":
        files.append(plot_confusion(frame, state["classes"], plots / "confusion_matrix.png"))
    elif task == "regression":
        files.append(plot_predicted_vs_actual(frame["target"].to_numpy(), frame["prediction"].to_numpy(),
                                              plots / "predicted_vs_actual.png", "test: predicted vs actual"))
    elif task == "forecasting":
        actual, predicted = frame["target_t+1"].to_numpy(), frame["prediction_t+1"].to_numpy()
        files.append(plot_predicted_vs_actual(actual, predicted, plots / "predicted_vs_actual.png", "test: forecast vs actual"))
        files.append(plot_series(actual, predicted, plots / "forecast.png"))
        # persistence: the last observed value of the target, carried forward to every horizon step
        col = state["columns"].index(state["target"])
        last = pred["x"].reshape(len(pred["x"]), *state["input_shape"])[:, -1, col]
        persist = np.repeat(decode_target(last, state)[:, None], pred["y"].shape[1], axis=1)
        test["persistence_r2"] = M.regression(decode_target(pred["y"], state), persist)["r2"]
    else:
        # the baseline a VAE must beat: every test row predicted as the train mean image (0 when scaled)
        mean_image = np.zeros_like(pred["x"]) if state["scale"]["kind"] == "standard" else np.tile(pred["x"].mean(0), (len(pred["x"]), 1))
        test["mean_image_mse"] = float(((pred["x"] - mean_image) ** 2).mean())
        test["recon_mse"] = float(((pred["out"] - pred["x"]) ** 2).mean())
        hw = _image_shape(state)
        if hw is not None:
            k = min(16, len(pred["x"]))
            pairs = np.empty((2 * k, pred["x"].shape[1]))
            pairs[0::2], pairs[1::2] = _unscale(pred["x"][:k], state), _unscale(pred["out"][:k], state)
            files.append(plot_grid(pairs, hw, plots / "reconstructions.png", "test rows (odd) and reconstructions (even)"))
            gen = torch.Generator().manual_seed(seed)
            samples = model.sample(32, generator=gen).cpu().numpy()
            files.append(plot_grid(_unscale(samples, state), hw, plots / "samples.png", "samples from the prior"))
    if task in ("classification", "regression") and len(state.get("input_shape", [])) == 1:
        importance = permutation_importance(model, pred, state, seed=seed)
        if importance:
            files.append(plot_importance(importance, MAIN_METRIC[task], plots / "permutation_importance.png"))
    frame.to_parquet(out_dir / "predictions.parquet", index=False)
    result = {"metrics": {f"test/{k}": v for k, v in test.items()}, "importance": importance,
              "plots": [f"plots/{f}" for f in files], "seconds": time.perf_counter() - t0}
    (out_dir / "eval.json").write_text(json.dumps(result, indent=1))
    return result
