"""Directories that appear whole or not at all."""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path


def prune_empty_parents(path: Path, stop: Path) -> None:
    """Remove empty directories from `path` up to and including `stop`, so a failure leaves no trace."""
    path, stop = Path(path).absolute(), Path(stop).absolute()
    while True:
        try:
            path.rmdir()
        except OSError:
            return
        if path == stop or stop not in path.parents:
            return
        path = path.parent


@contextlib.contextmanager
def atomic_dir(final: Path, root: Path):
    """Yield a temporary sibling of `final`; rename it to `final` on success, remove it on failure."""
    final = Path(final)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:6]}"
    tmp.mkdir(parents=True)
    try:
        yield tmp
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished the same thing first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        prune_empty_parents(final.parent, root)
        raise
