"""`conductor runs`, `show`, `compare` and `sync` on run directories made here (new ones with repro.json and
baselines, an old one without either), through the CLI's own entry point. The upload itself needs W&B and
the network and is not tested: the refusals and the bookkeeping are."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app

OLD, NEW, REG = "20260101-090000-aaaa", "20260102-090000-bbbb", "20260103-090000-cccc"
HISTORY = [{"epoch": e, "train/loss": 1 / e, "val/loss": 1.1 / e, "val/accuracy": 0.5 + e / 10} for e in (1, 2, 3)]


def make_run(home: Path, name: str, run_id: str, task: str = "classification", metrics: dict | None = None,
             lr: float = 0.01, repro: dict | None = None, wandb_id: str | None = None) -> Path:
    d = home / name / run_id
    (d / "plots").mkdir(parents=True)
    model = {"classification": "mlp", "regression": "linear"}[task]
    spec = {"name": name, "data": {"source": "builtin:digits", "task": task, "target": "label"},
            "model": {"name": model, "params": {}}, "train": {"epochs": 3, "lr": lr, "seed": 0}}
    (d / "spec.yaml").write_text(yaml.safe_dump(spec))
    (d / "metrics.json").write_text(json.dumps(metrics or {"test/accuracy": 0.9, "epochs": 3}))
    (d / "model.json").write_text(json.dumps({"name": model, "task": task}))
    (d / "history.json").write_text(json.dumps(HISTORY))
    (d / "preprocessor.json").write_text(json.dumps({"counts": {"train": 700, "val": 150, "test": 150}}))
    (d / "report.html").write_text("<html></html>")
    (d / "plots" / "learning_curves.png").write_bytes(b"\x89PNG")
    if repro is not None:
        (d / "repro.json").write_text(json.dumps(repro))
    if wandb_id:
        (d / "wandb.json").write_text(json.dumps({"mode": "offline", "id": wandb_id,
                                                  "run_dir": str(home / "wandb" / f"offline-run-20260102_090000-{wandb_id}")}))
    return d


@pytest.fixture
def home(tmp_path) -> Path:
    home = tmp_path / "runs"
    make_run(home, "churn", OLD)  # registered before repro.json and baselines
    make_run(home, "churn", NEW, lr=0.1, repro={"git": {"spec": {"commit": "c0ffee1234", "dirty": True},
                                                        "conductor": {"commit": "beef"}}, "duration_s": 42.0,
                                                "data_fingerprint": "fp-v3", "command": ["conductor", "run", "x"]},
             metrics={"test/accuracy": 0.93, "epochs": 3, "baseline/majority/accuracy": 0.55,
                      "baseline/logistic/accuracy": 0.81, "baseline/logistic/f1_macro": 0.8})
    make_run(home, "house", REG, task="regression", metrics={"test/r2": 0.7, "test/rmse": 1.5, "epochs": 5,
                                                             "baseline/mean/r2": 0.0, "baseline/ols/r2": 0.6})
    for junk in (".cache/abc-v3", ".tmp-x-1-ab", "wandb/.cache", "cluster", "churn/sweeps/churn/t000",
                 "churn/.tmp-20260104-000000-dddd-1-ab", "house/not-a-run"):
        (home / junk).mkdir(parents=True, exist_ok=True)
    (home / "churn" / "sweeps" / "churn" / "t000" / "metrics.json").write_text("{}")
    (home / "churn" / ".tmp-20260104-000000-dddd-1-ab" / "metrics.json").write_text("{}")
    return home


def invoke(home: Path, *args, env: dict | None = None):
    return CliRunner().invoke(app, [str(a) for a in args],
                              env={"CONDUCTOR_HOME": str(home), "COLUMNS": "250", **(env or {})})


def last_json(result) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


def one_error(result, expected: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr


def test_runs_lists_every_run_newest_first_old_ones_too(home):
    result = invoke(home, "runs", "--json")
    assert result.exit_code == 0, result.output
    rows = last_json(result)["runs"]
    assert [r["run_id"] for r in rows] == [REG, NEW, OLD]  # staged, sweep trial, cache and other folders skipped
    reg, new, old = rows
    assert (new["metric"], new["value"], new["baseline"]) == ("test/accuracy", 0.93, {"name": "logistic", "value": 0.81})
    assert (new["commit"], new["dirty"], new["duration_s"], new["model"]) == ("c0ffee1234", True, 42.0, "mlp")
    assert (old["commit"], old["duration_s"], old["baseline"], old["epochs"]) == (None, None, None, 3)
    assert (reg["metric"], reg["value"], reg["baseline"]["name"], reg["task"]) == ("test/r2", 0.7, "ols", "regression")


def test_runs_table_and_name_filter(home):
    result = invoke(home, "runs", "churn")
    assert result.exit_code == 0, result.output
    assert NEW in result.stdout and OLD in result.stdout and REG not in result.stdout
    assert "logistic 0.8100" in result.stdout and "c0ffee12*" in result.stdout and "42.0s" in result.stdout
    one_error(invoke(home, "runs", "nosuch"), "NAME: no runs of 'nosuch'")
    empty = invoke(home.parent / "empty", "runs")
    assert empty.exit_code == 0 and "no registered runs" in empty.stdout


@pytest.mark.parametrize("how", ["id", "name/id", "path"])
def test_show_finds_a_run_by_id_name_id_or_path(home, how):
    run = {"id": NEW, "name/id": f"churn/{NEW}", "path": str(home / "churn" / NEW)}[how]
    result = invoke(home, "show", run, "--json")
    assert result.exit_code == 0, result.output
    shown = last_json(result)
    assert shown["run_id"] == NEW and shown["metrics"]["test/accuracy"] == 0.93
    assert shown["repro"]["data_fingerprint"] == "fp-v3" and shown["report"].endswith("report.html")
    assert shown["plots"] == [str(home / "churn" / NEW / "plots" / "learning_curves.png")]
    assert "c0ffee1234 (dirty)" in result.stderr and "conductor run x" in result.stderr


def test_show_an_old_run_and_refuse_an_unknown_one(home):
    result = invoke(home, "show", OLD)
    assert result.exit_code == 0, result.output
    assert "none (registered before runs kept repro.json)" in result.stdout and "test/accuracy" in result.stdout and "report.html" in result.stdout
    one_error(invoke(home, "show", "20990101-000000-ffff"), "RUN: '20990101-000000-ffff' is no run directory")
    one_error(invoke(home, "show", "../etc"), "RUN: '../etc' is no run directory")
    one_error(invoke(home, "show", str(home / "house" / "not-a-run")), "is no run directory")


def test_compare_puts_metrics_side_by_side_with_the_spec_diff_and_curves(home, tmp_path):
    out = tmp_path / "cmp.html"
    result = invoke(home, "compare", OLD, f"churn/{NEW}", "--html", out, "--json")
    assert result.exit_code == 0, result.output
    cmp = last_json(result)
    assert cmp["metrics"]["test/accuracy"] == [0.9, 0.93]
    assert cmp["metrics"]["baseline/logistic/accuracy"] == [None, 0.81]
    assert cmp["spec_diff"]["train.lr"] == [0.01, 0.1] and "train.epochs" not in cmp["spec_diff"]
    assert cmp["spec_diff"]["repro.commit"] == [None, "c0ffee1234"]
    page = out.read_text()
    assert "data:image/png;base64,iVBOR" in page and "train.lr" in page and cmp["html"] == str(out)


def test_compare_writes_under_home_by_default_and_needs_two_runs(home):
    result = invoke(home, "compare", OLD, NEW, REG)
    assert result.exit_code == 0, result.output
    page = home / "compare" / f"{OLD}__{NEW}__{REG}.html"
    assert page.is_file() and str(page) in result.stdout.replace("\n", "")
    assert "data.task" in result.stdout and "model.name" in result.stdout  # spec differences table
    one_error(invoke(home, "compare", OLD), "compare: give at least two runs")
    one_error(invoke(home, "compare", OLD, "nope"), "RUN: 'nope' is no run directory")
    report = home / "churn" / OLD / "report.html"
    one_error(invoke(home, "compare", OLD, NEW, "--html", report), "--html: ")  # a registered run never changes
    assert report.read_text() == "<html></html>"


def test_a_rerun_of_a_run_older_than_a_model_param_keeps_its_old_meaning(tmp_path, capsys):
    """An LSTM forecaster registered before `relative` existed ran on absolute windows: rerun says so and
    runs it that way, not with today's default; a run that named the param keeps it."""
    from flows.cli.rerun import _as_trained
    from tasks.spec import validate

    raw = {"name": "s", "data": {"source": "builtin:sunspots", "task": "forecasting", "target": "sunactivity",
                                 "time_column": "year"},
           "model": {"name": "rnn", "params": {"cell": "lstm", "hidden_size": 8, "num_layers": 1, "dropout": 0.0}}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(raw))
    (tmp_path / "model.json").write_text(json.dumps({"name": "rnn", "params": raw["model"]["params"]}))
    assert _as_trained(validate(raw), tmp_path).model.params["relative"] == "none"
    assert "predates model.params ['ar', 'relative']" in capsys.readouterr().err
    raw["model"]["params"]["relative"] = "revin"
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(raw))
    assert _as_trained(validate(raw), tmp_path).model.params["relative"] == "revin"


# ---------------------------------------------------------------- sync: refusals and bookkeeping

def offline_run(home: Path, run_id: str, synced: bool = False) -> Path:
    d = home / "wandb" / f"offline-run-20260102_090000-{run_id}"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"run-{run_id}.wandb").write_bytes(b"")
    if synced:
        (d / f"run-{run_id}.wandb.synced").write_text("")
    return d


NO_LOGIN = {"WANDB_API_KEY": None, "NETRC": "/nonexistent/netrc"}


def test_sync_refuses_without_login_or_network(home):
    offline_run(home, "abc123")
    one_error(invoke(home, "sync"), "sync: name one RUN, or pass --all")
    one_error(invoke(home, "sync", NEW, "--all"), "sync: name one RUN, or pass --all")
    one_error(invoke(home, "sync", "--all", env=NO_LOGIN), "sync: not logged in to W&B")
    # logged in, but nothing listens where W&B is said to be (a closed loopback port: no network needed)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    one_error(invoke(home, "sync", "--all", env={"WANDB_API_KEY": "x" * 40, "WANDB_BASE_URL": f"http://127.0.0.1:{port}"}),
              f"sync: cannot reach W&B at 127.0.0.1:{port}")


def test_sync_skips_what_is_synced_without_asking_for_login(home):
    offline_run(home, "m1", synced=True)  # wandb's own marker
    offline_run(home, "b2")
    (home / "wandb" / "synced.json").write_text(json.dumps({"offline-run-20260102_090000-b2": {}}))  # ours
    result = invoke(home, "sync", "--all", "--json", env=NO_LOGIN)
    assert result.exit_code == 0, result.output
    assert "nothing to sync: 2 offline W&B run(s), 2 already synced" in result.stderr
    assert len(last_json(result)["skipped"]) == 2
    make_run(home, "churn", "20260105-000000-eeee", wandb_id="m1")
    result = invoke(home, "sync", "churn/20260105-000000-eeee", env=NO_LOGIN)
    assert result.exit_code == 0 and "1 already synced" in result.stdout


def test_sync_uploads_the_rest_and_remembers_them(home, monkeypatch):
    from tasks.history import sync

    offline_run(home, "done1", synced=True)
    todo = [offline_run(home, "new1"), offline_run(home, "new2")]
    calls = []
    monkeypatch.setattr(sync, "check_can_upload", lambda: None)  # the login and network checks are tested above
    monkeypatch.setattr(sync, "upload_command", lambda d: calls.append(d) or [sys.executable, "-c", "pass"])
    result = invoke(home, "sync", "--all", "--json")
    assert result.exit_code == 0, result.output
    assert sorted(calls) == todo and sorted(last_json(result)["synced"]) == [str(d) for d in todo]
    assert set(json.loads((home / "wandb" / "synced.json").read_text())) == {d.name for d in todo}
    again = invoke(home, "sync", "--all", env=NO_LOGIN)
    assert again.exit_code == 0 and "3 already synced" in again.stdout and len(calls) == 2


def test_a_failed_upload_exits_1_and_is_not_remembered(home, monkeypatch):
    from tasks.history import sync

    offline_run(home, "bad1")
    monkeypatch.setattr(sync, "check_can_upload", lambda: None)
    monkeypatch.setattr(sync, "upload_command", lambda d: [sys.executable, "-c", "import sys; sys.exit('upload refused')"])
    result = invoke(home, "sync", "--all")
    assert result.exit_code == 1 and "failed: offline-run-20260102_090000-bad1: upload refused" in result.stderr
    assert not (home / "wandb" / "synced.json").exists()


# ---------------------------------------------------------------- rerun's tolerance rule

def test_the_rerun_tolerance_rule():
    from tasks.history.reproduce import compare_metrics, tolerance, verdict

    assert tolerance("test/accuracy", 0.9, 100) == pytest.approx(2 * (0.9 * 0.1 / 100) ** 0.5)  # 2 binomial SEs
    assert tolerance("test/accuracy", 1.0, 100) == 0.01 and tolerance("test/f1_macro", 0.5, None) == 0.01  # the floor
    assert tolerance("test/r2", 0.5, 100) == pytest.approx(0.05) and tolerance("test/r2", 0.99, 100) == 0.02
    assert tolerance("test/rmse", 2.0, 100) == pytest.approx(0.2) and tolerance("test/loss", 0.0, 100) == 1e-6
    rows = compare_metrics({"test/accuracy": 0.9, "test/loss": 0.3, "test/rmse": 1.0, "epochs": 3},
                           {"test/accuracy": 0.85, "test/loss": 0.31}, n_test=100)
    assert [(r["metric"], r["within"]) for r in rows] == [("test/accuracy", True), ("test/loss", True),
                                                         ("test/rmse", False)]
    assert verdict(rows).startswith("not reproduced: 1 of 3 test metrics") and "test/rmse missing" in verdict(rows)
    assert verdict(rows[:2]) == "reproduced: all 2 test metrics within the run-to-run tolerance"
