"""Connecting to Ray from a process that imported ray before conductor set its auth mode."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.integration

SCRIPT = """
import json, sys
import psutil
import ray  # before conductor sets RAY_AUTH_MODE: Ray reads it at this import
from cluster.connect import ensure_ray
from cluster.dashboard_deps import found_on_disk
from cluster.settings import load_settings
ensure_ray(load_settings(), num_cpus=1)
answer = ray.get(ray.remote(lambda: 41 + 1).remote(), timeout=120)
node = ray._private.worker._global_node
raylet = psutil.Process(node.all_processes["raylet"][0].process.pid)
agents = [" ".join(p.cmdline()) for p in raylet.children() if "agent" in " ".join(p.cmdline()).lower()]
dashboard = " ".join(psutil.Process(node.all_processes["dashboard"][0].process.pid).cmdline())
aiohttp = "aiohttp" in sys.modules  # before Ray's own check runs here, below
print(json.dumps({"answer": answer, "aiohttp_in_driver": aiohttp, "agents": len(agents),
                  "minimal": [c for c in agents + [dashboard] if "--minimal" in c],
                  "rays_own_check": repr(ray._private.utils.get_dashboard_dependency_error()),
                  "on_disk": repr(found_on_disk())}))
"""


def test_a_driver_that_imported_ray_first_still_authenticates(tmp_path):
    """Also: the embedded Ray's start answers Ray's dashboard dependency check from the disk (cluster/dashboard_deps.py)
    with Ray's own answer, so its API server and agents load what they did, and the driver imports none of them."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "CONDUCTOR_RAY_ADDRESS")}
    env["CONDUCTOR_HOME"] = str(tmp_path / "runs")
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["answer"] == 42
    assert got["aiohttp_in_driver"] is False
    assert got["rays_own_check"] == got["on_disk"] == "None"  # Ray's dashboard dependencies are installed here
    assert got["agents"] >= 1 and got["minimal"] == []


def test_ray_keeps_its_session_under_the_home(engines, home):
    """Ray's sockets, logs and spilled objects live under CONDUCTOR_HOME/.ray, not /tmp/ray."""
    import ray

    from cluster.connect import ray_temp_dir

    session = Path(ray._private.worker.global_worker.node.get_session_dir_path())
    assert ray_temp_dir(home) is not None, "the test home is too deep for this test"  # /tmp/conductor-test-*/runs
    assert session.parent == home / ".ray" and session.is_dir()


def test_every_raylet_takes_a_request_to_prestart_workers(engines, monkeypatch):
    """A run on a cluster asks each raylet for worker processes before its flow (cluster/connect.py
    prestart_ray_workers) through Ray's internal RPC, which swallows its own failure: a Ray release that moved or
    renamed it would drop that head start without a word. Here every raylet of the session's Ray (token auth on)
    takes the request, and an actor still starts and answers after it."""
    import ray

    from cluster.connect import prestart_ray_workers

    monkeypatch.delenv("CONDUCTOR_PRESTART", raising=False)
    alive = sum(1 for node in ray.nodes() if node["Alive"])
    assert alive >= 1 and prestart_ray_workers(2) == alive
    echo = ray.remote(num_cpus=0)(type("Echo", (), {"ping": lambda self: "pong"}))
    assert ray.get(echo.remote().ping.remote(), timeout=120) == "pong"


def test_the_embedded_ray_keeps_no_task_events(engines):
    """The Ray a command starts for itself serves no state API or dashboard (its API server loads no state module),
    so its processes record no task events: the driver's shutdown waited ~0.2 s to flush them to the GCS."""
    import ray

    node = ray._private.worker._global_node
    assert node is not None and node.is_head(), "the session's Ray is not the embedded one"
    assert node._config.get("task_events_report_interval_ms") == 0
    # and its clients retry a socket that is not listening yet every 100 ms, as often (10 s in all)
    assert node._config.get("raylet_client_connect_timeout_milliseconds") == 100
    assert node._config.get("raylet_client_num_connect_attempts") == 100


def test_the_embedded_ray_runs_no_autoscaler_or_log_monitor(engines):
    """A one-node Ray that dies with its command has nothing to autoscale, and with worker output kept in Ray's
    log files (no CONDUCTOR_RAY_LOGS) no driver reads what a log monitor publishes: neither process is started
    (cluster/connect.py without_monitors), and Ray's own start methods are back in place afterwards."""
    import ray
    from ray._private.node import Node

    from cluster.connect import without_monitors

    node = ray._private.worker._global_node
    started = {kind for kind, infos in node.all_processes.items() if infos}
    assert {"gcs_server", "raylet"} <= started and not started & {"monitor", "log_monitor"}, started
    assert ray.get(ray.remote(lambda: 6 * 7).remote(), timeout=120) == 42
    before = dict(Node.__dict__)
    with without_monitors(keep_log_monitor=True):
        assert Node.start_log_monitor is before["start_log_monitor"] and Node.start_monitor is not before["start_monitor"]
    assert Node.start_monitor is before["start_monitor"] and Node.start_log_monitor is before["start_log_monitor"]
