"""Processes of the local cluster: ports on loopback, whether a service answers, waiting for it, and
whether a recorded pid is still the process we started."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .settings import home

LOOPBACK = "127.0.0.1"
STARTED_ENV: dict[str, str] = {}  # the environment the command was started with (flows/cli): the command server's


class ClusterError(RuntimeError):
    """A service did not come up; the message says which, and where its log is."""


def cluster_dir() -> Path:
    return home() / "cluster"


def bin_path(name: str) -> str:
    exe = Path(sys.executable).parent / name
    return str(exe) if exe.exists() else name


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def pick_port(preferred: int, taken: set[int]) -> int:
    if preferred not in taken and port_free(preferred):
        taken.add(preferred)
        return preferred
    while True:
        with socket.socket() as s:
            s.bind((LOOPBACK, 0))
            port = s.getsockname()[1]
        if port not in taken:
            taken.add(port)
            return port


def answers_tcp(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def answers_unix(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(1.0)
        return s.connect_ex(str(path)) == 0


def answers_http(url: str, method: str = "GET", headers: dict | None = None) -> bool:
    """True when the URL answers 200; a POST sends an empty JSON body (Prefect's filter endpoints)."""
    try:
        data = b"{}" if method == "POST" else None
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
        with urllib.request.urlopen(req, timeout=2) as r:  # noqa: S310 - our own loopback server
            if method == "POST":
                return r.status == 200 and json.loads(r.read() or b"[]") != []
            return r.status == 200
    except (OSError, ValueError):
        return False


def wait_until(check, timeout: float, what: str, log: Path | None = None, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.5)
    tail = ""
    if log and log.exists():
        tail = "\n".join(log.read_text(errors="ignore").splitlines()[-15:])
    raise ClusterError(f"{what} did not answer within {timeout:.0f}s (log: {log})\n{tail}")


@dataclass
class Service:
    name: str
    address: str
    pid: int
    started: float
    log: str


def alive(pid: int, started: float) -> bool:
    import psutil

    try:
        p = psutil.Process(pid)
        return abs(p.create_time() - started) < 2 and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def ray_nodes(address: str, env: dict) -> int:
    """Alive nodes, from `ray status` (the state API needs the dashboard, which stays off)."""
    status = subprocess.run([bin_path("ray"), "status", "--address", address], capture_output=True, text=True,
                            env=env, timeout=60)
    active = status.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0] if "Active:" in status.stdout else ""
    return active.count("node_")


def dask_workers(address: str, security=None) -> int:
    from distributed import Client

    try:
        with Client(address, timeout=5, security=security) as c:
            return len(c.scheduler_info()["workers"])
    except OSError:
        return 0
