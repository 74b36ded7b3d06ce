"""`conductor run` as a user runs it: a subprocess, the JSON summary, the run directory, the exit codes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run_cli, tree, write_spec

pytestmark = pytest.mark.e2e


def kill_9_mid_training(home: Path) -> None:
    """Chaos, one case (benchmarks/chaos.py loops it): `conductor run` and everything it started killed
    with SIGKILL once training has begun."""
    import os
    import subprocess
    import sys
    import time

    import psutil

    env = {**os.environ, "CONDUCTOR_HOME": str(home)}
    env.pop("CONDUCTOR_DASK_ADDRESS", None)
    proc = subprocess.Popen([sys.executable, "-m", "flows", "run", str(ROOT / "experiments" / "digits-cnn.yaml")],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=ROOT)
    deadline = time.monotonic() + 300
    for line in proc.stderr:
        if " epoch " in line or time.monotonic() > deadline:
            break
    family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    for p in family:
        try:
            p.kill()
        except psutil.Error:
            pass
    proc.wait()
    assert list(home.rglob(".tmp-*")), "the killed run left nothing to clean: it was killed too early or too late"


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("e2e") / "runs"
    kill_9_mid_training(home)
    proc = run_cli("run", ROOT / "experiments" / "digits-cnn.yaml", "--json", env={"CONDUCTOR_HOME": str(home)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return home, proc


def test_the_run_after_a_killed_one_reuses_its_cache_and_cleans_its_leftovers(digits_run):
    home, proc = digits_run
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["preprocess"]["cached"] is True
    assert "removed" in proc.stderr and "leftover(s) of killed runs" in proc.stderr
    assert not list(home.rglob(".tmp-*")) and not list((home / ".ray_storage").glob("[!.]*"))
    assert [p.name for p in (home / "digits-cnn").iterdir()] == [Path(summary["run_dir"]).name]


def test_digits_cnn_reaches_097(digits_run):
    home, proc = digits_run
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("name", "run_dir", "metrics", "wandb", "duration_s"):
        assert key in summary
    assert summary["name"] == "digits-cnn"
    assert summary["metrics"]["test/accuracy"] >= 0.97, summary["metrics"]
    run_dir = Path(summary["run_dir"])
    assert run_dir.parent == home / "digits-cnn"
    files = set(tree(run_dir))
    assert {"spec.yaml", "metrics.json", "model.pt", "model.json", "preprocessor.json", "report.html",
            "plots/learning_curves.png", "plots/confusion_matrix.png"} <= files
    assert summary["wandb"]["mode"] == "offline" and Path(summary["wandb"]["run_dir"]).is_dir()
    assert "epoch" in proc.stderr  # progress while it trains
    assert "test/accuracy" in proc.stdout  # the summary table
    saved = yaml.safe_load((run_dir / "spec.yaml").read_text())
    assert saved["model"]["name"] == "cnn"


def test_predict_cli_reproduces_the_test_predictions(digits_run, tmp_path):
    import pandas as pd

    home, proc = digits_run
    run_dir = Path(json.loads(proc.stdout.strip().splitlines()[-1])["run_dir"])
    state = json.loads((run_dir / "preprocessor.json").read_text())
    test_raw = home / ".cache" / state["fingerprint"] / "test_raw"
    out = tmp_path / "preds.csv"
    res = run_cli("predict", run_dir, test_raw, "--out", out, "--json", env={"CONDUCTOR_HOME": str(home)}, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout.strip().splitlines()[-1])["rows"] == state["counts"]["test"]
    got = pd.read_csv(out).sort_values("__row__").reset_index(drop=True)
    want = pd.read_parquet(run_dir / "predictions.parquet").sort_values("row").reset_index(drop=True)
    assert got["prediction"].tolist() == want["prediction"].tolist()
    assert abs(got["p_3"] - want["p_3"]).max() < 1e-6
    wrong = tmp_path / "wrong.csv"
    pd.read_parquet(test_raw).drop(columns=["pixel_0_3"]).to_csv(wrong, index=False)
    res = run_cli("predict", run_dir, wrong, "--out", tmp_path / "never.csv", env={"CONDUCTOR_HOME": str(home)},
                  timeout=300)
    assert res.returncode == 2 and res.stderr.startswith("error: INPUT: columns ['pixel_0_3'] are missing")
    assert not (tmp_path / "never.csv").exists()


def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path):
    """As a subprocess (the in-process variants of every error path are in tests/unit/test_cli_errors.py)."""
    spec = {"name": "bad", "data": {"source": "builtin:digits", "target": "digit"}, "model": {"name": "mlp"}}
    path = write_spec(tmp_path / "bad.yaml", spec)
    home = tmp_path / "runs"
    proc = run_cli("run", path, env={"CONDUCTOR_HOME": str(home)}, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: data.target: column 'digit' not found"), proc.stderr
    assert not home.exists()


def test_bad_override_and_missing_spec(tmp_path):
    home = tmp_path / "runs"
    proc = run_cli("run", ROOT / "experiments" / "digits-cnn.yaml", "--set", "train.lr=-1",
                   env={"CONDUCTOR_HOME": str(home)}, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "train.lr" in proc.stderr
    proc = run_cli("run", tmp_path / "nope.yaml", env={"CONDUCTOR_HOME": str(home)}, timeout=120)
    assert proc.returncode == 2 and "not found" in proc.stderr
    assert not home.exists()


def test_help_explains_commands():
    proc = run_cli("--help", timeout=120)
    assert proc.returncode == 0 and "run" in proc.stdout
    proc = run_cli("run", "--help", timeout=120)
    assert proc.returncode == 0 and "--set" in proc.stdout and "--json" in proc.stdout
