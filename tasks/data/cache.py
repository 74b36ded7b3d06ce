"""The preprocessing cache: an entry reused as it is, or built (tasks/data/prepare.py), under
runs/.cache/<fingerprint>/; the least recently used entries go once the cache passes CONDUCTOR_CACHE_MAX_GB.
Reusing an entry imports neither Dask's dataframe nor pandas: what a run or sweep with a cached source
does before its first epoch."""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from ..spec import Data
from .precheck import cache_entry, cache_limit
from .prepared import Prepared


def say_warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def preprocess(data: Data, home: Path, log=print, warn=say_warning, progress=None) -> Prepared:
    """Run (or reuse) preprocessing of `data`; returns where its Parquet splits and preprocessor are.
    `warn` gets each one-line warning (a rare class, a label only val/test hold), again on a cached run."""
    t0 = time.perf_counter()
    final = cache_entry(data, home)
    if (final / "preprocessor.json").is_file():
        prepared = Prepared.load(final)
        log(f"preprocess: cached {final.name} ({prepared.preprocessor.counts})")
    else:  # Dask's dataframe, pandas and the steps load only when something is computed (~0.6 s)
        from .prepare import build

        prepared = build(data, final, home, log, progress, t0)
    for message in prepared.preprocessor.warnings:
        warn(message)
    evict(final.parent, keep=final)
    return prepared


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
