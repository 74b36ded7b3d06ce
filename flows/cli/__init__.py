"""`conductor`: one spec, one command. Each command lives in its own module; importing them registers
them on the one Typer app. Every user error is one `error: ...` line and exit code 2."""
from . import cluster, history, predict, rerun, run, serve  # noqa: F401 - registers the commands
from .app import app


def main() -> None:
    import os
    import sys

    from cluster.processes import STARTED_ENV
    from cluster.settings import home

    from .handover import hand_over

    STARTED_ENV.update(os.environ)  # as the user started it: what `cluster up` gives its command server
    if (code := hand_over(sys.argv, home())) is not None:  # a run or sweep on `cluster up`'s warm imports
        leave(code)
    try:
        app()
        code = 0
    except SystemExit as e:
        code = e.code
    leave(code)


def leave(code) -> None:
    """End the process the way Python would, without its teardown of every module: first what a finished
    command still has to do (the callbacks of threading._shutdown, e.g. Prefect's log and event workers
    draining to the API, then the threads that are not daemons joined, then the atexit handlers: the
    command's Prefect API server stops, Ray disconnects, logs flush), then os._exit. The teardown of
    Prefect's, Dask's and Ray's modules took ~1 s after the last handler on every command here."""
    import atexit
    import os
    import sys
    import threading

    shutdown = getattr(threading, "_shutdown", None)  # CPython's own first step of finalisation
    if shutdown is None:
        sys.exit(code)
    shutdown()
    atexit._run_exitfuncs()
    if code is not None and not isinstance(code, int):  # sys.exit("message"): Python prints it, exit 1
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code or 0)


__all__ = ["app", "leave", "main"]
