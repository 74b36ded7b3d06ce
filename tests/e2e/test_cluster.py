"""Cluster mode with real processes: cluster up → submit a run → submit a sweep over both Ray nodes →
cluster down, with Prefect's and Optuna's databases on PostgreSQL."""
from __future__ import annotations

import json
import os
import socket
import uuid

import optuna
import psutil
import pytest

from conftest import run_cli, write_spec
from tasks.sweep import make_storage

pytestmark = pytest.mark.e2e

PG = "postgres@127.0.0.1:5432"


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
    assert "postgres@" in summary["storage"]
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


def test_cluster_up_submit_sweep_down(tmp_path, postgres_db):
    home = tmp_path / "runs"
    name = f"cluster-{uuid.uuid4().hex[:6]}"
    env = {"CONDUCTOR_HOME": str(home), "CONDUCTOR_PREFECT_DB": f"postgresql+asyncpg://{PG}/{postgres_db}",
           "CONDUCTOR_OPTUNA_STORAGE": f"postgresql+psycopg2://{PG}/test"}
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
        assert profile["dask_address"].startswith("tcp://127.0.0.1:")
        assert json.loads((home / "cluster" / "profile.json").read_text())["ray_address"] == profile["ray_address"]
        pids = sorted(s["pid"] for s in json.loads((home / "cluster" / "pids.json").read_text()))

        again = run_cli("cluster", "up", env=env, timeout=120)  # idempotent: nothing new starts
        assert again.returncode == 0 and "already up" in again.stderr
        assert sorted(s["pid"] for s in json.loads((home / "cluster" / "pids.json").read_text())) == pids

        status = run_cli("cluster", "status", "--json", env=env, timeout=120)
        assert status.returncode == 0, status.stdout + status.stderr
        services = {r["service"]: r for r in last_json(status)}
        assert set(services) == {"prefect-server", "prefect-worker", "ray-head", "ray-worker", "dask-scheduler",
                                 "dask-workers"} and all(r["answers"] for r in services.values())

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
        direct = run_cli("sweep", spec, "--study", f"{name}-direct", "--trials", "2", "--json", env=env, timeout=600)
        assert direct.returncode == 0 and "InvalidAuthToken" not in direct.stderr, direct.stderr[-3000:]
        t = last_json(direct)["trials"]
        assert t["complete"] + t["pruned"] == 2
        straight = optuna.load_study(study_name=f"{name}-direct",
                                     storage=make_storage(env["CONDUCTOR_OPTUNA_STORAGE"], heartbeat=False))
        assert {tr.user_attrs["node_id"] for tr in straight.trials} <= nodes  # on the cluster's nodes

        bad = run_cli("submit", spec, "--set", "train.lr=-1", env=env, timeout=120)
        assert bad.returncode == 2 and bad.stderr.startswith("error: ")
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
    assert not (home / "cluster" / "profile.json").exists()
