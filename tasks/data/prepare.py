"""Preprocessing on Dask: check schema → clean → impute → encode → clip → scale → split → Parquet.

Every statistic is fitted on the train split only and kept in a `Preprocessor` saved as
`preprocessor.json`. The output lands in runs/.cache/<fingerprint>/ and a re-run with the same
source and spec reuses it. The cache key is the data spec, each file's content (tasks/data/sources.py
`content_digest`) and the preprocessing code's VERSION; an entry appears whole (staged, renamed) or not at
all, and the least recently used entries go once the cache passes CONDUCTOR_CACHE_MAX_GB (default 20).

Passes over the source: a tabular source is read 3 times (was 10: the row checks, the partition lengths, the
column statistics, the target's two, the scale statistics, and one read per output of the four):
  1. the row checks (tasks/data/checks.py), the partition lengths `number_rows` needs, and every statistic of
     the raw train rows: imputation values, categories, clipping bounds, the classes and their counts or the
     regression target's scale, in one `dask.compute`. The split is drawn per row from a generator seeded per
     partition (split.py `assign_split`), so the train rows are known without the row numbers;
  2. the scale statistics of the train rows once imputed, clipped and encoded: those need pass 1's values;
     none with data.preprocessing.scale: none (2 passes then);
  3. transform and write train, val, test and test_raw, four `to_parquet` in one `dask.compute`: Dask shares
     the read (and numbering, and split) of each partition between the four, so it is parsed once.
A forecasting source is read twice: its row checks (with its size, refused above FORECAST_MAX_ROWS before it
is loaded), then whole into memory (tasks/data/series.py). tests/unit/data/test_preprocess_passes.py counts
the parses of each CSV block. A long pass says how far it is through `log` (tasks/data/passes.py).
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import dask.dataframe as dd
import pandas as pd
import pyarrow.parquet as pq

from ..errors import UserError
from ..spec import Data
from ..staged import staged
from .checks import check_columns, check_rows, judge_rows, row_checks
from .fit import (
    columns_from,
    columns_todo,
    input_shape,
    scale_from,
    scale_todo,
    target_from,
    target_todo,
)
from .locate import is_parse_error
from .passes import Passes
from .prepared import Prepared
from .preprocessor import ROW, Preprocessor
from .series import check_series_size, prepare_series
from .sources import load_source, read_errors
from .split import SPLIT, SPLITS, class_warnings, number_rows, oversample, split_rows


def build(data: Data, final: Path, home: Path, log, progress, t0: float) -> Prepared:
    """Preprocess `data` into the cache entry `final` (tasks/data/cache.py `preprocess` calls this on a miss)."""
    ddf = load_source(data)
    dtypes = dict(ddf.dtypes.items())
    with read_errors(data.source, dtypes):  # a bad line past dask's sample fails here, mid-computation
        prep = _build(ddf, dtypes, data, final, home, Passes(progress or log, ddf.npartitions, _pass_count(data), start=t0))
    prepared = Prepared(final, prep, cached=False, seconds=time.perf_counter() - t0)
    log(f"preprocess: {prep.counts} rows, {len(prep.columns)} columns in {prepared.seconds:.1f}s")
    return prepared


def _pass_count(data: Data) -> int:
    if data.task == "forecasting":
        return 3  # row checks, loading, writing the windows
    return 2 if data.preprocessing.scale == "none" else 3


def _part_name(i: int) -> str:
    return f"part-{i:05d}.parquet"


def _build(ddf: dd.DataFrame, dtypes: dict, data: Data, final: Path, home: Path, passes: Passes | None = None
           ) -> Preprocessor:
    passes = passes or Passes(lambda *_: None, ddf.npartitions, _pass_count(data))
    features, numeric, categorical = check_columns(list(ddf.columns), dtypes, data)
    if data.task == "forecasting":
        size = ddf.map_partitions(lambda pdf: pd.Series([int(pdf.memory_usage(index=True, deep=True).sum())]),
                                  meta=(None, "int64")).sum()
        got = _first_pass(passes, "row checks", {"checks": row_checks(ddf, features, data), "bytes": size},
                          ddf, features, data)
        judge_rows(got["checks"], features, data)
        check_series_size(data, int(got["checks"]["rows"]), int(got["bytes"]))
        prep, frames = prepare_series(passes.compute("loading the series", ddf), features, numeric, categorical,
                                      data, dtypes)
        frames = {name: dd.from_pandas(frame, npartitions=1, sort=False) for name, frame in frames.items()}
    else:
        prep, frames, seen = _prepare_rows(ddf, features, numeric, categorical, data, dtypes, passes)
        prep.warnings += class_warnings(prep, seen.get("labels"), data)
    prep.fingerprint, prep.source = final.name, data.source
    with staged(final, home) as tmp:
        # one computation for the four: each partition is read, numbered and split once for all of them
        passes.compute("transform and write", [
            frame.to_parquet(str(tmp / name), write_index=False, name_function=_part_name, compute=False)
            for name, frame in frames.items()])
        counts = {s: sum(pq.ParquetFile(f).metadata.num_rows for f in (tmp / s).glob("*.parquet")) for s in SPLITS}
        if counts["train"] == 0 or (data.split.val > 0 and counts["val"] == 0) or counts["test"] == 0:
            raise UserError(f"data.split: too few rows to split ({counts}); use more data or other fractions")
        prep.counts = counts
        prep.save(tmp)
    return prep


def _first_pass(passes: Passes, what: str, todo: dict, ddf: dd.DataFrame, features: list[str], data: Data) -> dict:
    """Pass 1; should it fail, the row checks alone run again, so that a source they refuse (no rows, a column
    all missing, ...) is refused in their one line rather than by whatever statistic broke on it first."""
    try:
        # statistics of rows the checks then refuse (inf, a column all missing) warn of invalid values: not said
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return passes.compute(what, todo)
    except (ValueError, TypeError, ArithmeticError, LookupError) as e:
        if not is_parse_error(e):  # a parse error: read_errors names its file and line
            check_rows(ddf, features, data)
        raise


def _prepare_rows(ddf, features, numeric, categorical, data: Data, dtypes, passes: Passes):
    p = data.preprocessing
    kept = ddf[~ddf[data.target].isna()] if data.target else ddf  # clean: a row without a target teaches nothing
    split = split_rows(kept, features, data)
    train = split[split[SPLIT] == 0]
    todo = {"checks": row_checks(ddf, features, data), "lengths": kept.map_partitions(len),
            "columns": columns_todo(train, numeric, categorical, data), "target": target_todo(train, data)}
    got = _first_pass(passes, "row checks and statistics", todo, ddf, features, data)
    seen = judge_rows(got["checks"], features, data)
    prep = columns_from(got["columns"], features, numeric, categorical, data, dtypes)
    target_from(prep, got["target"], data)
    if p.scale != "none":
        encoded = train.map_partitions(prep.transform, False, meta=_x_meta(len(prep.columns)))
        prep.scale = scale_from(passes.compute("scale statistics", scale_todo(encoded, p.scale)), prep.columns,
                                p.scale)
    prep.input_shape = input_shape(data, len(prep.columns))
    rows = split_rows(number_rows(kept, got["lengths"].tolist()), features, data)
    xy_meta = _xy_meta(len(prep.columns), data.task)
    frames = {}
    for i, name in enumerate(SPLITS):
        xy = rows[rows[SPLIT] == i].map_partitions(prep.model_rows, meta=xy_meta)
        if name == "train" and p.balance == "oversample" and data.task == "classification":
            xy = xy.map_partitions(oversample, prep.class_counts, meta=xy_meta)
        frames[name] = xy
    frames["test_raw"] = rows[rows[SPLIT] == 2].drop(columns=[SPLIT])
    return prep, frames, seen


def _x_meta(d: int) -> pd.DataFrame:
    return pd.DataFrame({f"x{i}": pd.Series(dtype="float32") for i in range(d)})


def _xy_meta(d: int, task: str) -> pd.DataFrame:
    meta = _x_meta(d)
    if task == "classification":
        meta["y"] = pd.Series(dtype="int64")
    elif task == "regression":
        meta["y"] = pd.Series(dtype="float32")
    meta[ROW] = pd.Series(dtype="int64")
    return meta
