"""Preprocessing on Dask: check schema → clean → impute → encode → clip → scale → split → Parquet.

Every statistic is fitted on the train split only and kept in a `Preprocessor` saved as
`preprocessor.json`. The output lands in runs/.cache/<fingerprint>/ and a re-run with the same
source and spec reuses it. The cache key is the data spec, each file's content (tasks/data/sources.py
`content_digest`) and the preprocessing code's VERSION; an entry appears whole (staged, renamed) or not at
all, and the least recently used entries go once the cache passes CONDUCTOR_CACHE_MAX_GB (default 20).
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import dask.dataframe as dd
import pandas as pd

from ..errors import UserError
from ..spec import Data
from ..staged import staged
from .checks import check_columns, check_rows
from .fit import fit_columns, fit_scale, fit_target, input_shape
from .preprocessor import ROW, VERSION, Preprocessor
from .series import prepare_series
from .sources import expand_source, load_source, read_errors, source_fingerprint, value_line
from .split import SPLIT, SPLITS, assign_split, class_warnings, number_rows, oversample
from .times import time_key


@dataclass
class Prepared:
    """A finished preprocessing output: where its Parquet splits are, and the fitted preprocessor."""

    dir: Path
    preprocessor: Preprocessor
    cached: bool = False
    seconds: float = 0.0

    def path(self, split: str) -> str:
        return str(self.dir / split)

    @classmethod
    def load(cls, directory: Path) -> Prepared:
        return cls(Path(directory), Preprocessor.load(directory), cached=True)


def say_warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def preprocess(data: Data, home: Path, log=print, warn=say_warning) -> Prepared:
    """Run (or reuse) preprocessing of `data`; returns where its Parquet splits and preprocessor are.
    `warn` gets each one-line warning (a rare class, a label only val/test hold), again on a cached run."""
    t0 = time.perf_counter()
    fingerprint = f"{source_fingerprint(data)}-v{VERSION}"
    final = Path(home) / ".cache" / fingerprint
    if (final / "preprocessor.json").is_file():
        prepared = Prepared.load(final)
        log(f"preprocess: cached {final.name} ({prepared.preprocessor.counts})")
    else:
        ddf = load_source(data)
        dtypes = dict(ddf.dtypes.items())
        with read_errors(data.source, dtypes):  # a bad line past dask's sample fails here, mid-computation
            prep = _build(ddf, dtypes, data, final, home)
        prepared = Prepared(final, prep, cached=False, seconds=time.perf_counter() - t0)
        log(f"preprocess: {prep.counts} rows, {len(prep.columns)} columns in {prepared.seconds:.1f}s")
    for message in prepared.preprocessor.warnings:
        warn(message)
    evict(final.parent, keep=final)
    return prepared


CACHE_MAX_GB = 20.0  # CONDUCTOR_CACHE_MAX_GB overrides
IN_USE_S = 3600  # an entry used this recently may feed a running training (Ray Data reads its Parquet): kept
USERS = ".users"  # <entry>.<pid>: a process that preprocessed (or reused) an entry and may still read it


def _size(path: Path) -> int:
    total = 0
    for f in path.rglob("*"):
        try:
            total += f.stat().st_size if f.is_file() else 0
        except FileNotFoundError:  # another process evicts it right now
            pass
    return total


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _claimed(cache: Path) -> set[str]:
    """Entries a live process claimed; the claims of dead processes go."""
    from ..staged import alive

    names = set()
    for claim in (cache / USERS).glob("*"):
        name, _, pid = claim.name.rpartition(".")
        if pid.isdigit() and alive(int(pid)):
            names.add(name)
        else:
            claim.unlink(missing_ok=True)
    return names


def cache_limit() -> float:
    raw = os.environ.get("CONDUCTOR_CACHE_MAX_GB", str(CACHE_MAX_GB))
    try:
        limit = float(raw)
    except ValueError:
        limit = -1.0
    if not limit >= 0:
        raise UserError(f"CONDUCTOR_CACHE_MAX_GB: {raw!r} is not a size in GB (a number >= 0, e.g. 20 or 0.5)")
    return limit * 2**30


def evict(cache: Path, keep: Path, now: float | None = None) -> list[Path]:
    """Least recently used entries of the cache go until it holds at most CONDUCTOR_CACHE_MAX_GB. Kept: the
    entry in use, those a live process claimed (it preprocessed or reused them: a run or sweep may still read
    them), and those used within the last hour (a process on another machine); the cache may then stay over
    its limit. Returns what went."""
    now = time.time() if now is None else now
    (cache / USERS).mkdir(parents=True, exist_ok=True)
    (cache / USERS / f"{keep.name}.{os.getpid()}").touch()
    os.utime(keep)  # "used now": the modification time of an entry's folder is its last use
    limit, claimed = cache_limit(), _claimed(cache)
    entries = sorted((p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")), key=_mtime)
    sizes = {p: _size(p) for p in entries}
    total, removed = sum(sizes.values()), []
    for entry in entries:
        if total <= limit:
            break
        if entry == keep or entry.name in claimed or now - _mtime(entry) < IN_USE_S:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        total -= sizes[entry]
        removed.append(entry)
    return removed


def _build(ddf: dd.DataFrame, dtypes: dict, data: Data, final: Path, home: Path) -> Preprocessor:
    features, numeric, categorical = check_columns(list(ddf.columns), dtypes, data)
    seen = check_rows(ddf, features, data)
    if data.target and data.task != "forecasting":
        ddf = ddf[~ddf[data.target].isna()]  # clean: a row without a target teaches nothing
    if data.task == "forecasting":
        prep, frames = prepare_series(ddf.compute(), features, numeric, categorical, data, dtypes)
    else:
        prep, frames = _prepare_rows(ddf, features, numeric, categorical, data, dtypes)
        prep.warnings += class_warnings(prep, seen.get("labels"), data)
    prep.fingerprint, prep.source = final.name, data.source
    with staged(final, home) as tmp:
        for name, frame in frames.items():
            if isinstance(frame, pd.DataFrame):
                frame = dd.from_pandas(frame, npartitions=1, sort=False)
            frame.to_parquet(str(tmp / name), write_index=False, name_function=lambda i: f"part-{i:05d}.parquet")
        counts = {s: int(len(pd.read_parquet(tmp / s, columns=[ROW]))) for s in SPLITS}
        if counts["train"] == 0 or (data.split.val > 0 and counts["val"] == 0) or counts["test"] == 0:
            raise UserError(f"data.split: too few rows to split ({counts}); use more data or other fractions")
        prep.counts = counts
        prep.save(tmp)
    return prep


def _prepare_rows(ddf, features, numeric, categorical, data: Data, dtypes):
    p, sp = data.preprocessing, data.split
    ddf = assign_split(number_rows(ddf), sp.seed, sp.val, sp.test)
    if p.impute == "drop":
        ddf = ddf.dropna(subset=features)
    train = ddf[ddf[SPLIT] == 0]
    prep = fit_columns(train, features, numeric, categorical, data, dtypes)
    fit_target(prep, train, data)
    encoded = train.map_partitions(prep.transform, False, meta=_x_meta(len(prep.columns)))
    prep.scale = fit_scale(encoded, prep.columns, p.scale)
    prep.input_shape = input_shape(data, len(prep.columns))
    xy_meta = _xy_meta(len(prep.columns), data.task)
    frames = {}
    for i, name in enumerate(SPLITS):
        xy = ddf[ddf[SPLIT] == i].map_partitions(prep.model_rows, meta=xy_meta)
        if name == "train" and p.balance == "oversample" and data.task == "classification":
            xy = xy.map_partitions(oversample, prep.class_counts, meta=xy_meta)
        frames[name] = xy
    frames["test_raw"] = ddf[ddf[SPLIT] == 2].drop(columns=[SPLIT])
    return prep, frames


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


LOCAL_PASS_BYTES = 32 * 2**20


def check_source(data: Data) -> None:
    """The checks that need no engine: the file exists and reads, the columns exist and their dtypes fit;
    and for a small source (a builtin set, files up to 32 MB) the one pass over its rows as well, here in
    this process, so that a one-class target, an all-missing column, inf or a bad line is refused before
    anything starts. A bigger source gets that pass inside the flow, on Dask."""
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


def source_bytes(data: Data) -> int:
    if data.source.startswith("builtin:"):
        return 0
    _, files, fs = expand_source(data.source)
    return sum(int(fs.info(f).get("size") or 0) for f in files)
