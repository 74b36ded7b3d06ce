"""Test evaluation, once per run: metrics, a predictions table, plots and permutation importance, as files."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data import Preprocessor
from ..finite import dumps as finite_json
from . import metrics as M
from . import plots as P
from .importance import permutation_importance
from .outputs import predict_all, sample_rows, score

IMPORTANCE_ROWS = 100_000  # permutation importance scores a seeded sample of this many test rows at most


def prediction_frame(pred: dict, prep: Preprocessor) -> pd.DataFrame:
    """Test predictions in the user's terms: original labels and probabilities, or values."""
    frame = pd.DataFrame({"row": pred["row"]}) if pred["row"] is not None else pd.DataFrame(index=range(pred["n"]))
    if prep.task == "classification":
        frame["label"] = list(prep.labels(pred["y"].astype(int).reshape(-1)))
        frame["prediction"] = list(prep.labels(pred["out"].argmax(-1)))
        for i, c in enumerate(prep.classes):
            frame[f"p_{c}"] = pred["out"][:, i]
    elif prep.task == "regression":
        frame["target"] = prep.decode_target(pred["y"]).reshape(-1)
        frame["prediction"] = prep.decode_target(pred["out"]).reshape(-1)
    elif prep.task == "forecasting":
        y, out = prep.decode_target(pred["y"]), prep.decode_target(pred["out"])
        for h in range(out.shape[1]):
            frame[f"target_t+{h + 1}"] = y[:, h]
            frame[f"prediction_t+{h + 1}"] = out[:, h]
    else:
        frame["recon_mse"] = ((pred["out"] - pred["x"]) ** 2).mean(-1)
    return frame


def _forecast_extras(pred: dict, prep: Preprocessor, frame: pd.DataFrame, test: dict, plots: Path) -> list[str]:
    actual, predicted = frame["target_t+1"].to_numpy(), frame["prediction_t+1"].to_numpy()
    files = [P.plot_predicted_vs_actual(actual, predicted, plots / "predicted_vs_actual.png", "test: forecast vs actual"),
             P.plot_series(actual, predicted, plots / "forecast.png")]
    # persistence: the last observed value of the target, carried forward to every horizon step
    last = pred["x"].reshape(len(pred["x"]), *prep.input_shape)[:, -1, prep.target_column]
    persist = np.repeat(prep.decode_target(last)[:, None], pred["y"].shape[1], axis=1)
    y = prep.decode_target(pred["y"])
    test["persistence_r2"] = M.regression(y, persist)["r2"]
    if y.shape[1] > 1:  # one R² per step ahead: a forecast usually fades with the horizon, persistence faster
        model_r2 = M.per_step_r2(y, prep.decode_target(pred["out"]))
        test.update({f"r2_t+{h + 1}": r for h, r in enumerate(model_r2)})
        files.append(P.plot_horizon_r2(model_r2, M.per_step_r2(y, persist), plots / "horizon_r2.png"))
    return files


def _generative_extras(model, pred: dict, prep: Preprocessor, test: dict, plots: Path, seed: int) -> list[str]:
    x = pred["x"]
    # the baseline a VAE must beat: every test row predicted as the train mean image (0 when scaled)
    mean_image = np.zeros_like(x) if prep.scale_kind == "standard" else np.tile(x.mean(0), (len(x), 1))
    test["mean_image_mse"] = float(((x - mean_image) ** 2).mean())
    test["recon_mse"] = float(((pred["out"] - x) ** 2).mean())
    hw = P.image_shape(prep)
    if hw is None:
        return []
    k = min(16, len(x))
    pairs = np.empty((2 * k, x.shape[1]))
    pairs[0::2], pairs[1::2] = prep.unscale(x[:k]), prep.unscale(pred["out"][:k])
    samples = model.sample(32, generator=torch.Generator().manual_seed(seed)).cpu().numpy()
    return [P.plot_grid(pairs, hw, plots / "reconstructions.png", "test rows (odd) and reconstructions (even)"),
            P.plot_grid(prep.unscale(samples), hw, plots / "samples.png", "samples from the prior")]


def evaluate(model, test_batches, prep: Preprocessor, history: list[dict], out_dir: Path, device="cpu",
             seed: int = 0) -> dict:
    """Score the test split and write predictions.parquet, plots/*.png and eval.json into out_dir."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    plots = out_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    task = prep.task
    model = model.to(device).eval()
    # a forecast's persistence and a VAE's reconstructions need every row's inputs; the other tasks keep
    # outputs and targets for every row and inputs for the importance sample only (bounded on large data)
    x_rows = None if task in ("forecasting", "generative") else \
        sample_rows(prep.counts.get("test", 0), IMPORTANCE_ROWS, seed)
    pred = predict_all(model, test_batches, device, x_rows=x_rows)
    test = score(task, pred, prep)
    frame = prediction_frame(pred, prep)
    files = [P.plot_learning_curves(history, task, plots / "learning_curves.png")]
    importance = {}
    if task == "classification":
        files.append(P.plot_confusion(pred["y"].reshape(-1), pred["out"].argmax(-1), prep.classes,
                                      plots / "confusion_matrix.png"))
    elif task == "regression":
        files.append(P.plot_predicted_vs_actual(frame["target"].to_numpy(), frame["prediction"].to_numpy(),
                                                plots / "predicted_vs_actual.png", "test: predicted vs actual"))
    elif task == "forecasting":
        files += _forecast_extras(pred, prep, frame, test, plots)
    else:
        files += _generative_extras(model, pred, prep, test, plots, seed)
    if task in ("classification", "regression") and len(prep.input_shape) == 1:
        sample = pred if x_rows is None else {**pred, "y": pred["y"][x_rows[x_rows < pred["n"]]]}
        importance = permutation_importance(model, sample, prep, seed=seed)
        if importance:
            files.append(P.plot_importance(importance, P.MAIN_METRIC[task], plots / "permutation_importance.png"))
    frame.to_parquet(out_dir / "predictions.parquet", index=False)
    result = {"metrics": {f"test/{k}": v for k, v in test.items()}, "importance": importance,
              "plots": [f"plots/{f}" for f in files], "seconds": time.perf_counter() - t0,
              "importance_rows": len(pred["x"]) if importance and pred["x"] is not None else 0}
    (out_dir / "eval.json").write_text(finite_json(result, indent=1))
    return result
