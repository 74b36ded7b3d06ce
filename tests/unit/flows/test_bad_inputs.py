"""Every input surface of conductor, each refused up front with the four points of the contract: exit 2,
one `error:` line naming the key, option, variable, column or file, no traceback, nothing written.

The surfaces and where their cases are (at least five each):
- spec keys (tasks/spec.py): SPEC_KEYS and SWEEP_KEYS below — models that do not fit the task, shapes,
  widths, non-finite numbers, seeds, metric names and directions, the search space;
- `--set` (tasks/spec_file.py): SETS — no `=`, not a dotted key, not YAML, a scalar into a section;
- the spec file itself: FILES — missing, not UTF-8, empty, not YAML, duplicate keys, not a mapping;
- command options: OPTIONS — --trials, --parallel, --study, serve's --port/--replicas/--host;
- environment variables and storage URLs: ENVIRONMENT and STORAGE — unreachable or malformed
  PREFECT_API_URL, CONDUCTOR_DASK_ADDRESS, CONDUCTOR_RAY_ADDRESS, --storage / CONDUCTOR_OPTUNA_STORAGE;
- data files: DATA — missing files and columns, wrong types, one class, all-missing columns;
- run directories: RUN_DIRS — not a run, missing files, a run id outside the name rule;
- the cluster profile: PROFILE — runs/cluster/profile.json corrupt, of the wrong shape, pointing nowhere.
All run in-process through typer's CliRunner; none starts an engine (a case that did would take seconds
and leave files under the home, and fail here).
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import tree
from flows.cli import app

BASE = {"name": "bad", "data": {"source": "builtin:digits", "target": "label"}, "model": {"name": "mlp"},
        "train": {"epochs": 2}}
SWEEP = {"metric": "val/accuracy", "trials": 2, "space": {"train.lr": {"low": 1e-3, "high": 1e-1, "log": True}}}


def merged(base: dict, change: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in change.items():
        out[key] = merged(out.get(key, {}), value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.fixture(autouse=True)
def same_environment():
    """`sweep --storage URL` hands the URL to the flow through the environment: keep it to each test, and
    start each from a machine with no cluster configured."""
    saved = dict(os.environ)
    for var in ("CONDUCTOR_DASK_ADDRESS", "CONDUCTOR_RAY_ADDRESS", "PREFECT_API_URL", "CONDUCTOR_OPTUNA_STORAGE"):
        os.environ.pop(var, None)  # the integration tests' in-process engines, when they ran first
    yield
    os.environ.clear()
    os.environ.update(saved)


def invoke(args: list, home: Path, env: dict | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], env={"CONDUCTOR_HOME": str(home), **(env or {})})


def assert_refused(result, expected: str, home: Path, before: list[str] | None = None) -> None:
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.output}"
    lines = [ln for ln in result.stderr.splitlines() if ln.strip() and not ln.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert tree(home) == (before or []), f"written under the home: {tree(home)}"


SPEC_KEYS = {
    "linear for classification": ({"model": {"name": "linear"}}, "model.name: 'linear' does not do classification"),
    "vae for forecasting": ({"data": {"source": "builtin:sunspots", "task": "forecasting", "target": "sunactivity"},
                             "model": {"name": "vae"}}, "model.name: 'vae' does not do forecasting"),
    "logistic for regression": ({"data": {"source": "builtin:diabetes", "task": "regression", "target": "progression"},
                                 "model": {"name": "logistic"}}, "does not do regression"),
    "cnn without shape": ({"model": {"name": "cnn"}}, "data.shape: model cnn needs [channels, height, width]"),
    "cnn with a flat shape": ({"model": {"name": "cnn"}, "data": {"shape": [64]}}, "data.shape: model cnn needs"),
    "rnn classification without shape": ({"model": {"name": "rnn"}}, "data.shape: model rnn on classification"),
    "zero width": ({"model": {"name": "mlp", "params": {"hidden": [0]}}}, "model.params.hidden.0"),
    "negative channels": ({"model": {"name": "cnn", "params": {"channels": [-4]}}, "data": {"shape": [1, 8, 8]}},
                          "model.params.channels.0"),
    "infinite lr": ({"train": {"lr": float("inf")}}, "train.lr"),
    "nan lr": ({"train": {"lr": float("nan")}}, "train.lr"),
    "nan dropout": ({"model": {"name": "mlp", "params": {"dropout": float("nan")}}}, "model.params.dropout"),
    "infinite weight decay": ({"train": {"weight_decay": float("inf")}}, "train.weight_decay"),
    "negative seed": ({"train": {"seed": -1}}, "train.seed"),
    "seed past numpy's range": ({"data": {"split": {"seed": 2**32}}}, "data.split.seed"),
    "zero epochs": ({"train": {"epochs": 0}}, "train.epochs"),
    "name climbing out": ({"name": "../elsewhere"}, "name: '../elsewhere'"),
    "no room to train": ({"data": {"split": {"val": 0.5, "test": 0.45}}}, "data.split"),
    "unknown builtin": ({"data": {"source": "builtin:mnist"}}, "data.source: unknown builtin 'mnist'"),
    "generative with target": ({"data": {"task": "generative"}, "model": {"name": "vae"}}, "data.target: a generative task"),
}

SWEEP_KEYS = {
    "metric never reported": ({"sweep": {"metric": "val/acc"}}, "sweep.metric: 'val/acc' is not reported"),
    "metric of another task": ({"sweep": {"metric": "val/r2"}}, "sweep.metric: 'val/r2' is not reported for classification"),
    "direction contradicts": ({"sweep": {"direction": "minimize"}}, "sweep.direction: minimize contradicts val/accuracy"),
    "float range on an int field": ({"sweep": {"space": {"train.batch_size": {"low": 16.0, "high": 128.0}}}},
                                    "sweep.space.train.batch_size: an integer field"),
    "int step not an integer": ({"sweep": {"space": {"train.epochs": {"low": 2, "high": 8, "step": 1.5}}}},
                                "sweep.space.train.epochs: an integer range needs an integer step"),
    "log with step": ({"sweep": {"space": {"train.lr": {"low": 1e-3, "high": 1e-1, "log": True, "step": 0.01}}}},
                      "sweep.space.train.lr: log and step cannot be combined"),
    "no validation split": ({"data": {"split": {"val": 0.0}}}, "needs a validation split but data.split.val is 0"),
    "data key in the space": ({"sweep": {"space": {"data.split.seed": {"low": 0, "high": 9}}}},
                              "sweep.space.data.split.seed: only train.* and model.params.*"),
    "float field with int bounds": ({"sweep": {"space": {"model.params.dropout": {"low": 0, "high": 1}}}},
                                    "sweep.space.model.params.dropout: a float field"),
    "range on a list field": ({"sweep": {"space": {"model.params.hidden": {"low": 8, "high": 64}}}},
                              "sweep.space.model.params.hidden: a range does not fit"),
    "value outside the field": ({"sweep": {"space": {"model.params.dropout": {"low": 0.1, "high": 1.5}}}},
                                "sweep.space.model.params.dropout: value 1.5 is not allowed"),
    "empty space": ({"sweep": {"space": {}}}, "sweep.space: empty"),
    "negative step": ({"sweep": {"space": {"train.lr": {"low": 0.1, "high": 0.5, "step": -0.1}}}},
                      "sweep.space.train.lr: step must be positive"),
}


@pytest.mark.parametrize("case", list(SPEC_KEYS))
def test_spec_keys(case, tmp_path):
    change, expected = SPEC_KEYS[case]
    spec = merged(BASE, change)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    assert_refused(invoke(["run", tmp_path / "s.yaml"], tmp_path / "runs"), expected, tmp_path / "runs")


@pytest.mark.parametrize("case", list(SWEEP_KEYS))
def test_sweep_keys(case, tmp_path):
    change, expected = SWEEP_KEYS[case]
    spec = merged({**BASE, "sweep": SWEEP}, change)
    if "space" in change.get("sweep", {}):
        spec["sweep"]["space"] = change["sweep"]["space"]
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    assert_refused(invoke(["sweep", tmp_path / "s.yaml"], tmp_path / "runs"), expected, tmp_path / "runs")


SETS = {
    "no equals sign": (["--set", "train.lr"], "--set 'train.lr': expected key=value"),
    "empty key": (["--set", "=5"], "'' is not a spec key"),
    "double dot": (["--set", "train..lr=0.1"], "'train..lr' is not a spec key"),
    "not YAML": (["--set", "train.lr=[0.1"], "--set train.lr: '[0.1' is not a YAML value"),
    "into a scalar": (["--set", "name.x=1"], "--set name.x: 'name' is not a section"),
    "unknown key": (["--set", "train.epochz=3"], "train.epochz: unknown key"),
    "infinite": (["--set", "train.lr=.inf"], "train.lr"),
    "mapping where a number goes": (["--set", "train.lr={a: 1}"], "train.lr"),
}


@pytest.mark.parametrize("case", list(SETS))
def test_set_values(case, tmp_path):
    args, expected = SETS[case]
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(BASE))
    assert_refused(invoke(["run", tmp_path / "s.yaml", *args], tmp_path / "runs"), expected, tmp_path / "runs")


FILES = {
    "missing": (None, "spec file", "not found"),
    "not UTF-8": (b"name: caf\xe9\n", "s.yaml", "not UTF-8 text (byte 0xe9 on line 1)"),
    "empty": (b"", "s.yaml", "the file is empty"),
    "not YAML": (b"name: [unclosed\n", "s.yaml", "not valid YAML"),
    "duplicate key": (b"name: a\nname: b\n", "s.yaml", "key 'name' appears twice (line 2)"),
    "a list": (b"- name: a\n", "s.yaml", "expected a mapping of keys"),
    "a scalar with --set": (b"just text\n", "s.yaml", "expected a mapping of keys"),
}


@pytest.mark.parametrize("case", list(FILES))
def test_spec_files(case, tmp_path):
    content, name, expected = FILES[case]
    path = tmp_path / "s.yaml"
    if content is not None:
        path.write_bytes(content)
    extra = ["--set", "train.lr=0.1"] if "--set" in case else []
    result = invoke(["run", path, *extra], tmp_path / "runs")
    assert_refused(result, expected, tmp_path / "runs")
    assert name in result.stderr


OPTIONS = {
    "zero trials": (["sweep", "{spec}", "--trials", "0"], "--trials and --parallel must be at least 1"),
    "negative parallel": (["sweep", "{spec}", "--parallel", "-1"], "--trials and --parallel must be at least 1"),
    "study climbing out": (["sweep", "{spec}", "--study", "../x"], "--study: '../x'"),
    "hidden study": (["sweep", "{spec}", "--study", ".x"], "--study: '.x'"),
    "study with a slash": (["sweep", "{spec}", "--study", "a/b"], "--study: 'a/b'"),
    "serve port out of range": (["serve", "{run}", "--port", "70000"], "--port"),
    "serve zero replicas": (["serve", "{run}", "--replicas", "0"], "--replicas"),
    "serve open host without auth": (["serve", "{run}", "--host", "0.0.0.0", "--no-auth"], "--no-auth"),
    "serve study name": (["serve", "--study", "../x"], "--study: '../x'"),
    "submit without a cluster": (["submit", "{spec}"], "no cluster to submit to"),
}


@pytest.mark.parametrize("case", list(OPTIONS))
def test_options(case, tmp_path):
    args, expected = OPTIONS[case]
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({**BASE, "sweep": SWEEP}))
    (tmp_path / "run").mkdir()
    args = [str(a).replace("{spec}", str(tmp_path / "s.yaml")).replace("{run}", str(tmp_path / "run")) for a in args]
    assert_refused(invoke(args, tmp_path / "runs"), expected, tmp_path / "runs")


ENVIRONMENT = {
    "dask refused": ({"CONDUCTOR_DASK_ADDRESS": "tcp://127.0.0.1:9"}, "CONDUCTOR_DASK_ADDRESS: nothing answers at 127.0.0.1:9"),
    "dask port not a number": ({"CONDUCTOR_DASK_ADDRESS": "tcp://127.0.0.1:port"}, "CONDUCTOR_DASK_ADDRESS: 'tcp://127.0.0.1:port' has no valid port"),
    "dask no host": ({"CONDUCTOR_DASK_ADDRESS": "tcp://:8786"}, "CONDUCTOR_DASK_ADDRESS: 'tcp://:8786' names no host"),
    "ray refused": ({"CONDUCTOR_RAY_ADDRESS": "127.0.0.1:9"}, "CONDUCTOR_RAY_ADDRESS: nothing answers at 127.0.0.1:9"),
    "ray client url refused": ({"CONDUCTOR_RAY_ADDRESS": "ray://127.0.0.1:9"}, "CONDUCTOR_RAY_ADDRESS: nothing answers"),
    "prefect refused": ({"PREFECT_API_URL": "http://127.0.0.1:9/api"}, "PREFECT_API_URL: nothing answers at 127.0.0.1:9"),
    "prefect port out of range": ({"PREFECT_API_URL": "http://127.0.0.1:99999/api"}, "PREFECT_API_URL: 'http://127.0.0.1:99999/api' has no valid port"),
}


@pytest.mark.parametrize("case", list(ENVIRONMENT))
@pytest.mark.parametrize("command", ["run", "sweep"])
def test_environment(case, command, tmp_path):
    env, expected = ENVIRONMENT[case]
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({**BASE, "sweep": SWEEP}))
    assert_refused(invoke([command, tmp_path / "s.yaml"], tmp_path / "runs", env), expected, tmp_path / "runs")


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_unwritable_home(command, tmp_path):
    (tmp_path / "afile").write_text("")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({**BASE, "sweep": SWEEP}))
    home = tmp_path / "afile" / "runs"  # under a file: nothing can be created there
    assert_refused(invoke([command, tmp_path / "s.yaml"], home), "cannot", home)


STORAGE = {
    "not a URL": ("optuna.db", "--storage: cannot open Optuna storage 'optuna.db'"),
    "postgres refused": ("postgresql://127.0.0.1:9/test", "--storage: cannot open Optuna storage"),
    "unknown dialect": ("nosuchdb://127.0.0.1/test", "--storage: cannot open Optuna storage"),
    "sqlite under a file": ("sqlite:///{tmp}/afile/optuna.db", "--storage: cannot create"),
    "password not echoed": ("postgresql://u:s3cr3t@127.0.0.1:9/test", "postgresql://u:***@127.0.0.1:9/test"),
}


@pytest.mark.parametrize("case", list(STORAGE))
@pytest.mark.parametrize("via", ["option", "environment"])
def test_storage(case, via, tmp_path):
    url, expected = STORAGE[case]
    url = url.replace("{tmp}", str(tmp_path))
    (tmp_path / "afile").write_text("")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({**BASE, "sweep": SWEEP}))
    args, env = (["--storage", url], {}) if via == "option" else ([], {"CONDUCTOR_OPTUNA_STORAGE": url})
    result = invoke(["sweep", tmp_path / "s.yaml", *args], tmp_path / "runs", env)
    key = "--storage" if via == "option" else "CONDUCTOR_OPTUNA_STORAGE"
    assert_refused(result, expected.replace("--storage", key), tmp_path / "runs")
    assert "s3cr3t" not in result.output


def csv(tmp_path: Path, text: str) -> str:
    path = tmp_path / "data.csv"
    path.write_text(text)
    return str(path)


DATA = {
    "no file": ({"source": "{tmp}/none-*.csv", "target": "y"}, None, "data.source: no file matches"),
    "target missing": ({"target": "label"}, "a,b,y\n1,2,0\n3,4,1\n", "data.target: column 'label' not found"),
    "feature missing": ({"target": "y", "features": ["a", "c"]}, "a,b,y\n1,2,0\n3,4,1\n", "data.features: columns ['c'] not found"),
    "drop missing": ({"target": "y", "drop": ["z"]}, "a,b,y\n1,2,0\n3,4,1\n", "data.drop: columns ['z'] not found"),
    "one class": ({"target": "y"}, "a,b,y\n1,2,0\n3,4,0\n5,6,0\n", "has one class"),
    "all missing": ({"target": "y"}, "a,b,y\n,2,0\n,4,1\n,6,1\n", "column(s) ['a'] hold only missing values"),
    "text regression target": ({"target": "y", "task": "regression"}, "a,y\n1,x\n2,y\n", "regression needs numbers"),
    "no rows": ({"target": "y"}, "a,b,y\n", "holds no rows"),
    "impute none with holes": ({"target": "y", "preprocessing": {"impute": "none"}}, "a,b,y\n1,,0\n3,4,1\n5,6,1\n",
                               "data.preprocessing.impute: 'none' but columns ['b']"),
    "time column missing": ({"target": "y", "task": "forecasting", "time_column": "t"}, "a,y\n1,2\n3,4\n",
                            "data.time_column: column 't' not found"),
    "text past the sample": ({"target": "y"}, "a,b,y\n" + "1,2,0\n3,4,1\n" * 20_000 + "abc,4,1\n",
                             "line 40002, column 'a': 'abc' is not a number"),
    "ragged row": ({"target": "y"}, "a,b,y\n1,2,0\n3,4,1\n5,6,1,7\n", "line 4: 4 fields, but the header"),
    "infinity": ({"target": "y"}, "a,b,y\n1,inf,0\n3,4,1\n5,6,1\n", "'b'"),
    "target among the features": ({"target": "y", "features": ["a", "y"]}, "a,b,y\n1,2,0\n3,4,1\n",
                                  "data.features"),
    "duplicate header": ({"target": "y"}, "a,a,y\n1,2,0\n3,4,1\n", "'a'"),
    "ambiguous dates": ({"target": "y", "task": "forecasting", "time_column": "t"},
                        "t,y\n" + "".join(f"0{d}/0{m}/2020,{d}\n" for d in range(1, 10) for m in range(1, 10)),
                        "data.time_format"),
}


@pytest.mark.parametrize("case", list(DATA))
def test_data(case, tmp_path):
    data, text, expected = DATA[case]
    source = csv(tmp_path, text) if text is not None else data["source"].replace("{tmp}", str(tmp_path))
    model = {"name": "linear"} if data.get("task") in ("regression", "forecasting") else {"name": "mlp"}
    spec = {**BASE, "data": {**{k: v for k, v in data.items() if k != "source"}, "source": source}, "model": model}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    assert_refused(invoke(["run", tmp_path / "s.yaml"], tmp_path / "runs"), expected, tmp_path / "runs")


def fake_run(tmp_path: Path, files: dict[str, str]) -> Path:
    run = tmp_path / "bad" / "20260101-000000-abcd"
    run.mkdir(parents=True)
    for name, text in files.items():
        (run / name).write_text(text)
    return run


RUN_DIRS = {
    "missing directory": (None, "predict", "not a run directory"),
    "empty directory": ({}, "predict", "not a run directory"),
    "no model.json": ({"model.pt": "x", "preprocessor.json": "{}"}, "predict", "not a run directory"),
    "serve a missing run": (None, "serve", "RUN_DIR: "),
    "serve an empty directory": ({}, "serve", "is not a complete run directory (missing ['model.pt'"),
}


@pytest.mark.parametrize("case", list(RUN_DIRS))
def test_run_dirs(case, tmp_path):
    files, command, expected = RUN_DIRS[case]
    run = fake_run(tmp_path, files) if files is not None else tmp_path / "bad" / "20260101-000000-none"
    (tmp_path / "in.csv").write_text("a,b\n1,2\n")
    args = ["predict", run, tmp_path / "in.csv", "--out", tmp_path / "out.csv"] if command == "predict" else ["serve", run]
    assert_refused(invoke(args, tmp_path / "runs"), expected, tmp_path / "runs")
    assert not (tmp_path / "out.csv").exists()


PROFILE = {
    "not JSON": ("{not json", "profile.json"),
    "a list": ("[1, 2]", "profile.json"),
    "empty": ("", "profile.json"),
    "dask nowhere": (json.dumps({"dask_address": "tcp://127.0.0.1:9"}),
                     "CONDUCTOR_DASK_ADDRESS (from"),
    "ray nowhere": (json.dumps({"ray_address": "127.0.0.1:9"}), "CONDUCTOR_RAY_ADDRESS (from"),
}


@pytest.mark.parametrize("case", list(PROFILE))
def test_cluster_profile(case, tmp_path):
    text, expected = PROFILE[case]
    home = tmp_path / "runs"
    (home / "cluster").mkdir(parents=True)
    (home / "cluster" / "profile.json").write_text(text)
    before = tree(home)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(BASE))
    assert_refused(invoke(["run", tmp_path / "s.yaml"], home), expected, home, before)


def test_the_table_has_sixty_cases():
    tables = (SPEC_KEYS, SWEEP_KEYS, SETS, FILES, OPTIONS, ENVIRONMENT, STORAGE, DATA, RUN_DIRS, PROFILE)
    assert sum(map(len, tables)) >= 60
    assert all(len(t) >= 5 for t in tables)


def test_resume_with_another_spec_needs_force(tmp_path):
    """A study keeps the spec it ran with; --resume with a different one would mix two experiments."""
    import optuna

    from tasks.spec import validate
    from tasks.sweep import make_storage

    home = tmp_path / "runs"
    home.mkdir()
    url = f"sqlite:///{home / 'optuna.db'}"
    study = optuna.create_study(study_name="bad", storage=make_storage(url, heartbeat=False))
    study.set_user_attr("spec", validate({**BASE, "sweep": SWEEP}).model_dump(mode="json"))
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.5))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({**BASE, "sweep": SWEEP}))
    before = tree(home)
    result = invoke(["sweep", tmp_path / "s.yaml", "--resume", "--set", "train.lr=0.5"], home)
    assert_refused(result, "--resume: the spec differs from the one study 'bad' ran with, in train.lr", home, before)
    result = invoke(["sweep", tmp_path / "s.yaml", "--resume", "--trials", "9", "--parallel", "1",
                     "--set", "tracking.wandb.mode=disabled", "--set", "train.epochs=3"], home)
    assert result.exit_code == 2 and "in train.epochs;" in result.stderr, result.stderr
