"""Nothing conductor starts writes outside CONDUCTOR_HOME by default: the embedded Dask's spill space, Prefect's
home (profile, the ephemeral API's database), matplotlib's cache (Ray's sessions: tests/unit/test_leftovers.py)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cluster.connect import dask_runner_kwargs
from cluster.settings import load_settings

ROOT = Path(__file__).resolve().parents[3]


def test_the_embedded_dask_spills_under_the_home(tmp_path, monkeypatch):
    monkeypatch.setenv("CONDUCTOR_HOME", str(tmp_path / "runs"))
    for var in ("CONDUCTOR_DASK_ADDRESS", "CONDUCTOR_RAY_ADDRESS", "PREFECT_API_URL"):
        monkeypatch.delenv(var, raising=False)
    s = load_settings()
    assert s.dask_address is None
    assert dask_runner_kwargs(s)["cluster_kwargs"]["local_directory"] == str(s.home / ".dask")


def test_the_embedded_dask_has_no_dashboard_and_listens_on_loopback(tmp_path, monkeypatch):
    """Its scheduler's HTTP server (always started) on a loopback port, without Bokeh's dashboard, which nobody
    could find on its random port and which cost every command ~0.5 s of imports, nor the worker's profiler
    that only a dashboard shows."""
    import urllib.error
    import urllib.request

    from distributed import LocalCluster

    monkeypatch.setenv("CONDUCTOR_HOME", str(tmp_path / "runs"))
    monkeypatch.delenv("CONDUCTOR_DASK_ADDRESS", raising=False)
    with LocalCluster(**dask_runner_kwargs(load_settings())["cluster_kwargs"]) as cluster:
        (worker,) = cluster.workers.values()  # a thread of this process: no profiler sampling its stacks
        assert "profile" not in worker.periodic_callbacks and "profile-cycle" not in worker.periodic_callbacks
        http = cluster.scheduler.http_server
        hosts = {sock.getsockname()[0] for sock in http._sockets.values()}
        port = next(iter(http._sockets.values())).getsockname()[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            assert r.status == 200
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5)
            status = 200
        except urllib.error.HTTPError as e:
            status = e.code
    assert hosts == {"127.0.0.1"} and status == 404


def test_prefect_and_matplotlib_write_under_the_home_unless_told(tmp_path):
    """`conductor` outside make (no PREFECT_HOME, no MPLCONFIGDIR): both land under CONDUCTOR_HOME; a user's
    own ~/.prefect (a profile with an API URL or a Cloud key) stays in use."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_HOME", "MPLCONFIGDIR")}
    env["HOME"] = str(tmp_path / "user")
    code = ("import os; from cluster.connect import quiet_env; quiet_env(); "
            "print(os.environ.get('PREFECT_HOME', '-')); print(os.environ['MPLCONFIGDIR'])")

    def shown(**extra) -> list[str]:
        return subprocess.run([sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True,
                              check=True, cwd=ROOT).stdout.split()

    h = tmp_path / "h"
    assert shown(CONDUCTOR_HOME=str(h)) == [str(h / ".prefect"), str(h / ".matplotlib")]
    assert shown(PREFECT_HOME="/elsewhere", MPLCONFIGDIR="/m") == ["/elsewhere", "/m"]  # the user's setting wins
    (tmp_path / "user" / ".prefect").mkdir(parents=True)
    assert shown(CONDUCTOR_HOME=str(h)) == ["-", str(h / ".matplotlib")]


def test_cluster_up_loading_prefect_makes_no_prefect_home_outside_the_home(tmp_path):
    """`cluster up` builds its zombie automation with Prefect's models (cluster/zombies.py), in a process that
    starts no flow: Prefect's settings, loaded then, create PREFECT_HOME. It made ~/.prefect, and every later
    command took that for the user's own Prefect set-up and kept its flow runs there, whatever its home."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_HOME"}
    env.update(HOME=str(tmp_path / "user"), CONDUCTOR_HOME=str(tmp_path / "h"))
    code = ("from cluster.zombies import automation; assert automation()['name']; "
            "from prefect.settings import get_current_settings; print(get_current_settings().home)")
    used = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                          cwd=ROOT).stdout.split()
    assert used == [str(tmp_path / "h" / ".prefect")] and not (tmp_path / "user" / ".prefect").exists()
