"""`cluster up`'s command server (flows/cli/command_server.py, flows/cli/handover.py): started last, with the
environment `up` itself was started with, as the commands it serves are; `status` asks its socket, `down` stops
it with the other services."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .processes import STARTED_ENV, ClusterError, answers_unix, wait_until

SOCKET = "commands.sock"
SOCKET_PATH_MAX = 100  # a Unix socket's path holds at most 107 bytes


def socket_path(home: Path) -> Path:
    return home / "cluster" / SOCKET


def start(cluster, log) -> None:
    """Without it (a home too deep for a socket's path, a server that did not come up) a run or a sweep starts
    in its own process, as it does without `cluster up`."""
    path = cluster.root / SOCKET
    if len(str(path)) > SOCKET_PATH_MAX:
        return
    proc = cluster._spawn("commands", [sys.executable, "-m", "flows.cli.command_server", str(path)],
                          env=dict(STARTED_ENV or os.environ))
    for service in cluster.services:
        if service.name == "commands":
            service.address = str(path)
    try:
        wait_until(lambda: answers_unix(path), 60, "command server", cluster.logs / "commands.log", proc)
    except ClusterError as e:
        log(f"warning: {str(e).splitlines()[0]}; runs and sweeps start in their own processes")
