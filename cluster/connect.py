"""Connect to (or start, embedded) the engines: Ray once per process, Dask for the flow's task runner."""
from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

from .dashboard_deps import checked_on_disk
from .settings import Settings, SettingsError, client_env, home

# Quiet defaults for every engine we start; a user's own setting wins.
QUIET_ENV = {
    # Ray reads this once, when `import ray` loads its core: set before any import, so that a driver
    # joins `cluster up`'s Ray (token auth on) as well as an embedded one (where token is the default).
    "RAY_AUTH_MODE": "token",
    "RAY_DEDUP_LOGS": "1",
    "RAY_TRAIN_ENABLE_STATE_TRACKING": "0",
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",  # else each print of a worker reaches the console twice
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",  # one actor process fewer per run
    "RAY_TRAIN_METRICS_ENABLED": "0",
    # The controller collects each report when it polls (every 1 s by default), and a worker's next
    # report waits for that: ~1.3 s per epoch of idle time with small models.
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
    "RAY_DATA_LOG_LEVEL": "WARNING",
    # no progress bars of Ray Data's: the run prints its own progress. An environment default rather than
    # DataContext.enable_progress_bars, which meant importing ray.data in ensure_ray (0.7 s of a sweep's start,
    # whose driver never uses Ray Data)
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "DASK_LOGGING__DISTRIBUTED": "error",
    "DASK_DISTRIBUTED__WORKER__DAEMON": "False",
    "WANDB_SILENT": "true",
    "TQDM_DISABLE": "1",
    "PYTHONWARNINGS": "ignore::DeprecationWarning",
}


def quiet_env() -> None:
    """Quiet defaults, and the cluster profile's credentials (Prefect's auth string, Ray's token file) where
    Prefect and Ray look for them: every module that imports either calls this first."""
    for k, v in {**QUIET_ENV, **client_env(), **home_env()}.items():
        os.environ.setdefault(k, v)


def home_env() -> dict[str, str]:
    """Where Prefect (its profile and the ephemeral API's database) and matplotlib (its font cache) write,
    unless the user says otherwise: under CONDUCTOR_HOME, not ~/.prefect and ~/.cache. A ~/.prefect that
    exists is the user's own Prefect set-up (`prefect config set`, `prefect cloud login`): it is kept."""
    root = home()
    env = {"MPLCONFIGDIR": str(root / ".matplotlib")}
    if not (Path.home() / ".prefect").exists():  # a user's own Prefect profile (API URL, Cloud key) stays in use
        env["PREFECT_HOME"] = str(root / ".prefect")
    return env


RAY_TMP = ".ray"
# Ray's sockets live at <temp>/session_<date>_<time>_<micro>_<pid>/sockets/plasma_store: ~62 characters more,
# under the 107 of a Unix socket path with a 7-digit pid. A home deeper than this keeps Ray's /tmp/ray.
RAY_TMP_MAX = 40


def ray_temp_dir(home: Path) -> Path | None:
    """Where Ray keeps its sessions (sockets, logs, spilled objects): under CONDUCTOR_HOME when the path is
    short enough for Ray's Unix sockets, else None (Ray's /tmp/ray)."""
    path = Path(home) / RAY_TMP
    return path if len(str(path)) <= RAY_TMP_MAX else None


# The embedded Ray's system config.
LOCAL_RAY_CONFIG = {
    # no task events: they feed Ray's state API and dashboard, which the embedded Ray does not serve (its API
    # server loads no state module), and the driver's shutdown waited ~0.2 s to flush them to the GCS
    "task_events_report_interval_ms": 0,
    # a client of a Unix socket that is not listening yet retries every 100 ms, not every 1000 (as often, 10 s in
    # all): the raylet's first connection to its own object store, whose thread had not bound the socket yet,
    # waited a whole second in 4 of 10 starts here (ray.init 3.6 s against 2.5-2.7 s), and 0 of 10 with this
    "raylet_client_connect_timeout_milliseconds": 100,
    "raylet_client_num_connect_attempts": 100,
}
OBJECT_STORE_MIN_MB = 100  # Ray refuses less than 75 MB; below ~100 MB every Ray Data block spills


def object_store_bytes() -> int | None:
    """CONDUCTOR_OBJECT_STORE_MB: the embedded Ray's shared-memory object store, in MiB (None: Ray's default,
    30% of the machine's memory). What Ray Data streams through; spilled to disk under CONDUCTOR_HOME past it.
    `cluster up` gives each node its own (cluster/local.py RAY_OBJECT_STORE)."""
    raw = os.environ.get("CONDUCTOR_OBJECT_STORE_MB", "")
    if not raw:
        return None
    try:
        mb = int(raw)
    except ValueError:
        mb = -1
    if mb < OBJECT_STORE_MIN_MB:
        raise SettingsError(f"CONDUCTOR_OBJECT_STORE_MB: {raw!r} is not a size in MiB of at least "
                            f"{OBJECT_STORE_MIN_MB} (a whole number, e.g. 512)")
    return mb * 2**20


def ensure_ray(settings: Settings, num_cpus: int | None = None) -> dict:
    """ray.init once per process: the cluster's address when set, else a local instance. Returns timings."""
    quiet_env()  # before `import ray`: RAY_AUTH_MODE is read when ray._raylet loads
    import ray

    if ray.is_initialized():
        return {"ray_start_s": 0.0}
    if os.environ["RAY_AUTH_MODE"].lower() == "token":
        from ray._raylet import AuthenticationMode, Config, get_authentication_mode

        # ray was imported before the variable was set (by the caller's own code): the driver would send no
        # token, to a cluster's GCS or to the one it starts itself, and ray.init never re-reads the variable
        if get_authentication_mode() != AuthenticationMode.TOKEN:
            Config.initialize("")  # what ray's own _enable_token_auth() does
    t0 = time.perf_counter()
    # Worker output stays in Ray's log files (CONDUCTOR_RAY_LOGS=1 forwards it): Ray Train and Ray Data
    # workers log every report and dataset execution at INFO. Progress reaches the console through
    # tasks/progress.py, and a worker's error comes back with its traceback in the result.
    kwargs = dict(include_dashboard=False, logging_level=logging.ERROR,  # WARNING says token auth is on, every time
                  log_to_driver=os.environ.get("CONDUCTOR_RAY_LOGS", "0") == "1", configure_logging=True)
    if settings.ray_address:
        try:
            ray.init(address=settings.ray_address, **{k: v for k, v in kwargs.items() if k != "include_dashboard"})
        except (ConnectionError, RuntimeError) as e:
            raise SettingsError(f"CONDUCTOR_RAY_ADDRESS: cannot reach Ray at {settings.ray_address!r} ({e})") from None
    else:
        # "local": a fresh instance even when `ray start` left /tmp/ray/ray_current_cluster behind
        if (temp := ray_temp_dir(settings.home)) is not None:
            temp.mkdir(parents=True, exist_ok=True)
            kwargs["_temp_dir"] = str(temp)
        if (store := object_store_bytes()) is not None:
            kwargs["object_store_memory"] = store
        with without_monitors(keep_log_monitor=kwargs["log_to_driver"]), checked_on_disk():
            ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), **kwargs, _system_config=LOCAL_RAY_CONFIG)
    return {"ray_start_s": time.perf_counter() - t0}


@contextlib.contextmanager
def without_monitors(keep_log_monitor: bool):
    """While ray.init starts the embedded Ray: without its autoscaler monitor (a one-node Ray that dies with the
    command has nothing to scale) and, unless worker output is forwarded to the driver, its log monitor (which
    only publishes worker log lines for drivers that print them). Two Python processes fewer (~0.85 s of CPU)
    importing beside the agents the raylet waits for: ray.init 3.4-4.7 s against 4.5-6.1 s in 4 alternated cold
    sweeps. Ray's Node has no public switch for either (RayParams' no_monitor / include_log_monitor are not
    ray.init arguments); where its methods moved, Ray starts both, as before."""
    try:
        from ray._private.node import Node
    except ImportError:
        yield
        return
    names = ("start_monitor",) + (() if keep_log_monitor else ("start_log_monitor",))
    saved = {n: Node.__dict__[n] for n in names if n in Node.__dict__}
    try:
        for n in saved:
            setattr(Node, n, lambda self: None)
        yield
    finally:
        for n, f in saved.items():
            setattr(Node, n, f)


def shutdown_ray() -> None:
    """ray.shutdown, less Ray's wait on its autoscaler monitor: Ray stops the processes it started one by one,
    each given 1 s after SIGTERM, and the monitor (which a one-node Ray has no use for) never exits on SIGTERM:
    that second went by at the end of every command on the embedded Ray (1.2 s of shutdown, 1.0 s of it the
    monitor). It is killed first; a cluster's Ray (not started here) is only disconnected from, as before."""
    import ray

    if not ray.is_initialized():
        return
    node = getattr(ray._private.worker, "_global_node", None)
    try:
        if node is not None and node.is_head():
            for info in node.all_processes.get("monitor", []):
                info.process.kill()
    except (AttributeError, OSError):  # Ray's internals moved: its own shutdown still stops everything
        pass
    ray.shutdown()


def ray_resources() -> tuple[float, float]:
    """(CPUs, GPUs) the connected Ray cluster has in all."""
    import ray

    res = ray.cluster_resources()
    return float(res.get("CPU", 0.0)), float(res.get("GPU", 0.0))


PRESTART_KEEP_S = 60  # how long Ray keeps a prestarted worker process that no actor took
PRESTART_TIMEOUT_S = 2.0


def prestart_ray_workers(n: int) -> int:
    """On a running Ray (cluster up, CONDUCTOR_RAY_ADDRESS): ask every node's raylet to start up to `n` Python
    worker processes for this driver's job now, so that the actors a run asks for seconds later (Ray Train's
    synchronization actor and workers; its controller runs in the driver) take a process already started
    instead of waiting for one (a Python start with Ray imported, one after the other on the way to the first
    epoch). A raylet starts at most as many processes at once as its node has CPUs (its
    maximum_startup_concurrency: 1 on cluster up's nodes) and drops the rest of the request; it stops those no
    actor took after PRESTART_KEEP_S or with the job. An embedded Ray needs none: its raylet starts as many as it has CPUs when its first driver, this
    one, connects. Ray has no public API for this: its raylet's PrestartWorkers RPC, over the channel Ray's own
    clients use (the cluster's token included). Returns how many raylets took the request; where it fails, the
    actors start as before. CONDUCTOR_PRESTART=0 turns it off (benchmarks/first_epoch.py's comparison)."""
    if os.environ.get("CONDUCTOR_PRESTART", "1") == "0":
        return 0
    channels, taken = [], 0
    try:
        import ray
        from ray._private.grpc_utils import init_grpc_channel
        from ray.core.generated import (
            common_pb2,
            node_manager_pb2,
            node_manager_pb2_grpc,
            runtime_environment_pb2,
        )

        request = node_manager_pb2.PrestartWorkersRequest(
            language=common_pb2.PYTHON, job_id=ray._private.worker.global_worker.current_job_id.binary(),
            num_workers=n, keep_alive_duration_secs=PRESTART_KEEP_S,
            runtime_env_info=runtime_environment_pb2.RuntimeEnvInfo(serialized_runtime_env="{}"))
        calls = []  # all at once: a raylet that does not answer costs PRESTART_TIMEOUT_S once, not once per node
        for node in ray.nodes():
            if node["Alive"]:
                channels.append(init_grpc_channel(f"{node['NodeManagerAddress']}:{node['NodeManagerPort']}"))
                calls.append(node_manager_pb2_grpc.NodeManagerServiceStub(channels[-1]).PrestartWorkers.future(
                    request, timeout=PRESTART_TIMEOUT_S))
        for call in calls:
            with contextlib.suppress(Exception):  # this node's actors start as before
                call.result()
                taken += 1
    except Exception:  # noqa: BLE001 - Ray's internals moved: no head start, nothing else changes
        pass
    finally:
        for channel in channels:
            channel.close()
    return taken


def embedded_dask_unprofiled() -> None:
    """The embedded Dask worker without its statistical profiler: every 10 ms it took the GIL of the command's
    own process to walk every thread's stack, for a profile that only a dashboard shows, and the embedded Dask
    has none (an idle LocalCluster in one process: ~10 % of a core with it, ~5 % without, measured here).
    Read when a worker starts; `cluster up`'s workers keep theirs (their dashboard's Profile page)."""
    import dask

    dask.config.set({"distributed.worker.profile.enabled": False})


def dask_runner_kwargs(settings: Settings) -> dict:
    """DaskTaskRunner arguments: the cluster's scheduler, or a LocalCluster in this process.

    The embedded LocalCluster runs its workers as threads of this process: each Dask worker
    *process* would otherwise start a Prefect API server of its own (~10 s each on 2 cores).
    """
    if settings.dask_address:
        if not settings.dask_address.startswith("tls://"):
            return {"address": settings.dask_address}
        from .tls import security

        # the cluster's certificate (CONDUCTOR_DASK_TLS, from the profile), or dask's own distributed.comm.tls settings
        return {"address": settings.dask_address, "client_kwargs": {"security": security(settings.dask_tls)}}
    # no dashboard: nobody could find its random port, and it imported bokeh (~0.5 s of every command's CPU); the
    # scheduler's HTTP server (health, metrics) always starts, here on a random loopback port (None binds 8787)
    embedded_dask_unprofiled()
    return {"cluster_kwargs": {"processes": False, "n_workers": 1, "threads_per_worker": max(2, os.cpu_count() or 2),
                               "dashboard_address": "127.0.0.1:0", "scheduler_kwargs": {"dashboard": False},
                               "local_directory": str(settings.home / ".dask")}}  # its spill space, not /tmp
