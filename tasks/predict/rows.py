"""Raw rows in, predictions out, in memory: the one function behind `conductor predict` and serving."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.series import forecast_inputs, order_by_time
from ..errors import UserError
from ..evaluate import model_outputs
from ..runs.load import LoadedRun


def predict_rows(run: LoadedRun, pdf: pd.DataFrame, id_column: str | None = None) -> pd.DataFrame:
    """Labels as the user wrote them plus one probability per class, values, reconstruction errors,
    or (forecasting) the next `horizon` steps from every window of the time-ordered rows."""
    if run.preprocessor.task == "forecasting":
        return _forecast(run, pdf, id_column)
    prep = run.preprocessor
    x = prep.transform(pdf).to_numpy().copy()
    out = pd.DataFrame({id_column: pdf[id_column].to_numpy()}) if id_column else pd.DataFrame(index=range(len(pdf)))
    result = model_outputs(run.model, x)
    if prep.task == "classification":
        picked = prep.labels(result.argmax(-1)) if len(result) else np.asarray(prep.classes, dtype=object)[:0]
        # explicit dtype: an empty partition (Dask's meta) must say what the labels are, not float64
        out["prediction"] = (pd.Series(picked, dtype="int64") if all(isinstance(c, int) for c in prep.classes)
                             else pd.Series(picked.astype(str), dtype="str"))
        for i, c in enumerate(prep.classes):
            out[f"p_{c}"] = result[:, i]
    elif prep.task == "regression":
        out["prediction"] = prep.decode_target(result).reshape(-1)
    else:  # generative: how well the model reconstructs each row (an anomaly score)
        out["recon_mse"] = ((result - x) ** 2).mean(-1)
    return out


def _forecast(run: LoadedRun, pdf: pd.DataFrame, id_column: str | None) -> pd.DataFrame:
    """One forecast per window of the time-ordered input, labelled by its last step."""
    prep = run.preprocessor
    pdf = order_by_time(pdf, prep.time_column, prep.time_format)  # the format the training data was read with
    if len(pdf) < prep.window:
        raise UserError(f"INPUT: {len(pdf)} rows, but the model reads windows of {prep.window}; "
                        f"give at least {prep.window}")
    inputs, last = forecast_inputs(prep, pdf)
    preds = prep.decode_target(model_outputs(run.model, inputs))
    label = id_column or prep.time_column
    out = pd.DataFrame({label: pdf[label].to_numpy()[last]}) if label else pd.DataFrame({"row": last})
    for h in range(prep.horizon):
        out[f"prediction_t+{h + 1}"] = preds[:, h]
    return out
