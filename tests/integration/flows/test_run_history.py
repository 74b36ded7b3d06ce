"""Run history on real runs: the session's smoke run done again in-process (`conductor rerun`'s helper, on
the session's Ray, Dask and Prefect), then `runs` and `compare` of the two through the CLI's entry point."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner
from wandb_files import read_run

from conftest import ROOT
from flows.cli import app

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def rerun(smoke_run):
    from flows.cli.rerun import rerun_run

    return rerun_run(Path(smoke_run["run_dir"]))


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_rerun_compares_every_test_metric_within_its_tolerance(rerun, smoke_run):
    assert rerun["original"] == smoke_run["run_dir"] and rerun["run_dir"] != smoke_run["run_dir"]
    rows = {r["metric"]: r for r in rerun["comparison"]}
    assert set(rows) == {k for k in smoke_run["metrics"] if k.startswith("test/")} >= {"test/accuracy"}
    acc = rows["test/accuracy"]
    assert acc["tolerance"] >= 0.01 and acc["original"] == smoke_run["metrics"]["test/accuracy"]
    assert acc["within"] == (abs(acc["rerun"] - acc["original"]) <= acc["tolerance"])
    # seeds, data and code unchanged: the 3-epoch smoke run comes out the same (it did to the last digit on 2 CPUs)
    assert rerun["reproduced"] is True and all(r["within"] for r in rows.values())
    assert rerun["reproduction"].startswith("reproduced: all")


def test_the_rerun_records_how_it_was_made(rerun, smoke_run):
    record = json.loads((Path(rerun["run_dir"]) / "repro.json").read_text())
    original = json.loads((Path(smoke_run["run_dir"]) / "repro.json").read_text())
    assert original["recorded_by"] == "flow" and original["command"] is None  # run_pipeline called directly
    assert record["recorded_by"] == "cli" and record["rerun_of"] == f"churn-smoke/{Path(smoke_run['run_dir']).name}"
    assert record["data_fingerprint"] == original["data_fingerprint"] and "-v" in record["data_fingerprint"]
    assert record["seeds"] == {"train.seed": 0, "data.split.seed": 0} and record["duration_s"] > 0
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert record["git"]["conductor"]["commit"] == (head.stdout.strip() if head.returncode == 0 else None)
    assert not list((Path(rerun["run_dir"]).parents[1] / ".repro").glob("*"))  # the pending record moved in
    config = read_run(rerun["wandb"]["run_dir"])["config"]
    assert config["repro"]["data_fingerprint"] == record["data_fingerprint"]


def test_runs_and_compare_show_the_two(rerun, smoke_run):
    rows = invoke("runs", "churn-smoke", "--json")["runs"]
    ids = [r["run_id"] for r in rows]
    new, old = Path(rerun["run_dir"]).name, Path(smoke_run["run_dir"]).name
    assert ids.index(new) < ids.index(old)  # newest first
    assert next(r for r in rows if r["run_id"] == new)["duration_s"] > 0
    cmp = invoke("compare", old, f"churn-smoke/{new}", "--json")
    assert cmp["metrics"]["test/accuracy"] == [smoke_run["metrics"]["test/accuracy"], rerun["metrics"]["test/accuracy"]]
    assert set(cmp["spec_diff"]) <= {"repro.commit"}  # the same spec: only the (absent vs recorded) commit may differ
    assert "data:image/png;base64," in Path(cmp["html"]).read_text()
