"""Data: sources (builtin, files, fsspec), the typed Preprocessor, the Dask steps and the split."""
from .prepare import Prepared, check_source, preprocess
from .preprocessor import ROW, Preprocessor
from .sources import load_source, read_table

__all__ = ["ROW", "Prepared", "Preprocessor", "check_source", "load_source", "preprocess", "read_table"]
