"""Data: sources (builtin, files, fsspec), the typed Preprocessor, the Dask steps and the split."""
from .precheck import check_source
from .prepare import Prepared, preprocess
from .preprocessor import ROW, Preprocessor
from .sources import load_source, read_table

__all__ = ["ROW", "Prepared", "Preprocessor", "check_source", "load_source", "preprocess", "read_table"]
