"""repro.json: the commits checked against git itself in a repository made here, the patch written, masked
and capped, secrets masked on the command line, and nothing but nulls outside a repository."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from tasks.runs import repro
from tasks.spec import validate

SPEC = {"name": "r", "data": {"source": "builtin:digits", "target": "label", "split": {"seed": 7}},
        "model": {"name": "mlp"}, "train": {"seed": 3}}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path) -> Path:
    root = tmp_path / "exp"
    (root / "specs").mkdir(parents=True)
    (root / "specs" / "s.yaml").write_text("name: r\n")
    (root / "settings.py").write_text("lr = 0.1\n")
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    return root


def test_a_clean_repository_records_its_commit_and_no_patch(repo):
    record, patch = repro.build_record(repo / "specs" / "s.yaml", validate(SPEC), argv=["conductor", "run", "s.yaml"])
    g = record["git"]["spec"]
    assert g["commit"] == git(repo, "rev-parse", "HEAD") and len(g["commit"]) == 40
    assert g["dirty"] is False and g["patch"] is None and patch == ""
    assert Path(g["repo"]).resolve() == repo.resolve()
    assert record["seeds"] == {"train.seed": 3, "data.split.seed": 7}
    assert record["command"] == ["conductor", "run", "s.yaml"] and record["recorded_by"] == "cli"
    assert set(record["versions"]) >= {"python", "torch", "ray", "prefect", "dask", "optuna", "wandb"}
    assert record["versions"]["torch"] and record["host"]
    here = repro.git_state(repro.CONDUCTOR_ROOT)  # conductor's own checkout (null fields when not a repository)
    assert record["git"]["conductor"]["commit"] == here["commit"]


def test_uncommitted_changes_become_a_masked_patch(repo):
    (repo / "settings.py").write_text('lr = 0.2\napi_key = "sk-live-abc123"\npassword: hunter2\n'
                                      'url = "postgresql://u:pw1234@db/x"\nWANDB_API_KEY=0123456789abcdef\n')
    record, patch = repro.build_record(repo / "specs" / "s.yaml", validate(SPEC), argv=["conductor"])
    g = record["git"]["spec"]
    assert g["dirty"] is True and g["patch"]["file"] == "repro.patch" and not g["patch"]["truncated"]
    assert "+lr = 0.2" in patch and "-lr = 0.1" in patch
    for secret in ("sk-live-abc123", "hunter2", "pw1234", "0123456789abcdef"):
        assert secret not in patch
    assert 'api_key = "***"' in patch and "password: ***" in patch and "u:***@db" in patch
    assert g["patch"]["bytes"] == len(patch.encode())


def test_a_patch_over_one_mebibyte_is_cut_and_says_so(repo):
    (repo / "big.txt").write_text("x\n")
    git(repo, "add", "big.txt")
    git(repo, "commit", "-q", "-m", "big")
    (repo / "big.txt").write_text("".join(f"line {i:07d} of a big change\n" for i in range(60_000)))  # ~1.7 MB
    warnings = []
    record, patch = repro.build_record(repo / "specs" / "s.yaml", validate(SPEC), argv=["c"], warn=warnings.append)
    info = record["git"]["spec"]["patch"]
    assert info["truncated"] is True and info["total_bytes"] > repro.MAX_PATCH
    assert info["bytes"] == len(patch.encode()) <= repro.MAX_PATCH and patch.endswith("\n")
    assert len(warnings) == 1 and "repro.patch keeps the first" in warnings[0]


def test_secrets_on_the_command_line_are_masked(repo):
    argv = ["conductor", "sweep", "s.yaml", "--storage", "postgresql://alice:s3cret@db:5432/optuna",
            "--token", "tok-999", "--set", "model.api_key=abc", "--password=hunter2"]
    record, _ = repro.build_record(repo / "specs" / "s.yaml", validate(SPEC), argv=argv)
    shown = json.dumps(record)
    for secret in ("s3cret", "tok-999", "=abc", "hunter2"):
        assert secret not in shown
    assert "postgresql://alice:***@db:5432/optuna" in record["command"]
    assert record["command"][6] == "***" and "model.api_key=***" in record["command"]


def test_outside_a_repository_the_commits_are_null(tmp_path):
    spec_file = tmp_path / "plain" / "s.yaml"
    spec_file.parent.mkdir()
    spec_file.write_text("name: r\n")
    record, patch = repro.build_record(spec_file, validate(SPEC), argv=["conductor"])
    assert record["git"]["spec"] == {"repo": None, "commit": None, "dirty": None, "patch": None} and patch == ""
    assert repro.git_state(tmp_path / "no-such-dir") == repro.NO_GIT


def test_a_repository_without_commits_has_a_null_commit(tmp_path):
    git(tmp_path, "init", "-q")
    assert repro.git_state(tmp_path)["commit"] is None


def test_the_pending_record_moves_into_the_run_directory(repo, tmp_path):
    home, stage = tmp_path / "home", tmp_path / "stage"
    stage.mkdir()
    (repo / "settings.py").write_text("lr = 0.3\n")
    spec = validate(SPEC)
    repro.save_pending(home, "20260101-000000-abcd", *repro.build_record(repo / "specs" / "s.yaml", spec, argv=["c"]))
    record = repro.attach_repro(stage, home, "20260101-000000-abcd", spec, SimpleNamespace(fingerprint="f00d-v3"), 1.0)
    saved = json.loads((stage / "repro.json").read_text())
    assert saved["data_fingerprint"] == record["data_fingerprint"] == "f00d-v3"
    assert saved["duration_s"] >= 0 and saved["recorded_by"] == "cli" and "+lr = 0.3" in (stage / "repro.patch").read_text()
    assert not (home / repro.PENDING).exists()  # the record moved, and its empty folder went


def test_without_a_pending_record_the_flow_records_what_it_can(tmp_path):
    stage = tmp_path / "stage"
    stage.mkdir()
    record = repro.attach_repro(stage, tmp_path / "home", "x", validate(SPEC), SimpleNamespace(fingerprint="ab-v3"), 12.5)
    assert record["recorded_by"] == "flow" and record["command"] is None and record["duration_s"] == 12.5
    assert record["git"]["spec"]["commit"] is None and record["seeds"]["train.seed"] == 3
    assert not (stage / "repro.patch").exists()


@pytest.mark.parametrize("line,shown", [
    ("token=abc", "token=***"),
    ('  "client_secret": "xyz",', '  "client_secret": "***",'),
    ("AWS_SECRET_ACCESS_KEY = wJalr", "AWS_SECRET_ACCESS_KEY = ***"),
    ("if token == other:", "if token == other:"),
    ("sort_keys=False, lr=0.1", "sort_keys=False, lr=0.1"),
    ("s3://bucket/x.csv?X-Amz-Signature=abc", "s3://bucket/x.csv?X-Amz-Signature=***"),
    ('password = "two words"  # note', 'password = "***"  # note'),
    ("secret: several words here", "secret: ***"),
    ("f(token=abc, lr=0.1)", "f(token=***, lr=0.1)"),
    ('headers = {"Authorization": "Bearer eyJhbGciOi.x"}', 'headers = {"Authorization": "Bearer ***"}'),
    ("git clone https://ghp_0123456789abcdefXYZ@github.com/o/r", "git clone https://***@github.com/o/r"),
    ("psql postgres://postgres@db/test", "psql postgres://postgres@db/test"),  # a user name alone is no secret
    ("python train.py --password hunter22 --lr 0.1", "python train.py --password *** --lr 0.1"),
    ("run --max-tokens 10", "run --max-tokens ***"),
])
def test_mask_line(line, shown):
    assert repro.mask_line(line) == shown
