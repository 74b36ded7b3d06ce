"""Every user error of `conductor run` and `conductor sweep`: one `error:` line, exit 2, nothing written.
In-process through the CLI's own entry point; tests/e2e checks the same as a subprocess."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from conftest import ROOT, write_spec
from flows.cli import app

BAD_SPECS = {
    "unknown key": ({"train": {"epochz": 3}}, "train.epochz: unknown key"),
    "wrong type": ({"train": {"epochs": "ten"}}, "train.epochs"),
    "bad value": ({"train": {"optimizer": "adagrad"}}, "train.optimizer"),
    "unknown model": ({"model": {"name": "gpt"}}, "unknown model 'gpt'"),
    "bad params": ({"model": {"name": "mlp", "params": {"hidden": "wide"}}}, "model.params.hidden"),
    "missing column": ({"data": {"source": "builtin:digits", "target": "digit"}}, "data.target: column 'digit' not found"),
    "missing file": ({"data": {"source": "nowhere/*.csv", "target": "y"}}, "data.source: no file matches"),
    "not tabular": ({"data": {"source": "README.md", "target": "y"}}, "is neither CSV"),
}


def invoke(*args, home):
    return CliRunner().invoke(app, [str(a) for a in args], env={"CONDUCTOR_HOME": str(home)})


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_run_bad_input(case, tmp_path):
    change, expected = BAD_SPECS[case]
    spec = {"name": "bad", "data": {"source": "builtin:digits", "target": "label"}, "model": {"name": "mlp"}}
    for section, values in change.items():
        spec[section] = {**spec.get(section, {}), **values}
    if case == "not tabular":
        spec["data"]["source"] = str(ROOT / "README.md")
    path = write_spec(tmp_path / "bad.yaml", spec)
    result = invoke("run", path, home=tmp_path / "runs")
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert not (tmp_path / "runs").exists()


def test_sweep_bad_input(tmp_path):
    spec = {"name": "s", "data": {"source": "builtin:digits", "target": "label"}, "model": {"name": "mlp"},
            "sweep": {"space": {"train.learning_rate": {"low": 0.001, "high": 0.1}}}}
    result = invoke("sweep", write_spec(tmp_path / "s.yaml", spec), home=tmp_path / "runs")
    assert result.exit_code == 2 and "sweep.space.train.learning_rate: not a field of the spec" in result.stderr
    del spec["sweep"]
    result = invoke("sweep", write_spec(tmp_path / "s.yaml", spec), home=tmp_path / "runs")
    assert result.exit_code == 2 and "sweep: the spec has no sweep section" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_predict_and_submit_bad_input(tmp_path):
    result = invoke("predict", tmp_path, tmp_path / "x.csv", "--out", tmp_path / "o.csv", home=tmp_path / "runs")
    assert result.exit_code == 2 and "is not a run directory" in result.stderr
    result = invoke("submit", ROOT / "experiments" / "digits-cnn.yaml", home=tmp_path / "runs")
    assert result.exit_code == 2 and "no cluster to submit to" in result.stderr
    result = invoke("dashboard", home=tmp_path / "runs")
    assert result.exit_code == 2 and "does not exist yet" in result.stderr


@pytest.mark.parametrize("bad", ["lots", "50", "-1"])
def test_object_store_size_is_checked_before_ray_starts(bad, tmp_path):
    spec = write_spec(tmp_path / "ok.yaml", {"name": "ok", "data": {"source": "builtin:digits", "target": "label"},
                                             "model": {"name": "mlp"}})
    result = CliRunner().invoke(app, ["run", str(spec)], env={"CONDUCTOR_HOME": str(tmp_path / "runs"),
                                                              "CONDUCTOR_OBJECT_STORE_MB": bad})
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert lines == [f"error: CONDUCTOR_OBJECT_STORE_MB: {bad!r} is not a size in MiB of at least 100 "
                     "(a whole number, e.g. 512)"], result.stderr
    assert not (tmp_path / "runs" / "digits").exists() and not list((tmp_path / "runs").glob("*/*.json"))
