"""The command server of `conductor cluster up` (flows/cli/handover.py says what it is for): it imports what a run
and a sweep import, once, then forks one child per command handed to it and reports each child's exit code to
the command that waits for it. One thread, no engine started before a fork: the children start theirs."""
from __future__ import annotations

import gc
import importlib
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path

from flows.cli.handover import (
    MATCHED,
    PRELOAD,
    SERVED,
    code_version,
    kill_quietly,
    matched,
    receive,
    send,
)

POLL_S = 0.2


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _refusal(req: dict, fds: list[int], env: dict, version: str) -> str | None:
    if not isinstance(req, dict) or len(fds) != 3 or not isinstance(req.get("argv"), list):
        return "not a command"
    if req.get("code") != version:
        return "other code (conductor's sources changed since `cluster up`)"
    theirs = matched(req.get("env") or {})
    if theirs != env:
        keys = sorted(k for k in {*theirs, *env} if theirs.get(k) != env.get(k))
        return f"another environment in {', '.join(keys)}"  # names only: values may be credentials
    return None


def _child(req: dict, fds: list[int], inherited: list) -> None:
    """In the forked child: become the command and run it; never returns."""
    try:
        _become(req, fds, inherited)
    except BaseException as e:  # noqa: BLE001 - before the command ran: said on its stderr, exit 1
        print(f"failed: the command server of `cluster up` could not start this command: {type(e).__name__}: {e}",
              file=sys.stderr, flush=True)
        os._exit(1)
    try:
        from flows.cli import main

        main()  # ends in os._exit with the command's code
    finally:
        os._exit(1)


def _become(req: dict, fds: list[int], inherited: list) -> None:
    """The command's descriptors, signals, directory, umask, environment and arguments, in this process."""
    for obj in inherited:
        obj.close()
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        if fd > 2:
            os.close(fd)
    os.chdir(req["cwd"])
    os.umask(req["umask"])
    os.environ.clear()
    os.environ.update(req["env"])
    sys.argv = list(req["argv"])
    sys.stdout.reconfigure(line_buffering=sys.stdout.isatty())  # the server's stdout was a log file
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()  # Python's own random reseeds itself at a fork; numpy's does not
    from cluster.connect import quiet_env

    quiet_env()  # what importing flows.sweep did to the server's environment, now to the command's
    SERVED["child"] = True


def serve(path: Path) -> None:
    env, version = matched(os.environ), code_version()
    from flows.cli.app import _use_cluster_profile

    _use_cluster_profile()  # as every command does before Prefect loads
    t0 = time.perf_counter()
    for name in PRELOAD:
        importlib.import_module(name)
    if threading.active_count() > 1:  # a fork copies one thread: a lock another one held would stay taken
        raise SystemExit(f"an import started a thread ({', '.join(t.name for t in threading.enumerate())}): not "
                         "serving, commands run in their own processes")
    gc.collect()
    gc.freeze()  # what the imports made: the children never walk it again in their collections
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        listener.bind(str(path))  # 0600 from the start: only its owner connects (and the peer check below)
    finally:
        os.umask(old)
    listener.listen(16)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}
    log(f"serving {path}: {len(sys.modules)} modules imported in {time.perf_counter() - t0:.1f}s; the environment "
        f"matched on {', '.join(MATCHED)}")
    while True:
        for key, _ in sel.select(timeout=POLL_S):
            if key.fileobj is listener:
                _accept(listener, sel, children, env, version)
            else:  # the command's end: it died (a command sends nothing after its request) - its child goes too
                conn, pid = key.fileobj, key.data
                try:
                    gone = not conn.recv(1)
                except OSError:
                    gone = True
                if gone:
                    sel.unregister(conn)
                    kill_quietly(pid, signal.SIGKILL)
                    log(f"child {pid}: its command is gone; killed")
        _reap(sel, children)


def _accept(listener, sel, children: dict, env: dict, version: str) -> None:
    conn, _ = listener.accept()
    fds: list[int] = []
    try:
        if _peer_uid(conn) != os.getuid():
            log("refused a connection from another user")
            conn.close()
            return
        conn.settimeout(5)
        req, fds = receive(conn, max_fds=3)
        if req is None:  # a probe (`cluster status`, `up` waiting for the socket): it connected and left
            raise OSError("no request")
        if reason := _refusal(req, fds, env, version):
            log(f"not serving a command: {reason}")
            send(conn, {"refused": reason})
            raise OSError(reason)
    except (OSError, ValueError):
        _drop(conn, fds)
        return
    try:
        pid = os.fork()
    except OSError as e:  # out of memory or of processes: the command runs in its own process
        log(f"not serving a command: {type(e).__name__}: {e}")
        try:
            send(conn, {"refused": f"{type(e).__name__}: {e}"})
        except OSError:
            pass
        _drop(conn, fds)
        return
    if pid == 0:
        _child(req, fds, [listener, sel, conn, *children.values()])
    for fd in fds:
        os.close(fd)
    conn.settimeout(None)
    children[pid] = conn
    try:
        send(conn, {"pid": pid})
        sel.register(conn, selectors.EVENT_READ, pid)
    except OSError:
        kill_quietly(pid, signal.SIGKILL)  # its command is already gone
    log(f"child {pid}: conductor {next((a for a in req['argv'][1:] if not str(a).startswith('-')), '')}")


def _drop(conn: socket.socket, fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)
    conn.close()


def _reap(sel, children: dict) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code  # killed by a signal: as a shell reports it
        log(f"child {pid}: exit {code}")
        if conn is None:
            continue
        try:
            sel.unregister(conn)
        except (KeyError, ValueError):
            pass
        try:
            send(conn, {"exit": code})
        except OSError:
            pass
        conn.close()


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
