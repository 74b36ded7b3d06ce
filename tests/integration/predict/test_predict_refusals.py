"""What `conductor predict` and `conductor serve` refuse before doing anything: a model.pt that is a pickle
carrying code (it must not run), an --out that would overwrite INPUT or write into the run directory,
and names that are not names. Each is one `error:` line and exit 2. On a fabricated run directory, so
no Ray, Dask or Prefect starts."""
from __future__ import annotations

import os
import pickle
import shlex
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from flows.cli import app
from models import build_model, save_model
from tasks.data import Preprocessor


class Payload:
    """Unpickling this runs a shell command that creates `sentinel`."""

    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.sentinel))}",)


def make_run(root: Path) -> Path:
    """A small but loadable run directory: a linear regression on one column."""
    run_dir = root / "tiny" / "20260101-000000-beef"
    run_dir.mkdir(parents=True)
    save_model(build_model("linear", [1], 1, "regression"), "linear", run_dir)
    Preprocessor(task="regression", target="y", features=["a"], numeric=["a"], categorical=[], columns=["a"],
                 sources=["a"], impute={"strategy": "median", "values": {"a": 0.0}}, input_shape=[1],
                 output_dim=1).save(run_dir)
    return run_dir


def invoke(tmp_path, *args):
    result = CliRunner().invoke(app, [str(a) for a in args],
                                env={"CONDUCTOR_HOME": str(tmp_path / "runs"), "PREFECT_API_URL": None})
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def write_payload(kind: str, path: Path, sentinel: Path) -> None:
    """Write the payload as torch.save would (zip) or as a bare pickle, after proving it is live."""
    if kind == "zip":
        torch.save({"linear.weight": Payload(sentinel)}, path)
        torch.load(path, weights_only=False)
    else:
        path.write_bytes(pickle.dumps(Payload(sentinel)))
        pickle.loads(path.read_bytes())
    assert sentinel.exists(), "the payload must really run when unpickled, or this test proves nothing"
    sentinel.unlink()


@pytest.mark.parametrize("kind", ["zip", "raw"])
@pytest.mark.parametrize("command", ["predict", "serve"])
def test_a_pickle_payload_is_refused_and_never_runs(tmp_path, kind, command):
    run_dir = make_run(tmp_path / f"{command}-{kind}")
    sentinel = tmp_path / "pwned"
    write_payload(kind, run_dir / "model.pt", sentinel)
    args = (["predict", run_dir, tmp_path / "in.csv", "--out", tmp_path / "out.csv"] if command == "predict"
            else ["serve", run_dir])
    line = invoke(tmp_path, *args)
    assert line.startswith(f"error: {run_dir / 'model.pt'}: not a plain weights file (") and \
        line.endswith("; refusing to load it"), line
    assert not sentinel.exists()
    assert not (tmp_path / "out.csv").exists()


def test_out_must_not_be_the_input(tmp_path):
    run_dir = make_run(tmp_path)
    src = tmp_path / "data" / "in.csv"
    src.parent.mkdir()
    src.write_text("a\n1\n2\n")
    same = tmp_path / "data" / ".." / "data" / "in.csv"  # spelled differently, the same file
    line = invoke(tmp_path, "predict", run_dir, src, "--out", same)
    assert "--out:" in line and "is the INPUT" in line
    line = invoke(tmp_path, "predict", run_dir, tmp_path / "data" / "*.csv", "--out", src)  # a glob that holds it
    assert "is the INPUT" in line
    assert src.read_text() == "a\n1\n2\n"


def test_out_must_not_be_inside_the_run_directory(tmp_path):
    run_dir = make_run(tmp_path)
    before = sorted(p.name for p in run_dir.iterdir())
    src = tmp_path / "in.csv"
    src.write_text("a\n1\n")
    for out in (run_dir / "p.csv", run_dir / "sub" / ".." / "model.parquet"):
        line = invoke(tmp_path, "predict", run_dir, src, "--out", out)
        assert "--out:" in line and "inside the run directory" in line
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_names_on_the_command_line(tmp_path):
    line = invoke(tmp_path, "serve", "--study", "../../etc")
    assert line.startswith("error: --study: '../../etc' must be letters, digits")
    bad_run = tmp_path / "tiny" / "bad id"
    line = invoke(tmp_path, "predict", bad_run, tmp_path / "in.csv", "--out", tmp_path / "o.csv")
    assert line.startswith("error: RUN_DIR (its run id): 'bad id' must be")
    line = invoke(tmp_path, "serve", bad_run)
    assert "RUN_DIR (its run id)" in line
