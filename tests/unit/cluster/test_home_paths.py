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


def test_prefect_and_matplotlib_write_under_the_home_unless_told(tmp_path):
    """`conductor` outside make (no PREFECT_HOME, no MPLCONFIGDIR): both land under CONDUCTOR_HOME."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_HOME", "MPLCONFIGDIR")}
    code = ("import os; from cluster.connect import quiet_env; quiet_env(); "
            "print(os.environ['PREFECT_HOME']); print(os.environ['MPLCONFIGDIR'])")
    out = subprocess.run([sys.executable, "-c", code], env={**env, "CONDUCTOR_HOME": str(tmp_path / "h")},
                         capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == [str(tmp_path / "h" / ".prefect"), str(tmp_path / "h" / ".matplotlib")]
    kept = subprocess.run([sys.executable, "-c", code], env={**env, "PREFECT_HOME": "/elsewhere", "MPLCONFIGDIR": "/m"},
                          capture_output=True, text=True, check=True, cwd=ROOT)
    assert kept.stdout.split() == ["/elsewhere", "/m"]  # the user's own setting wins
