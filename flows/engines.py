"""Engines started side by side before a flow runs: Prefect's API server (when no PREFECT_API_URL is set)
and Ray, and for a sweep its warm workers, so torch loads in the workers while the API server starts.

The API server is the one Prefect's own ephemeral mode starts (uvicorn serving
`prefect.server.api.server:create_app` with the same settings), spawned here directly: the calling process
then never imports `prefect.server` (~2.5 s of a 2-core machine's start-up), the server starts the moment
the checks pass, and it gets a fresh auth string (only this user's processes, which inherit it, reach it:
loopback is no boundary on a shared machine). PREFECT_API_URL and PREFECT_API_AUTH_STRING then point this
process's Prefect client at it; it stops with the process (atexit, and the kernel's parent-death signal if
the process is killed).

Ray must start in the main thread: it ties its GCS and raylet to the thread that spawns them
(parent-death signal), and they died when a helper thread that started them ended. The API server is
spawned from the main thread for the same reason."""
from __future__ import annotations

import atexit
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cluster import prefect_db
from cluster.connect import ensure_ray, quiet_env
from cluster.settings import Settings

PREFECT_START_TIMEOUT_S = 90.0
# Prefect's start-up checks a server on a database at this Prefect's head revision, with its block types, can skip
SKIP_AT_HEAD = ("PREFECT_API_DATABASE_MIGRATE_ON_START", "PREFECT_API_BLOCKS_REGISTER_ON_START",
                "PREFECT_MEMOIZE_BLOCK_AUTO_REGISTRATION")


class EarlyStart:
    """`preload`: modules the command needs next (the flow's, with torch and Ray Train for a run), imported in a
    thread while ray.init waits on its processes (~4 s of a run's start-up on 2 cores, before: one after the other)."""

    def __init__(self, settings: Settings, then: Callable[[], None] | None = None, preload: tuple[str, ...] = ()):
        quiet_env()  # before prefect or ray is imported
        self.timings: dict[str, float] = {}
        self.errors: list[BaseException] = []
        self.thread = None
        # the server first: it starts on the core this process leaves idle while it imports Ray (~0.3 s)
        server = None if prefect_api_configured() else PrefectServer()
        shared_imports()
        if server is not None:
            self.thread = threading.Thread(target=self._prefect, args=(server,), daemon=True, name="prefect-api-start")
            self.thread.start()
        self.loader = threading.Thread(target=self._preload, args=(preload,), daemon=True, name="preload")
        self.loader.start()
        self.timings.update(ensure_ray(settings))
        if then is not None:
            t0 = time.perf_counter()
            then()
            self.timings["prestart_s"] = time.perf_counter() - t0

    def _prefect(self, server: PrefectServer) -> None:
        try:
            self.timings["prefect_start_s"] = server.wait()
            server.warm()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread by wait()
            self.errors.append(e)

    def _preload(self, modules: tuple[str, ...]) -> None:
        import importlib

        for module in modules:
            try:
                importlib.import_module(module)
            except Exception:  # noqa: BLE001 - the caller's own import then raises it where it belongs
                return

    def wait(self) -> dict[str, float]:
        """Join the server's start (one still coming up must not be handed to the flow); re-raise a failure."""
        self.loader.join()
        if self.thread is not None:
            self.thread.join()
        if self.errors:
            raise self.errors[0]
        return self.timings


def shared_imports() -> None:
    """What both the preload thread and this thread's first Ray calls import, imported here before the thread
    starts. Python's per-module import locks do not make it safe for two threads to import packages whose
    modules import each other: `KeyError: 'pydantic.v1'` ended 1 of 5 warm sweeps here, the preload thread
    importing Prefect (which imports pydantic.v1) while the main thread's first ray.get set up Ray's serializers
    (which import pydantic.v1.fields, starlette and pyarrow). Importing is CPU work under the GIL, so doing it
    in one thread first gives up nothing the threads overlap (~0.3 s, ray's own import included)."""
    import pydantic.v1.fields  # noqa: F401
    import ray  # noqa: F401
    import ray._private.arrow_serialization  # noqa: F401
    import starlette.datastructures  # noqa: F401


def wait_imported(name: str, timeout: float = 30.0) -> bool:
    """Wait until the preload thread has imported module `name` whole, so that the caller's thread imports
    nothing of it alongside that thread (see shared_imports); False when that thread ended without it."""
    deadline = time.monotonic() + timeout
    while (m := sys.modules.get(name)) is None or getattr(m.__spec__, "_initializing", False):
        loading = any(t.name == "preload" and t.is_alive() for t in threading.enumerate())
        if not loading or time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def prefect_api_configured() -> bool:
    """Whether Prefect already has an API to talk to: PREFECT_API_URL in the environment, in the settings of a
    Prefect already imported (a test harness, a context), or in the user's active Prefect profile (read from
    profiles.toml, without importing prefect). Then no server of the command's own is started."""
    if os.environ.get("PREFECT_API_URL"):
        return True
    if "prefect.context" in sys.modules:
        from prefect.settings import get_current_settings

        return bool(get_current_settings().api.url)
    import tomllib

    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    path = Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    try:
        profiles = tomllib.loads(path.read_text())
    except (OSError, ValueError):
        return False
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active") or "ephemeral"
    return bool((profiles.get("profiles", {}).get(active) or {}).get("PREFECT_API_URL"))


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the process that spawned it dies (Linux; elsewhere a no-op)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class PrefectServer:
    """This process's own Prefect API on 127.0.0.1, with an auth string; stopped when the process exits."""

    current: PrefectServer | None = None  # the one this process started, if any

    @classmethod
    def serving(cls) -> bool:
        """Whether this process's flows talk to an API of its own (which dies with it)."""
        return cls.current is not None and cls.current.proc.poll() is None

    def __init__(self):
        import importlib.util

        # the package's folder, without importing prefect: its settings are read when it is imported, and must
        # then see PREFECT_API_URL, or the first client starts an ephemeral server of its own beside this one
        prefect_dir = Path(importlib.util.find_spec("prefect").origin).parent
        # the listening socket is made here and handed to uvicorn (--fd): a port only picked here and bound by the
        # server ~2 s later was taken in between once in CI (a second command's Ray), and the client then talked
        # to whatever answered there
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        self.t0, self.port, auth = time.perf_counter(), listener.getsockname()[1], secrets.token_urlsafe(24)
        self.url = f"http://127.0.0.1:{self.port}/api"
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
               "PREFECT_SERVER_API_AUTH_STRING": auth, "PREFECT_SERVER_API_HOST": "127.0.0.1"}
        env.pop("PREFECT_API_URL", None)
        self.db = prefect_db.database(env)
        self.keep_db = prefect_db.seed(self.db)  # a new home's database from the template, when there is one
        if prefect_db.at_head(self.db):  # nothing to migrate or register there: skip both checks (cluster/prefect_db.py)
            for var in SKIP_AT_HEAD:
                env.setdefault(var, "false")  # unless the user chose otherwise
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect_dir.parent), "--factory",
             "prefect.server.api.server:create_app", "--fd", str(listener.fileno()),
             "--log-level", "error", "--lifespan", "on"], pass_fds=(listener.fileno(),),
            env=env, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        listener.close()  # the server holds its own copy
        PrefectServer.current = self
        atexit.register(self.stop)
        os.environ["PREFECT_API_URL"], os.environ["PREFECT_API_AUTH_STRING"] = self.url, auth
        if "prefect.context" in sys.modules:  # imported already: its global settings are re-read from the environment
            from prefect.context import refresh_global_settings_context

            refresh_global_settings_context()

    def wait(self, timeout: float = PREFECT_START_TIMEOUT_S) -> float:
        """Block until /health answers (with the auth string); returns the seconds since the spawn."""
        import urllib.request

        request = authorized(f"{self.url}/health")
        deadline = self.t0 + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Prefect's API server exited with code {self.proc.returncode} while starting")
            try:
                with urllib.request.urlopen(request, timeout=2) as r:
                    if r.status == 200:
                        ready = time.perf_counter() - self.t0
                        if self.keep_db:  # before this command writes its first flow run there
                            prefect_db.keep(self.db)
                        return ready
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"Prefect's API server did not answer within {timeout:.0f}s")

    def warm(self) -> bool:
        """One request past /health, while this command still waits for Ray: the server's first request through
        its API (its database session, the version check every client starts with) took ~0.3 s, on the path to
        the command's first flow run. True when it answered; never raises: the flow's client then meets a cold server."""
        import urllib.request

        try:
            with urllib.request.urlopen(authorized(f"{self.url}/admin/version"), timeout=10) as r:
                return r.status == 200 and bool(r.read())
        except Exception:  # noqa: BLE001 - OSError, and http.client's own errors (a reply cut short): never the command's
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def authorized(url: str):
    """A GET request to this command's own API with its auth string, as Prefect's client sends it."""
    import base64
    import urllib.request

    auth = base64.b64encode(os.environ["PREFECT_API_AUTH_STRING"].encode()).decode()
    return urllib.request.Request(url, headers={"Authorization": f"Basic {auth}"})


def build_template() -> bool:
    """One start of Prefect's API server on an empty PREFECT_HOME, for the database template it leaves behind
    (cluster/prefect_db.py): `make install` runs it, so that even the first command in a new home copies its
    database instead of running Prefect's migrations (~10 s of CPU here). False where no template was made;
    never raises: without a template, Prefect migrates as before."""
    import tempfile

    tpl = prefect_db.template()
    if tpl is None or tpl.is_file():
        return tpl is not None
    saved = dict(os.environ)
    server = None
    with tempfile.TemporaryDirectory(prefix="conductor-prefect-") as tmp:
        # a server of its own on an empty home: never the user's database (a URL, a profile naming one)
        for var in (*prefect_db.DB_VARS, "PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "PREFECT_PROFILE",
                    "PREFECT_PROFILES_PATH"):
            os.environ.pop(var, None)
        os.environ["PREFECT_HOME"] = tmp
        try:
            quiet_env()
            server = PrefectServer()
            server.wait()
        except Exception as e:  # noqa: BLE001 - without a template Prefect migrates, as before
            print(f"note: no Prefect database template ({e}); a new home's first command creates its database",
                  file=sys.stderr)
        finally:
            if server is not None:
                server.stop()
            PrefectServer.current = None
            os.environ.clear()
            os.environ.update(saved)  # the caller's settings, as they were
    return tpl.is_file()
