"""The one way conductor makes an output appear whole or not at all: build it under a temporary
sibling name, rename it in one step when complete, remove it (and the empty folders made for it)
when anything fails. Run directories, the preprocessing cache and `predict --out` files use it."""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path

PREFIX = ".tmp-"


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


def remove(path: Path) -> None:
    if Path(path).is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        Path(path).unlink(missing_ok=True)


@contextlib.contextmanager
def staged(final: Path, root: Path | None = None, directory: bool = True):
    """Yield `.tmp-<name>-<hex>` beside `final` (created when `directory`); on success it becomes
    `final`. If another process finished the same directory first, theirs is kept. On failure the
    temporary path goes, and with `root` the empty folders above it up to `root` too."""
    final = Path(final)
    tmp = final.parent / f"{PREFIX}{final.name}-{uuid.uuid4().hex[:6]}"
    final.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp.mkdir()
    try:
        yield tmp
        try:
            os.replace(tmp, final) if not directory else os.rename(tmp, final)
        except OSError:
            if not (directory and final.exists()):
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished the same thing first
    except BaseException:
        remove(tmp)
        if root is not None:
            prune_empty_parents(final.parent, root)
        raise
