"""The one way conductor makes an output appear whole or not at all: build it under a temporary
sibling name, rename it in one step when complete, remove it (and the empty folders made for it)
when anything fails. Run directories, the preprocessing cache and `predict --out` files use it."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
import uuid
from pathlib import Path

PREFIX = ".tmp-"
RAY_STORAGE = ".ray_storage"


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
    """Yield `.tmp-<name>-<pid>-<hex>` beside `final` (created when `directory`); on success it becomes
    `final`. If another process finished the same directory first, theirs is kept. On failure the
    temporary path goes, and with `root` the empty folders above it up to `root` too."""
    final = Path(final)
    tmp = final.parent / f"{PREFIX}{final.name}-{os.getpid()}-{uuid.uuid4().hex[:6]}"  # the pid: see clean_leftovers
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


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner(path: Path) -> int | None:
    """The pid in a `.tmp-<name>-<pid>-<hex>` name (None for names made before pids were written)."""
    parts = path.name.rsplit("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def clean_leftovers(home: Path) -> list[Path]:
    """What a killed run or sweep left behind (its staged directories, its Ray Train storage), removed by
    the next command; anything a live process still owns is kept."""
    home, removed = Path(home), []
    if not home.is_dir():
        return removed
    for pattern in (f"{PREFIX}*", f"*/{PREFIX}*", f"*/*/{PREFIX}*", f"*/*/*/{PREFIX}*"):
        for path in home.glob(pattern):
            pid = owner(path)
            if pid is not None and not alive(pid):
                remove(path)
                removed.append(path)
    for run in (home / RAY_STORAGE).glob("[!.]*"):
        pid_file = _owners(home) / run.name
        pid = pid_file.read_text().strip() if pid_file.is_file() else ""
        if pid.isdigit() and not alive(int(pid)):
            release_ray_storage(home, run.name)
            removed.append(run)
    prune_ray_sessions(home)
    for record in (home / ".repro").glob("*"):  # a killed CLI's pending repro record (its run never registered)
        if time.time() - record.stat().st_mtime > PENDING_MAX_S:
            record.unlink(missing_ok=True)
    return removed


PENDING_MAX_S = 86400


SESSION = re.compile(r"session_\d{4}-\d\d-\d\d_[\d_-]+")
RAY_SESSIONS_KEPT = 3  # the newest ended sessions' logs stay for a look after a failure


def prune_ray_sessions(home: Path) -> None:
    """Ray never removes a session folder (logs, sockets, spilled objects; ~2 MB each) under CONDUCTOR_HOME/.ray:
    those no running process names on its command line go, but for the newest few. Not reported: every
    finished run leaves one."""
    import psutil

    sessions = sorted((Path(home) / ".ray").glob("session_2*"), key=lambda p: p.name)
    if len(sessions) <= RAY_SESSIONS_KEPT:
        return
    named = set()
    for p in psutil.process_iter(["cmdline"]):
        named.update(SESSION.findall(" ".join(p.info.get("cmdline") or [])))
    ended = [s for s in sessions if s.name not in named and time.time() - s.stat().st_mtime > 60]
    for session in ended[:-RAY_SESSIONS_KEPT]:
        shutil.rmtree(session, ignore_errors=True)



def claim_ray_storage(home: Path, name: str) -> Path:
    """Record this process as the owner of Ray Train's storage for run `name` (outside the run's own
    folder, which Ray must find empty); returns that folder."""
    _owners(home).mkdir(parents=True, exist_ok=True)
    (_owners(home) / name).write_text(str(os.getpid()))
    return Path(home) / RAY_STORAGE / name


def release_ray_storage(home: Path, name: str) -> None:
    remove(Path(home) / RAY_STORAGE / name)
    (_owners(home) / name).unlink(missing_ok=True)


def _owners(home: Path) -> Path:
    return Path(home) / RAY_STORAGE / ".owners"
