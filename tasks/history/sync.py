"""Offline W&B runs uploaded later: `wandb sync` on each offline-run-* folder under CONDUCTOR_HOME/wandb, a
few at a time, each folder once. What went up is remembered in CONDUCTOR_HOME/wandb/synced.json, and
wandb's own `.synced` marker (written by `wandb sync` beside the run file) counts too."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

from cluster.settings import write_private

from ..errors import UserError
from ..tracking import logged_in

BOOK = "synced.json"
PROBE_TIMEOUT_S = 2.0
UPLOAD_TIMEOUT_S = 1800


def wandb_root(home: Path) -> Path:
    return Path(home) / "wandb"


def offline_dirs(home: Path) -> list[Path]:
    return sorted(p for p in wandb_root(home).glob("offline-run-*") if p.is_dir())


def run_wandb_dirs(run_dir: Path, home: Path) -> list[Path]:
    """A run's offline W&B folders: the one its wandb.json names, and any other of the same W&B run id
    (a worker restarted from a checkpoint logs to a second folder with that id)."""
    try:
        wb = json.loads((Path(run_dir) / "wandb.json").read_text())
    except (OSError, ValueError):
        return []
    found = {Path(wb["run_dir"])} if wb.get("run_dir") and Path(wb["run_dir"]).name.startswith("offline-run-") else set()
    if wb.get("id"):
        found |= set(wandb_root(home).glob(f"offline-run-*-{wb['id']}"))
    return sorted(p for p in found if p.is_dir())


def read_book(home: Path) -> dict:
    try:
        book = json.loads((wandb_root(home) / BOOK).read_text())
    except (OSError, ValueError):
        return {}
    return book if isinstance(book, dict) else {}


def is_synced(folder: Path, book: dict) -> bool:
    return folder.name in book or any(folder.glob("*.synced"))


def probe_wandb(timeout: float = PROBE_TIMEOUT_S) -> None:
    """A UserError unless W&B's API (WANDB_BASE_URL, default api.wandb.ai:443) takes a TCP connection."""
    url = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai")
    host, port = url.hostname or "api.wandb.ai", url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise UserError(f"sync: cannot reach W&B at {host}:{port} ({e.strerror or type(e).__name__}); "
                        "no network? the offline runs stay under CONDUCTOR_HOME/wandb until a sync gets through") from None


def check_can_upload() -> None:
    if not logged_in():
        raise UserError("sync: not logged in to W&B; set WANDB_API_KEY or run `wandb login`, then sync again")
    probe_wandb()


def upload_command(folder: Path) -> list[str]:
    return [sys.executable, "-m", "wandb", "sync", str(folder)]


def _upload(folder: Path) -> tuple[Path, int, str]:
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"}  # an offline WANDB_MODE must not hold the upload
    try:
        done = subprocess.run(upload_command(folder), capture_output=True, text=True, env=env, timeout=UPLOAD_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as e:
        return folder, 1, f"{type(e).__name__}: {e}"
    tail = (done.stderr.strip() or done.stdout.strip()).splitlines()
    return folder, done.returncode, tail[-1] if tail else ""


def upload(home: Path, folders: list[Path], parallel: int = 4, log=print) -> dict:
    """`wandb sync` each folder, `parallel` at a time; each success is written to synced.json at once (a
    crash midway keeps what went up). Returns {"synced": [...], "failed": {folder: last line}}."""
    synced, failed = [], {}
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        for folder, rc, tail in pool.map(_upload, folders):
            if rc == 0:
                book = read_book(home)
                book[folder.name] = {"synced_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
                write_private(wandb_root(home) / BOOK, json.dumps(book, indent=1))
                synced.append(str(folder))
                log(f"synced {folder.name}")
            else:
                failed[str(folder)] = tail
                log(f"failed: {folder.name}: {tail}")
    return {"synced": synced, "failed": failed}
