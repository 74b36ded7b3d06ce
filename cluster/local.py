"""`conductor cluster up | down | status`: a real cluster of separate processes on 127.0.0.1.

Prefect server + a process work pool and its worker, a Ray head plus one Ray worker node, a Dask scheduler plus
workers, and a command server that later runs and sweeps start from (cluster/commands.py). Addresses go to
runs/cluster/profile.json (every later command reads it; masked, with any credential in secrets.json beside it, both
0600), pids and logs to runs/cluster/. Every service answers only who holds this cluster's credentials
(cluster/credentials.py): Prefect's API an auth string, Dask a TLS certificate, Ray a token, the command server its
owner's uid. The Dask dashboard (HTTPS on 127.0.0.1) asks for the same certificate; `status` shows its URL and how
to open it. `down` stops exactly the processes `up` started and removes the credentials.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import commands, credentials, prefect_db, zombies
from .connect import QUIET_ENV, ray_temp_dir
from .dashboard import dashboard_answers
from .processes import (
    LOOPBACK,
    Service,
    alive,
    answers_http,
    answers_tcp,
    answers_unix,
    bin_path,
    cluster_dir,
    dask_workers,
    pick_port,
    ray_nodes,
    wait_until,
)
from .settings import (
    SettingsError,
    home,
    profile_path,
    read_profile,
    redact_url,
    remove_profile,
    save_profile,
)
from .tls import security, tls_flags

POOL = "conductor"
RAY_CPUS_PER_NODE = 1
RAY_MEMORY = 3 * 2**30
RAY_OBJECT_STORE = 400 * 2**20
# set by `up` for its own services only: a value from the caller's shell would point them elsewhere
NOT_INHERITED = ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "PREFECT_SERVER_API_AUTH_STRING", "CONDUCTOR_RAY_ADDRESS",
                 "CONDUCTOR_DASK_ADDRESS", "CONDUCTOR_DASK_TLS", "RAY_AUTH_TOKEN", "DASK_DISTRIBUTED__COMM__")


class LocalCluster:
    def __init__(self, root: Path | None = None):
        self.root = Path(root or cluster_dir())
        self.logs = self.root / "logs"
        self.pids_file = self.root / "pids.json"
        self.services: list[Service] = []
        self.env = self._base_env()
        self.creds: credentials.Credentials | None = None

    # ------------------------------------------------------------ helpers
    def _base_env(self) -> dict:
        env = {k: v for k, v in QUIET_ENV.items() if k.startswith("RAY_")}  # for Ray Train's (tasks/train/lean.py)
        env.update({k: v for k, v in os.environ.items() if not k.startswith(NOT_INHERITED)})
        env.update({
            "CONDUCTOR_HOME": str(home()), "PREFECT_HOME": str(self.root / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING",
            "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0", "DASK_LOGGING__DISTRIBUTED": "warning",
            "PYTHONUNBUFFERED": "1",
        })
        return env

    def _spawn(self, name: str, args: list[str], env: dict | None = None) -> subprocess.Popen:
        import psutil

        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env or self.env, cwd=str(Path.cwd()), start_new_session=True)
        self.services.append(Service(name, "", proc.pid, psutil.Process(proc.pid).create_time(), str(log)))
        self._save_pids()
        return proc

    def _save_pids(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.pids_file.write_text(json.dumps([s.__dict__ for s in self.services], indent=1))

    def load(self) -> list[Service]:
        if not self.pids_file.is_file():
            return []
        try:
            return [Service(**s) for s in json.loads(self.pids_file.read_text())]
        except (OSError, ValueError, TypeError) as e:
            raise SettingsError(f"{self.pids_file}: not the cluster's process list ({type(e).__name__}); "
                                "`conductor cluster down` removes it") from None

    def _load_or_warn(self) -> list[Service]:
        """`down` must clean up whatever state the files are in: a corrupt pid list is warned about and
        dropped (the sweep below still finds this cluster's processes by their environment)."""
        try:
            return self.load()
        except SettingsError:
            _warn(f"warning: {self.pids_file} was not readable; removed it")
            return []

    def profile(self) -> dict:
        """The profile as written: URLs masked (the real ones are for load_settings only)."""
        return read_profile()

    # ------------------------------------------------------------ up
    def up(self, log=print) -> dict:
        existing = self.load()
        if existing and all(alive(s.pid, s.started) for s in existing) and self.profile():
            log("cluster is already up (conductor cluster status shows it)")
            return self.profile()
        if existing:
            log("cleaning up a partly running cluster first")
            self.down(log=lambda *_: None)
        t0 = time.monotonic()
        taken: set[int] = set()
        ports = {"prefect": pick_port(4200, taken), "ray": pick_port(6379, taken), "dask": pick_port(8786, taken),
                 "dask_dashboard": pick_port(8787, taken)}
        ray_ports = {role: {k: pick_port(0, taken) for k in ("dashboard_agent_listen", "dashboard_agent_grpc",
                                                             "metrics_export", "runtime_env_agent", "node_manager",
                                                             "object_manager", "client")}
                     for role in ("head", "worker")}
        prefect_url, ray_address = f"http://{LOOPBACK}:{ports['prefect']}/api", f"{LOOPBACK}:{ports['ray']}"
        dask_address = f"tls://{LOOPBACK}:{ports['dask']}"
        dashboard_url = f"https://{LOOPBACK}:{ports['dask_dashboard']}/status"
        storage = os.environ.get("CONDUCTOR_OPTUNA_STORAGE") or f"sqlite:///{home() / 'optuna.db'}"
        self.creds = credentials.issue(self.root)
        self.env.update(self.creds.ray_env())
        profile = {"prefect_api_url": prefect_url, "ray_address": ray_address, "dask_address": dask_address,
                   "optuna_storage": storage, "work_pool": POOL, "ui_url": prefect_url.removesuffix("/api"),
                   "dask_dashboard_url": dashboard_url,
                   "started_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **self.creds.profile()}
        try:
            procs = self._start_all(ports, ray_ports, profile, log)
            self._wait_all(procs, ports, prefect_url, log)
        except BaseException:
            self.down(log=lambda *_: None)
            raise
        for s in self.services:
            s.address = {"prefect-server": prefect_url, "ray-head": ray_address, "ray-worker": ray_address,
                         "dask-scheduler": dask_address, "dask-workers": dask_address,
                         "prefect-worker": f"pool {POOL}"}.get(s.name, "")
        profile = save_profile(profile)
        commands.start(self, log)
        self._save_pids()
        profile["up_seconds"] = round(time.monotonic() - t0, 1)
        log(f"cluster up in {profile['up_seconds']}s: Prefect {profile['ui_url']}, Ray {ray_address}, Dask {dask_address} "
            f"(dashboard {dashboard_url}, with the cluster's certificate)")
        return profile

    def _start_all(self, ports, ray_ports, profile, log) -> dict:
        server_env = {**self.env, **self.creds.prefect_server_env()}
        if os.environ.get("CONDUCTOR_PREFECT_DB"):
            server_env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = os.environ["CONDUCTOR_PREFECT_DB"]
        prefect_db.seed(prefect_db.database(server_env))  # a new cluster's SQLite database from the template
        procs = {"prefect-server": self._spawn("prefect-server", [bin_path("prefect"), "server", "start", "--host",
                                                                  LOOPBACK, "--port", str(ports["prefect"])],
                                               env=server_env)}
        ray_env = dict(self.env)
        common = ["--node-ip-address", LOOPBACK, "--num-cpus", str(RAY_CPUS_PER_NODE), "--memory", str(RAY_MEMORY),
                  "--object-store-memory", str(RAY_OBJECT_STORE), "--disable-usage-stats", "--block"]

        def ray_args(role):
            p = ray_ports[role]
            return ["--dashboard-agent-listen-port", str(p["dashboard_agent_listen"]),
                    "--dashboard-agent-grpc-port", str(p["dashboard_agent_grpc"]),
                    "--metrics-export-port", str(p["metrics_export"]),
                    "--runtime-env-agent-port", str(p["runtime_env_agent"]),
                    "--node-manager-port", str(p["node_manager"]), "--object-manager-port", str(p["object_manager"])]

        temp = ray_temp_dir(home())  # the worker node joins the head's temp dir (Ray allows it on the head only)
        procs["ray-head"] = self._spawn("ray-head", [bin_path("ray"), "start", "--head", "--port", str(ports["ray"]),
                                                     "--include-dashboard", "false",
                                                     *(["--temp-dir", str(temp)] if temp else []),
                                                     "--ray-client-server-port", str(ray_ports["head"]["client"]),
                                                     *common, *ray_args("head")], env=ray_env)
        # `dask scheduler` has no way to make its dashboard ask for a client certificate: `dask spec` starts
        # the scheduler class of credentials.owner_only_scheduler, whose dashboard does
        spec = {"cls": "cluster.credentials.owner_only_scheduler",
                "opts": {"host": LOOPBACK, "port": ports["dask"], "protocol": "tls", "tls_dir": str(self.creds.tls_dir),
                         "dashboard_address": f"{LOOPBACK}:{ports['dask_dashboard']}"}}
        procs["dask-scheduler"] = self._spawn("dask-scheduler", [bin_path("dask"), "spec", "--spec", json.dumps(spec)],
                                              env={**self.env, **self.creds.dask_env()})
        return procs

    def _wait_all(self, procs, ports, prefect_url, log) -> None:
        log("starting Prefect server, Ray head, Dask scheduler ...")
        ray_address, dask_address = f"{LOOPBACK}:{ports['ray']}", f"tls://{LOOPBACK}:{ports['dask']}"
        wait_until(lambda: answers_tcp(ports["ray"]), 90, "Ray head", Path(self.services[1].log), procs["ray-head"])
        self._spawn("ray-worker", [bin_path("ray"), "start", "--address", ray_address,
                                   "--node-ip-address", LOOPBACK, "--num-cpus", str(RAY_CPUS_PER_NODE),
                                   "--memory", str(RAY_MEMORY), "--object-store-memory", str(RAY_OBJECT_STORE),
                                   "--disable-usage-stats", "--block"], env=dict(self.env))
        wait_until(lambda: answers_tcp(ports["dask"]), 60, "Dask scheduler", Path(self.logs / "dask-scheduler.log"),
                   procs["dask-scheduler"])
        dashboard = f"https://{LOOPBACK}:{ports['dask_dashboard']}/status"
        wait_until(lambda: dashboard_answers(dashboard, self.creds.tls_dir), 30, "Dask dashboard",
                   Path(self.logs / "dask-scheduler.log"), procs["dask-scheduler"])
        wait_until(lambda: answers_http(f"{prefect_url}/health"), 120, "Prefect server",
                   Path(self.logs / "prefect-server.log"), procs["prefect-server"])
        flow_env = {**self.env, **self.creds.prefect_client_env(), "PREFECT_API_URL": prefect_url,
                    "CONDUCTOR_RAY_ADDRESS": ray_address, "CONDUCTOR_DASK_ADDRESS": dask_address,
                    "CONDUCTOR_DASK_TLS": str(self.creds.tls_dir)}
        self._spawn("dask-workers", [bin_path("dask"), "worker", dask_address, "--host", LOOPBACK, "--nworkers", "2",
                                     "--nthreads", "1", *tls_flags(self.creds.tls_dir), "--no-dashboard",
                                     "--dashboard-address", f"{LOOPBACK}:0", "--memory-limit", "2GiB"],
                    env={**flow_env, **self.creds.dask_env()})
        worker_env = {**flow_env, **zombies.heartbeat_env(), "PREFECT_WORKER_QUERY_SECONDS": "2",
                      "PREFECT_WORKER_PREFETCH_SECONDS": "5"}
        self._spawn("prefect-worker", [bin_path("prefect"), "worker", "start", "--pool", POOL, "--type", "process"],
                    env=worker_env)
        # the worker creates its process work pool when it first starts
        auth = credentials.basic_auth(self.creds.auth_string)
        wait_until(lambda: answers_http(f"{prefect_url}/work_pools/{POOL}/workers/filter", "POST", auth), 120,
                   "Prefect worker and its work pool", self.logs / "prefect-worker.log")
        zombies.install(prefect_url, auth)  # a flow run whose process dies is marked CRASHED, not left RUNNING
        wait_until(lambda: ray_nodes(ray_address, self.env) >= 2, 90, "Ray worker node", self.logs / "ray-worker.log")
        sec = security(self.creds.tls_dir)
        wait_until(lambda: dask_workers(dask_address, sec) >= 2, 60, "Dask workers", self.logs / "dask-workers.log")

    # ------------------------------------------------------------ down
    def down(self, log=print) -> list[str]:
        import psutil

        stopped = []
        services = self._load_or_warn()
        for s in reversed(services):
            if not alive(s.pid, s.started):
                continue
            try:
                os.killpg(s.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            stopped.append(s.name)
        deadline = time.monotonic() + 8
        for s in services:
            while alive(s.pid, s.started) and time.monotonic() < deadline:
                time.sleep(0.2)
            if alive(s.pid, s.started):
                try:
                    os.killpg(s.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        # Ray's node daemons live in the process group of their `ray start --block`; a straggler that
        # left it still names this cluster's session in its command line.
        marker = str(self.root)
        for p in psutil.process_iter(["pid", "cmdline", "environ"]):
            try:
                env = p.info.get("environ") or {}
                if env.get("CONDUCTOR_HOME") == str(home()) and env.get("PREFECT_HOME", "").startswith(marker) \
                        and p.pid != os.getpid() and p.pid not in {q.pid for q in psutil.Process().parents()}:
                    p.kill()
            except (psutil.Error, TypeError):
                continue
        self.pids_file.unlink(missing_ok=True)
        try:
            read_profile()
        except SettingsError:
            _warn(f"warning: {profile_path()} was not a readable cluster profile; removed it")
        remove_profile()
        credentials.revoke(self.root)
        shutil.rmtree(self.root / "prefect" / "storage", ignore_errors=True)
        log(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
        return stopped

    # ------------------------------------------------------------ status
    def status(self) -> list[dict]:
        prof, rows = self.profile(), []
        port = lambda key: int(prof[key].rsplit(":", 1)[1])  # noqa: E731
        checks = {"prefect-server": lambda s: answers_http(f"{prof.get('prefect_api_url')}/health"),
                  "ray-head": lambda s: answers_tcp(port("ray_address")),
                  "dask-scheduler": lambda s: answers_tcp(port("dask_address")),
                  "commands": lambda s: answers_unix(Path(s.address))}
        for s in self.load():
            running = alive(s.pid, s.started)
            answers = running and checks.get(s.name, lambda _: True)(s)
            rows.append({"service": s.name, "address": redact_url(s.address), "pid": s.pid, "running": running,
                         "answers": answers, "log": s.log})
            if s.name == "dask-scheduler" and prof.get("dask_dashboard_url"):  # served by the scheduler's process
                url = prof["dask_dashboard_url"]
                rows.append({"service": "dask-dashboard", "address": redact_url(url), "pid": s.pid, "running": running,
                             "answers": running and dashboard_answers(url, prof.get("dask_tls")), "log": s.log})
        return rows


def _warn(message: str) -> None:
    print(message, file=sys.stderr)

