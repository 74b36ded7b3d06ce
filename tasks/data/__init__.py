"""Data: sources (builtin, files, fsspec), the typed Preprocessor, the Dask steps and the split.
Attributes load on first use (tasks/lazy.py): checking a cached source imports neither Dask's dataframe nor
the preprocessing steps."""
from ..lazy import lazy

_WHERE = {"ROW": ".preprocessor", "Prepared": ".prepared", "Preprocessor": ".preprocessor",
          "check_source": ".precheck", "load_source": ".sources", "preprocess": ".cache", "read_table": ".sources"}
__getattr__ = lazy(__name__, _WHERE)
__all__ = sorted(_WHERE)
