"""Applying a trained run: `predict_rows` in memory, `predict` for files of any size on Dask."""
from .batch import predict
from .rows import predict_rows

__all__ = ["predict", "predict_rows"]
