"""Cluster mode with real processes: cluster up → submit a run → submit a sweep over both Ray nodes →
cluster down, with Prefect's and Optuna's databases on PostgreSQL."""
from __future__ import annotations

import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from urllib.parse import urlsplit

import optuna
import psutil
import pytest

from conftest import ROOT, run_cli, write_spec
from tasks.sweep import make_storage

pytestmark = pytest.mark.e2e

PG = "postgres@127.0.0.1:5432"
# Sentinels a user's environment carries into cluster mode: the Optuna storage's password (PostgreSQL trusts
# 127.0.0.1 here, so any password connects) and a W&B key. Neither may reach a file, a log, an output, or
# anything the Prefect API holds.
STORAGE_PW, WANDB_KEY = (f"Sentinel{w}{uuid.uuid4().hex[:10]}" for w in ("Pg", "Key"))


@pytest.fixture
def postgres_db():
    """A fresh database for Prefect's server, dropped afterwards."""
    import psycopg2

    name = f"conductor_prefect_{uuid.uuid4().hex[:8]}"
    try:
        conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test", connect_timeout=5)
    except psycopg2.OperationalError as e:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL on 127.0.0.1:5432 is needed in CI: {e}")
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432 ({e})")
    conn.autocommit = True
    conn.cursor().execute(f"CREATE DATABASE {name}")
    yield name
    conn.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    conn.close()


def ours(home) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["environ"]):
        try:
            if (p.info.get("environ") or {}).get("CONDUCTOR_HOME") == str(home) and p.pid != os.getpid():
                found.append(p)
        except (psutil.Error, TypeError):
            continue
    return found


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


OLDER_WORKER = """
import os, ray
from cluster.connect import ensure_ray
from cluster.settings import load_settings
from tasks.sweep import warm
from tasks.sweep.worker import TrialWorker

ensure_ray(load_settings())
TrialWorker.pid = lambda self: os.getpid()  # another version of the class, as an older conductor left it
cls = ray.remote(num_cpus=0, max_restarts=0, concurrency_groups={"control": 1})(TrialWorker)
actor = cls.options(name="trial-000000000000-old", namespace=warm.NAMESPACE, lifetime="detached").remote(
    "/tmp", {"mode": "disabled"})
print(ray.get(actor.pid.remote()))
"""


def start_older_worker(env: dict) -> int:
    """A warm worker of older code on the cluster, as conductor's previous version left it; returns its pid."""
    proc = subprocess.run([sys.executable, "-c", OLDER_WORKER], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return int(proc.stdout.strip().splitlines()[-1])


def last_json(proc) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check_sweep(summary: dict, study: optuna.Study) -> None:
    """What a finished sweep leaves: exact trial counts, curves in Optuna and W&B, the best model registered."""
    from pathlib import Path

    from wandb_files import read_run

    done = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(done) == 4 and summary["trials"]["failed"] == 0
    for key in ("name", "run_dir", "metrics", "wandb", "study", "storage", "best", "trials"):
        assert key in summary
    assert summary["best"]["value"] == pytest.approx(study.best_value)
    assert summary["best"]["params"] == study.best_params
    assert summary["storage"] == "postgresql+psycopg2://postgres:***@127.0.0.1:5432/test"  # the password masked
    spans = sorted((t.datetime_start, t.datetime_complete) for t in study.trials)
    assert any(a_end > b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:], strict=False))  # side by side
    for tr in study.trials:
        steps = sorted(tr.intermediate_values)
        assert steps and steps == list(range(1, len(steps) + 1)), tr.number  # every epoch reached the trial
        if tr.state == optuna.trial.TrialState.COMPLETE:
            assert len(steps) == 3 and tr.value == pytest.approx(tr.intermediate_values[3])
        logged = read_run(tr.user_attrs["wandb_run_dir"])  # one W&B run per trial
        assert logged["name"] == f"{summary['study']}-t{tr.number}" and logged["group"] == summary["study"]
        curve = {h["epoch"]: h["val/accuracy"] for h in logged["history"] if "val/accuracy" in h}
        assert curve == pytest.approx(tr.intermediate_values)
        expected = "pruned" if tr.state == optuna.trial.TrialState.PRUNED else "complete"
        assert logged["summary"]["trial_state"] == expected
    overview = read_run(summary["wandb"]["run_dir"])
    assert overview["name"] == f"{summary['study']}-summary"
    assert overview["summary"]["best_value"] == pytest.approx(summary["best"]["value"])
    run_dir = Path(summary["run_dir"])
    for name in ("model.pt", "model.json", "metrics.json", "report.html", "sweep.json",
                 "sweep/optimization_history.html", "sweep/optimization_history.png", "plots/confusion_matrix.png"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "sweep.json").read_text())["best"]["trial"] == summary["best"]["trial"]
    assert "optimization history" in (run_dir / "report.html").read_text()
    registered = json.loads((run_dir / "metrics.json").read_text())  # the baselines, scored on the cluster's Dask
    assert 0.0 < registered["baseline/majority/accuracy"] < registered["baseline/logistic/accuracy"] <= 1.0


# ---------------------------------------------------------------- no open door: every listening socket refuses

RAY_METHODS = ("/ray.rpc.NodeInfoGcsService/GetAllNodeInfo", "/ray.rpc.NodeManagerService/GetNodeStats",
               "/ray.rpc.ObjectManagerService/Pull", "/ray.rpc.CoreWorkerService/GetCoreWorkerStats",
               "/ray.rpc.ReporterService/GetTraceback", "/ray.rpc.LogService/ListLogs", "/ray.rpc.RayletDriver/ClusterInfo")


def listening(home) -> list[tuple[str, str, str, int]]:
    """(service, process@address, host to reach it at, port) of every TCP socket listening in the cluster's
    processes and their children."""
    found = {}
    for s in json.loads((home / "cluster" / "pids.json").read_text()):
        try:
            root = psutil.Process(s["pid"])
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for p in procs:
            try:
                for c in p.net_connections(kind="tcp"):
                    if c.status == psutil.CONN_LISTEN:
                        found.setdefault(c.laddr.port, (s["name"], p.name(), c.laddr.ip))
            except psutil.Error:
                continue
    def reach(ip: str) -> str:  # a wildcard is reached on loopback, an IPv4-mapped IPv6 address as IPv4
        return "127.0.0.1" if ip in ("0.0.0.0", "::") else ip.removeprefix("::ffff:")

    return [(svc, f"{name}@{ip}", reach(ip), port) for port, (svc, name, ip) in sorted(found.items())]


def http_get(host: str, port: int, path: str = "/", headers=None) -> tuple[int, str] | None:
    """(status, body start) when the port speaks HTTP/1.1, None when it does not (gRPC, TLS)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}{path}", headers=headers or {}),
                                    timeout=3) as r:
            return r.status, r.read(200).decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, ""
    except (OSError, ValueError, http.client.HTTPException):
        return None


def grpc_codes(host: str, port: int) -> set[str]:
    """What Ray's gRPC services answer a call that carries no token."""
    import grpc

    codes = set()
    with grpc.insecure_channel(f"{host}:{port}") as ch:
        for method in RAY_METHODS:
            try:
                ch.unary_unary(method)(b"", timeout=5)
                codes.add("OK")
            except grpc.RpcError as e:
                codes.add(e.code().name)
            if "UNAUTHENTICATED" in codes:  # the token check guards every service of the port alike
                break
    return codes


def dask_refuses(port: int, tls_dir) -> str:
    """A plain TCP dask comm and a TLS one without the client certificate both fail; the certificate gets in."""
    import asyncio
    import ssl

    from distributed.comm import connect

    from cluster.tls import security

    async def identity(address, **kwargs):
        comm = await connect(address, timeout=3, **kwargs)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await asyncio.wait_for(comm.read(), 3)
        finally:
            comm.abort()

    async def attempt(address, **kwargs):
        try:
            return await asyncio.wait_for(identity(address, **kwargs), 8)
        except Exception as e:  # noqa: BLE001 - any failure is a refusal
            return e

    no_cert = ssl.create_default_context(cafile=str(tls_dir / "ca.pem"))
    no_cert.check_hostname = False

    async def main():
        plain = await attempt(f"tcp://127.0.0.1:{port}")
        bare = await attempt(f"tls://127.0.0.1:{port}", ssl_context=no_cert)
        good = await attempt(f"tls://127.0.0.1:{port}", **security(tls_dir).get_connection_args("client"))
        assert isinstance(plain, Exception) and isinstance(bare, Exception), (port, plain, bare)
        assert isinstance(good, dict), (port, good)
        return good["type"]

    return asyncio.run(main())


def dashboard_refuses(port: int, tls_dir, stranger_dir, scheduler: str) -> str:
    """The Dask dashboard: nothing for a client without the certificate (plain HTTP, HTTPS without a client
    certificate, HTTPS with another cluster's); its pages for the certificate, with both workers."""
    def get(path, cert_dir=None):
        context = ssl.create_default_context(cafile=str(tls_dir / "ca.pem"))
        if cert_dir is not None:
            context.load_cert_chain(cert_dir / "cert.pem", cert_dir / "key.pem")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
        try:
            with opener.open(f"https://127.0.0.1:{port}{path}", timeout=10) as r:
                return r.status, r.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, ""
        except (OSError, http.client.HTTPException) as e:
            return e

    for refused in (get("/health"), get("/info/main/workers.html"), get("/health", stranger_dir)):
        assert isinstance(refused, Exception), (port, refused)  # the TLS handshake failed: nothing served
    status, workers = get("/status", tls_dir), get("/info/main/workers.html", tls_dir)
    assert status[0] == 200 and "bokeh" in status[1].lower(), status
    assert workers[0] == 200 and len(set(re.findall(r"tls://127\.0\.0\.1:\d+", workers[1])) - {scheduler}) == 2, workers
    return ("HTTPS: the TLS handshake fails without the certificate and with another CA's; "
            "200 with it (/status, workers page)")


def check_no_open_door(home, profile: dict) -> list[str]:
    """Every listening socket of the cluster refuses a client without the credential; returns what was found."""
    from cluster.credentials import basic_auth
    from cluster.tls import make_tls

    auth = json.loads((home / "cluster" / "secrets.json").read_text())["prefect_api_auth_string"]
    prefect_port = int(profile["prefect_api_url"].removesuffix("/api").rsplit(":", 1)[1])
    dashboard_port = urlsplit(profile["dask_dashboard_url"]).port
    stranger = home.parent / "stranger-tls"  # another cluster's certificate, from another CA
    make_tls(stranger)
    report = []
    for service, proc, host, port in listening(home):
        http = http_get(host, port)
        if port == dashboard_port:
            assert service == "dask-scheduler" and host == "127.0.0.1" and http is None, (service, proc, host, http)
            how = dashboard_refuses(port, home / "cluster" / "tls", stranger, profile["dask_address"])
        elif service == "prefect-server":
            assert port == prefect_port, (service, proc, port)
            bare = urllib.request.Request(f"http://127.0.0.1:{port}/api/flows/filter", data=b"{}", method="POST",
                                          headers={"Content-Type": "application/json"})
            try:
                urllib.request.urlopen(bare, timeout=5)
                raise AssertionError("Prefect API answered without the auth string")
            except urllib.error.HTTPError as e:
                assert e.code == 401, e.code
            bare.headers.update(basic_auth(auth))
            assert urllib.request.urlopen(bare, timeout=5).status == 200
            how = "HTTP 401 without the auth string (200 with it)"
        elif service.startswith("dask"):
            if http is not None:  # the HTTP server Dask starts anyway: no routes
                assert all(http_get(host, port, p)[0] == 404 for p in ("/", "/info/main/workers.html", "/health",
                                                                 "/metrics", "/json/counts.json")), (proc, port)
                how = "HTTP with no routes: 404 for every path"
            else:
                how = f"{dask_refuses(port, home / 'cluster' / 'tls')}: plain TCP and TLS without the cert fail"
        elif service.startswith("ray"):
            if http is not None and http[0] == 200 and "# HELP" in http[1] + (http_get(host, port, "/metrics") or (0, ""))[1]:
                how = "EXCEPTION Prometheus metrics (numbers only, read-only)"
            elif http is not None:
                assert http[0] in (401, 403), (proc, port, http)
                how = f"HTTP {http[0]} without the token"
            else:
                codes = grpc_codes(host, port)
                assert "UNAUTHENTICATED" in codes and "OK" not in codes, (proc, port, codes)
                how = f"gRPC {'/'.join(sorted(codes))} without the token"
        else:
            raise AssertionError(f"{service} ({proc}) listens on {port}: nothing of it should")
        report.append(f"{service:15} {proc:40} {port:6}  {how}")
    assert {r.split()[0] for r in report} >= {"prefect-server", "dask-scheduler", "dask-workers", "ray-head",
                                              "ray-worker"}, report
    assert any(f" {dashboard_port} " in r for r in report), report  # the dashboard was found and checked
    return report


def check_secrets_stay_secret(home, profile: dict, outputs) -> None:
    """The auth string and the Ray token: in 0600 files only, never in the profile, a log, a command's
    output, or anything the Prefect API holds about the flow runs (parameters, job variables)."""
    from cluster.credentials import basic_auth

    cluster = home / "cluster"
    auth = json.loads((cluster / "secrets.json").read_text())["prefect_api_auth_string"]
    token = (cluster / "ray_auth_token").read_text().strip()
    for f in ("secrets.json", "ray_auth_token", "profile.json", "tls/key.pem", "tls/cert.pem", "tls/ca.pem",
              "tls/dashboard.p12"):
        assert (cluster / f).stat().st_mode & 0o077 == 0, f
    assert auth not in (cluster / "profile.json").read_text()
    for log in (cluster / "logs").glob("*.log"):
        text = log.read_text(errors="ignore")
        assert auth not in text and token not in text, log
    for out in outputs:
        assert auth not in out.stdout + out.stderr and token not in out.stdout + out.stderr
        assert STORAGE_PW not in out.stdout + out.stderr and WANDB_KEY not in out.stdout + out.stderr
    held = {}
    for what in ("flow_runs", "deployments", "logs", "artifacts"):  # parameters, job variables, every log line
        # (INFO) and the summaries
        req = urllib.request.Request(f"{profile['prefect_api_url']}/{what}/filter", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json", **basic_auth(auth)})
        with urllib.request.urlopen(req, timeout=10) as r:
            held[what] = r.read().decode()
    assert '"parameters"' in held["flow_runs"] and "epoch" in held["logs"] and "summary of" in held["logs"]
    assert "run directory" in held["artifacts"]
    for what, text in held.items():
        for secret in (auth, token, STORAGE_PW, WANDB_KEY):
            assert secret not in text, (what, secret[:8])
    # the user's own secrets: in no file under the home but the 0600 one that holds the clients' credentials
    for f in home.rglob("*"):
        if f.is_file() and f != cluster / "secrets.json":
            blob = f.read_bytes()
            assert STORAGE_PW.encode() not in blob and WANDB_KEY.encode() not in blob, f


def check_beats(home, profile: dict, flow_run_id: str) -> None:
    """A flow run of the CLI beats against the cluster's API (the zombie automation would mark it Crashed after
    75 s without a beat): its first beat reaches the server's events, and the run was never Crashed."""
    from cluster.credentials import basic_auth

    auth = basic_auth(json.loads((home / "cluster" / "secrets.json").read_text())["prefect_api_auth_string"])

    def post(path: str, body: dict) -> dict | list:
        req = urllib.request.Request(f"{profile['prefect_api_url']}{path}", data=json.dumps(body).encode(),
                                     method="POST", headers={"Content-Type": "application/json", **auth})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    beats = {"filter": {"event": {"name": ["prefect.flow-run.heartbeat"]},
                        "resource": {"id": [f"prefect.flow-run.{flow_run_id}"]}}, "limit": 10}
    deadline = time.monotonic() + 30  # the server persists events in batches
    while not post("/events/filter", beats)["events"]:
        assert time.monotonic() < deadline, "no heartbeat event of the CLI's flow run reached the cluster's API"
        time.sleep(1)
    req = urllib.request.Request(f"{profile['prefect_api_url']}/flow_run_states/?flow_run_id={flow_run_id}", headers=auth)
    with urllib.request.urlopen(req, timeout=10) as r:
        kinds = [st["type"] for st in json.loads(r.read())]
    assert "CRASHED" not in kinds and "COMPLETED" in kinds, kinds


def kill_service(home, service: str) -> None:
    """SIGKILL one service of `cluster up` and every process under it (a flow run under the Prefect worker)."""
    for s in json.loads((home / "cluster" / "pids.json").read_text()):
        if s["name"] == service:
            root = psutil.Process(s["pid"])
            for p in [root, *root.children(recursive=True)]:
                try:
                    p.kill()
                except psutil.Error:
                    pass


def training(home) -> bool:
    for p in ours(home):
        try:
            if "RayTrainWorker" in " ".join(p.cmdline()):
                return True
        except psutil.Error:
            continue
    return False


def kill_when_training(home, service: str, deadline_s: float, proc) -> float:
    """SIGKILL `service` once a Ray Train worker is up; returns when (time.monotonic())."""
    deadline = time.monotonic() + deadline_s
    while not training(home) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
    if proc.poll() is not None:  # what ended it, in the failure's message
        raise AssertionError(f"the run ended (exit {proc.returncode}) before {service} could be killed:\n"
                             f"{proc.stderr.read()[-4000:]}")
    kill_service(home, service)
    return time.monotonic()


def check_chaos(home, spec, env) -> list[str]:
    """Chaos on the cluster, in one submitted run: the Ray worker node killed mid-training (Ray Train carries on
    from its checkpoint on the head), then the Prefect worker with the flow run's process: the run is marked
    CRASHED within 2 minutes and `submit --wait` exits non-zero."""
    full = {**os.environ, **env}
    full.pop("CONDUCTOR_DASK_ADDRESS", None)
    proc = subprocess.Popen([sys.executable, "-m", "flows", "submit", str(spec), "--wait", "--json",
                             "--set", "train.epochs=40", "--set", "train.max_failures=3"], cwd=ROOT, env=full,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ray_killed = kill_when_training(home, "ray-worker", 300, proc)
    time.sleep(3)  # the dead node's workers go; training resumes from the checkpoint
    prefect_killed = kill_when_training(home, "prefect-worker", 120, proc)
    out, err = proc.communicate(timeout=600)
    took = time.monotonic() - prefect_killed
    assert proc.returncode != 0 and "ended CRASHED" in err, err[-3000:]
    assert took <= 120, f"the dead flow run was marked CRASHED {took:.0f}s after the kill"
    return [f"Ray worker node killed mid-run: training carried on ({prefect_killed - ray_killed:.0f}s later still "
            f"training); Prefect worker then killed with its flow run: CRASHED, submit --wait exit "
            f"{proc.returncode}, {took:.0f}s after the kill"]


def test_cluster_up_submit_sweep_down(tmp_path, postgres_db):
    home = tmp_path / "runs"
    name = f"cluster-{uuid.uuid4().hex[:6]}"
    env = {"CONDUCTOR_HOME": str(home), "CONDUCTOR_PREFECT_DB": f"postgresql+asyncpg://{PG}/{postgres_db}",
           "CONDUCTOR_OPTUNA_STORAGE": f"postgresql+psycopg2://postgres:{STORAGE_PW}@127.0.0.1:5432/test",
           "WANDB_API_KEY": WANDB_KEY}
    spec = write_spec(tmp_path / "spec.yaml", {
        "name": name,
        "data": {"source": "builtin:digits", "target": "label", "shape": [1, 8, 8]},
        "model": {"name": "cnn", "params": {"channels": [8, 16], "hidden": 32}},
        "train": {"epochs": 3, "workers": 1, "batch_size": 64, "lr": 0.005, "early_stopping": None},
        "sweep": {"metric": "val/accuracy", "direction": "maximize", "trials": 4, "parallel": 2, "sampler": "random",
                  "pruner": "median", "space": {"train.lr": {"low": 1.0e-4, "high": 3.0e-2, "log": True},
                                                "model.params.dropout": {"low": 0.0, "high": 0.4}}},
    })
    profile = {}
    try:
        up = run_cli("cluster", "up", "--json", env=env, timeout=300)
        assert up.returncode == 0, up.stderr[-3000:]
        profile = last_json(up)
        assert profile["prefect_api_url"].startswith("http://127.0.0.1:")
        assert profile["dask_address"].startswith("tls://127.0.0.1:") and profile["prefect_api_auth_string"] == "***"
        assert json.loads((home / "cluster" / "profile.json").read_text())["ray_address"] == profile["ray_address"]
        dashboard = profile["dask_dashboard_url"]
        assert dashboard.startswith("https://127.0.0.1:") and f"dashboard {dashboard}" in up.stderr
        pids = sorted(s["pid"] for s in json.loads((home / "cluster" / "pids.json").read_text()))

        again = run_cli("cluster", "up", env=env, timeout=120)  # idempotent: nothing new starts
        assert again.returncode == 0 and "already up" in again.stderr
        assert sorted(s["pid"] for s in json.loads((home / "cluster" / "pids.json").read_text())) == pids

        status = run_cli("cluster", "status", "--json", env=env, timeout=120)
        assert status.returncode == 0, status.stdout + status.stderr
        services = {r["service"]: r for r in last_json(status)}
        assert set(services) == {"prefect-server", "prefect-worker", "ray-head", "ray-worker", "dask-scheduler",
                                 "dask-workers", "dask-dashboard", "commands"}
        assert all(r["answers"] for r in services.values())
        assert services["dask-dashboard"]["address"] == dashboard  # and how to open it, under the table:
        assert f"Dask dashboard: {dashboard}" in status.stderr and f"--cacert {home / 'cluster' / 'tls' / 'ca.pem'}" \
            in status.stderr and "dashboard.p12" in status.stderr

        run = run_cli("submit", spec, "--wait", "--json", env=env, timeout=600)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
        out = last_json(run)
        assert out["state"] == "COMPLETED" and out["ui_url"].startswith(profile["ui_url"])
        assert out["summary"]["metrics"]["test/accuracy"] > 0.5
        assert (home / name).is_dir()

        sweep = run_cli("submit", spec, "--flow", "sweep", "--wait", "--json", env=env, timeout=900)
        assert sweep.returncode == 0, sweep.stdout[-2000:] + sweep.stderr[-3000:]
        out = last_json(sweep)
        assert out["state"] == "COMPLETED"
        t = out["summary"]["trials"]
        assert t["complete"] + t["pruned"] == 4
        study = optuna.load_study(study_name=name, storage=make_storage(env["CONDUCTOR_OPTUNA_STORAGE"], heartbeat=False))
        nodes = {tr.user_attrs["node_id"] for tr in study.trials}
        assert len(nodes) == 2, nodes  # parallel trials were placed on both Ray nodes
        check_sweep(out["summary"], study)

        # straight from the CLI, run and sweep use the cluster as well (Ray's token mode set before ray loads)
        direct = run_cli("run", spec, "--json", env=env, timeout=600)
        assert direct.returncode == 0 and "InvalidAuthToken" not in direct.stderr, direct.stderr[-3000:]
        assert last_json(direct)["metrics"]["test/accuracy"] > 0.5
        check_beats(home, profile, last_json(direct)["flow_run_id"])
        old = start_older_worker(env)  # left by conductor's previous code: stopped, not reused
        direct = run_cli("sweep", spec, "--study", f"{name}-direct", "--trials", "2", "--json", env=env, timeout=600)
        assert direct.returncode == 0 and "InvalidAuthToken" not in direct.stderr, direct.stderr[-3000:]
        t = last_json(direct)["trials"]
        assert t["complete"] + t["pruned"] == 2
        straight = optuna.load_study(study_name=f"{name}-direct",
                                     storage=make_storage(env["CONDUCTOR_OPTUNA_STORAGE"], heartbeat=False))
        assert {tr.user_attrs["node_id"] for tr in straight.trials} <= nodes  # on the cluster's nodes
        served = (home / "cluster" / "logs" / "commands.log").read_text()  # both on the command server's imports
        assert served.count(": conductor run\n") == 1 and served.count(": conductor sweep\n") == 1, served
        assert served.count(": exit 0\n") == 2, served
        # the warm workers of the submitted sweep stayed up (torch loaded) and ran the direct sweep's trials
        assert {tr.user_attrs["worker_pid"] for tr in straight.trials} <= {tr.user_attrs["worker_pid"] for tr in study.trials}
        status = run_cli("cluster", "status", env=env, timeout=120)
        assert "warm trial workers: 2" in status.stdout, status.stdout
        deadline = time.monotonic() + 30  # Ray stops a killed actor's process asynchronously
        while psutil.pid_exists(old) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not psutil.pid_exists(old)

        bad = run_cli("submit", spec, "--set", "train.lr=-1", env=env, timeout=120)
        assert bad.returncode == 2 and bad.stderr.startswith("error: ")

        # no open door: after the runs (Ray workers and actors listening too), every socket refuses a stranger
        print("\n".join(check_no_open_door(home, profile)))
        check_secrets_stay_secret(home, profile, [up, run, sweep, direct])
        print("\n".join(check_chaos(home, spec, env)))  # last: it leaves the cluster without its workers
    finally:
        down = run_cli("cluster", "down", env=env, timeout=180)
        for study_name in (name, f"{name}-direct"):
            try:
                optuna.delete_study(study_name=study_name,
                                    storage=make_storage(env["CONDUCTOR_OPTUNA_STORAGE"], heartbeat=False))
            except KeyError:
                pass
    assert down.returncode == 0, down.stderr
    assert ours(home) == []
    for key in ("prefect_api_url", "dask_address", "ray_address"):
        if key in profile:
            port = int(profile[key].removesuffix("/api").rsplit(":", 1)[1])
            assert port_free(port), key
    if "dask_dashboard_url" in profile:
        assert port_free(urlsplit(profile["dask_dashboard_url"]).port), "dask_dashboard_url"
    assert not (home / "cluster" / "profile.json").exists()
    for left in ("secrets.json", "tls", "ray_auth_token"):  # every credential is gone
        assert not (home / "cluster" / left).exists(), left
