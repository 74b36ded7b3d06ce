"""The checks a command runs on its data before any engine starts (tasks/data/checks.py holds the checks)."""
from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from ..errors import UserError
from ..spec import Data
from .preprocessor import VERSION
from .sources import expand_source, source_fingerprint

LOCAL_PASS_BYTES = 32 * 2**20
CACHE_MAX_GB = 20.0  # CONDUCTOR_CACHE_MAX_GB overrides


def cache_entry(data: Data, home: Path) -> Path:
    """Where the preprocessed splits of `data` are (or go) under CONDUCTOR_HOME: keyed by the data spec, each
    file's bytes and the preprocessing code's VERSION."""
    return Path(home) / ".cache" / f"{source_fingerprint(data)}-v{VERSION}"


def cache_limit() -> float:
    raw = os.environ.get("CONDUCTOR_CACHE_MAX_GB", str(CACHE_MAX_GB))
    try:
        limit = float(raw)
    except ValueError:
        limit = -1.0
    if not limit >= 0:
        raise UserError(f"CONDUCTOR_CACHE_MAX_GB: {raw!r} is not a size in GB (a number >= 0, e.g. 20 or 0.5)")
    return limit * 2**30


def check_source(data: Data, home: Path | None = None) -> None:
    """The checks that need no engine: the file exists and reads, the columns exist and their dtypes fit;
    and for a small source (a builtin set, files up to 32 MB) the one pass over its rows as well, here in
    this process, so that a one-class target, an all-missing column, inf or a bad line is refused before
    anything starts. A bigger source gets that pass inside the flow, on Dask.
    With `home`: a small source whose splits are in the cache there passed these checks when they were made
    (the same data spec and bytes, cache_entry), and is not read again: 1.2 s of a warm sweep's 13 s start
    here went to loading digits through scikit-learn and checking its rows."""
    if home is not None and _prepared_before(data, home):
        return  # nor is dask.dataframe imported (0.4 s of the command's start)
    from .checks import check_columns, check_rows
    from .sources import load_source, read_errors, value_line
    from .times import time_key

    ddf = load_source(data)
    dtypes = dict(ddf.dtypes.items())
    features, _, _ = check_columns(list(ddf.columns), dtypes, data)
    if source_bytes(data) <= LOCAL_PASS_BYTES:
        import dask

        # sync and task shuffles: no distributed client, even when an earlier flow left one as the default
        with read_errors(data.source, dtypes), dask.config.set({"scheduler": "sync", "dataframe.shuffle.method": "tasks"}):
            check_rows(ddf, features, data)
            if data.task == "forecasting" and data.time_column:  # dates that do not parse, or read two ways
                time_key(ddf[data.time_column].compute(), data.time_column, data.time_format,
                         partial(value_line, data.source, data.time_column))


def _prepared_before(data: Data, home: Path) -> bool:
    try:
        return source_bytes(data) <= LOCAL_PASS_BYTES and (cache_entry(data, home) / "preprocessor.json").is_file()
    except Exception:  # noqa: BLE001 - a source that cannot be listed or read: the full check says why
        return False


def source_bytes(data: Data) -> int:
    if data.source.startswith("builtin:"):
        return 0
    _, files, fs = expand_source(data.source)
    return sum(int(fs.info(f).get("size") or 0) for f in files)
