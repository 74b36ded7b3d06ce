"""Warm commands on `conductor cluster up`, the command's side (flows/cli/command_server.py is the server's): one
process that has imported what `conductor run` and `sweep` import (Prefect, Dask's client, Optuna, Ray: 2-3 s of
every such command's start, on one core while the other idles) forks a child for each of them, the way a warm
trial worker is reused for each trial.

`cluster up` starts it (cluster/commands.py: `python -m flows.cli.command_server SOCKET`, with the environment `up`
was started with); `cluster status` shows it as `commands`; `cluster down` stops it. Its socket lives in the
cluster's folder, 0600, and it serves only processes of its own user (the kernel's peer credentials). A command
hands itself over (flows/cli main) when the server holds the same code (a digest of flows, tasks, models and
cluster) and the environment agrees on every variable the engines read when they are imported (PREFECT_, DASK_,
RAY_, PYTHON..., CONDUCTOR_HOME, HOME, locale, W&B's); the child then takes the command's arguments,
environment, working directory, umask and its stdin, stdout and stderr, and runs it as the command would have.
Ctrl-C, SIGTERM and SIGHUP reach it through the command, which waits for its exit code and exits with it; a
command killed outright takes its child with it. Anything else (no server, another environment, other code, a
server that does not answer, CONDUCTOR_COMMAND_SERVER=off) and the command runs in its own process, as without
`cluster up`.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import struct
import sys
import time
from pathlib import Path

HANDED = ("run", "sweep")  # the commands whose start-up is the engines' imports
# what the engines read when they are imported: a command whose environment differs here runs in its own process
MATCHED = ("PREFECT_", "DASK_", "RAY_", "PYTHON", "CONDUCTOR_HOME", "HOME", "LANG", "LC_", "MPLCONFIGDIR", "WANDB_")
# what a run's and a sweep's command import (their flows, Ray's client, SQLAlchemy for Optuna's storage, the sweep's
# driver), not pyarrow: its jemalloc keeps a thread of its own, which a fork does not copy
PRELOAD = ("flows.cli", "flows.sweep", "flows.pipeline", "flows.engines", "tasks.spec_file", "tasks.names",
           "tasks.data.precheck", "tasks.sweep.pool", "tasks.sweep.optimize", "tasks.sweep.objective",
           "tasks.sweep.trials", "tasks.sweep.worker", "tasks.sweep.plots", "tasks.sweep.live", "tasks.sweep.job",
           "models", "cluster.probe", "ray", "ray.actor", "ray.util.placement_group", "optuna.storages._rdb.models",
           "sqlalchemy.dialects.sqlite", "sqlalchemy.dialects.postgresql", "requests", "filelock", "google.protobuf",
           "uvloop", "tornado.platform.asyncio", "prefect.flow_engine", "prefect.artifacts",
           "prefect.utilities.visualization", "fastapi.encoders", "ray.dag", "ray._common.usage.usage_lib",
           "ray._private.runtime_env.uv_runtime_env_hook", "anyio._backends._asyncio", "anyio.streams.tls",
           "email.policy", "pydantic.deprecated.class_validators", "pydantic.deprecated.config", "rich._emoji_codes",
           "optparse", "typer._adapters")
ROOT = Path(__file__).resolve().parents[2]  # the checkout: flows/cli/handover.py
MAX_MESSAGE = 1 << 20
SERVED = {"child": False}  # True in a child of the server: it runs the command itself


def code_version() -> str:
    """A digest of conductor's sources (~10 ms): a server that imported other code serves no command."""
    digest = hashlib.blake2b(digest_size=8)
    for pkg in ("flows", "tasks", "models", "cluster"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            digest.update(path.relative_to(ROOT).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def matched(env) -> dict:
    return {k: v for k, v in env.items() if k.startswith(MATCHED)}


def send(sock: socket.socket, obj: dict, fds: tuple[int, ...] = ()) -> None:
    data = json.dumps(obj).encode()
    data = struct.pack("!I", len(data)) + data
    if fds:
        sent = socket.send_fds(sock, [data], list(fds))
        data = data[sent:]
    if data:  # nothing left: no send at all (a peer that has answered and closed would make it a broken pipe)
        sock.sendall(data)


def receive(sock: socket.socket, max_fds: int = 0) -> tuple[dict | None, list[int]]:
    """One message (None at the end of the stream) and the descriptors that came with it."""
    buf, fds = b"", []
    while len(buf) < 4 or len(buf) < 4 + struct.unpack("!I", buf[:4])[0]:
        if max_fds:
            chunk, got, _, _ = socket.recv_fds(sock, 65536, max_fds)
            fds += got
        else:
            chunk = sock.recv(65536)
        if not chunk:
            for fd in fds:
                os.close(fd)
            return None, []
        buf += chunk
        if len(buf) >= 4 and struct.unpack("!I", buf[:4])[0] > MAX_MESSAGE:
            raise OSError("message too long")
    return json.loads(buf[4:]), fds


def hand_over(argv: list[str], home: Path) -> int | None:
    """Run this command in the child of `cluster up`'s command server and return its exit code; None where
    this process should run it itself."""
    from cluster.commands import socket_path

    command = next((a for a in argv[1:] if not a.startswith("-")), None)
    path = socket_path(home)
    if SERVED["child"] or command not in HANDED or os.environ.get("CONDUCTOR_COMMAND_SERVER") == "off" \
            or not path.exists():
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(10)
        conn.connect(str(path))
        umask = os.umask(0o022)
        os.umask(umask)
        send(conn, {"argv": argv, "env": dict(os.environ), "cwd": os.getcwd(), "umask": umask,
                    "code": code_version()}, fds=(0, 1, 2))
        reply, _ = receive(conn)
        conn.settimeout(None)
    except (OSError, ValueError):
        conn.close()
        return None
    except KeyboardInterrupt:  # Ctrl-C before the child started (the server kills it when this process is gone)
        print("interrupted", file=sys.stderr)
        return 130
    if not reply or "pid" not in reply:
        conn.close()
        if "--debug" in argv or os.environ.get("CONDUCTOR_DEBUG") == "1":
            print(f"note: not run by the command server of `cluster up`: {(reply or {}).get('refused')}",
                  file=sys.stderr)
        return None  # refused (the server's log says why too): this process runs it
    pid = reply["pid"]
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _: kill_quietly(pid, signum))
    try:
        done, _ = receive(conn)
    except (OSError, ValueError):
        done = None
    if done and "exit" in done:
        return done["exit"]
    while kill_quietly(pid, 0):  # the server went down (`cluster down`) before its child ended
        time.sleep(0.1)
    print("failed: the command's process under `conductor cluster up` ended without an exit code (was the cluster "
          "stopped?)", file=sys.stderr)
    return 1


def kill_quietly(pid: int, sig: int) -> bool:
    """Signal `pid`; False where it is gone (or not ours)."""
    try:
        os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False
