"""The command's side of `cluster up`'s command server (flows/cli/handover.py): which code and which environment
it may serve, and when a command keeps to its own process."""
from __future__ import annotations

from pathlib import Path

from flows.cli import handover


def test_the_code_digest_reads_conductors_sources_and_changes_with_them(tmp_path, monkeypatch):
    assert all((handover.ROOT / pkg / "__init__.py").is_file() for pkg in ("flows", "tasks", "models", "cluster"))
    for pkg in ("flows", "tasks", "models", "cluster"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "a.py").write_text("x = 1\n")
    monkeypatch.setattr(handover, "ROOT", tmp_path)
    before = handover.code_version()
    (tmp_path / "models" / "a.py").write_text("x = 2\n")
    assert handover.code_version() != before
    (tmp_path / "models" / "a.py").write_text("x = 1\n")
    assert handover.code_version() == before
    (tmp_path / "tasks" / "b.py").write_text("")
    assert handover.code_version() != before


def test_only_what_the_engines_read_at_import_must_match():
    env = {"PREFECT_API_URL": "u", "RAY_ADDRESS": "r", "DASK_X": "d", "PYTHONPATH": "p", "CONDUCTOR_HOME": "h",
           "HOME": "/root", "LANG": "C", "CONDUCTOR_TRIAL_THREADS": "1", "PATH": "/bin", "TERM": "xterm"}
    assert set(handover.matched(env)) == {"PREFECT_API_URL", "RAY_ADDRESS", "DASK_X", "PYTHONPATH", "CONDUCTOR_HOME",
                                          "HOME", "LANG"}


def test_a_command_keeps_to_its_own_process_without_a_server(tmp_path, monkeypatch):
    home = tmp_path / "runs"
    assert handover.hand_over(["conductor", "run", "spec.yaml"], home) is None  # no socket
    (home / "cluster").mkdir(parents=True)
    (home / "cluster" / "commands.sock").write_text("")  # a stale path, nobody listening
    assert handover.hand_over(["conductor", "--debug", "sweep", "spec.yaml"], home) is None
    assert handover.hand_over(["conductor", "runs"], Path("/nonexistent")) is None
