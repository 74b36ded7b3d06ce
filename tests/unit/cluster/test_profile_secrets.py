"""No password in the open: every URL form masked, the cluster profile 0600 and masked with its credentials
in a separate 0600 file that every client reads back, and a corrupt profile one `error:` line, not a
traceback (and `cluster down` still cleans up)."""
from __future__ import annotations

import json
import os
import stat

import pytest
from typer.testing import CliRunner

from cluster import settings as cs
from cluster.local import LocalCluster
from cluster.settings import SettingsError, load_settings, redact_url

PG = "postgresql://u:pw@127.0.0.1:5432/test"

REDACT = {
    "user and password": ("postgresql://u:pw@127.0.0.1:5432/test", "postgresql://u:***@127.0.0.1:5432/test"),
    "password only": ("redis://:s3cr3t@host:6379/0", "redis://:***@host:6379/0"),
    "password holding @ and /": ("mysql://u:p@ss/w0rd@db/x", "mysql://u:***@db/x"),
    "driver scheme": ("postgresql+psycopg://me:hunter2@db:5432/o", "postgresql+psycopg://me:***@db:5432/o"),
    "password= first": ("postgresql://db/x?password=hunter2&sslmode=require", "postgresql://db/x?password=***&sslmode=require"),
    "password= later": ("postgresql://db/x?sslmode=require&password=hunter2", "postgresql://db/x?sslmode=require&password=***"),
    "pwd=": ("mssql://db/x?PWD=hunter2", "mssql://db/x?PWD=***"),
    "token=": ("https://h/api?token=abc123&x=1", "https://h/api?token=***&x=1"),
    "api_key=": ("https://h/api?api_key=abc123", "https://h/api?api_key=***"),
    "access_token=": ("https://h/?access_token=abc", "https://h/?access_token=***"),
    "both at once": ("postgresql://u:pw@h/db?password=pw2", "postgresql://u:***@h/db?password=***"),
}
PLAIN = ["sqlite:////tmp/runs/optuna.db", "http://127.0.0.1:4200/api", "tcp://127.0.0.1:8786", "127.0.0.1:6379",
         "postgresql://u@host/db", "https://h/api?token_type=bearer"]


@pytest.mark.parametrize("case", list(REDACT))
def test_redact_url_masks_every_form(case):
    url, want = REDACT[case]
    assert redact_url(url) == want
    assert redact_url(want) == want  # masking twice changes nothing


@pytest.mark.parametrize("url", PLAIN)
def test_redact_url_leaves_urls_without_secrets_alone(url):
    assert redact_url(url) == url


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CONDUCTOR_HOME", str(tmp_path / "runs"))
    for var in cs.ENV.values():
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "runs"


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_profile_is_private_and_masked_and_clients_still_get_the_password(home, monkeypatch):
    old = os.umask(0)  # even a permissive umask leaves them owner-only
    try:
        shown = cs.save_profile({"optuna_storage": PG, "ray_address": "127.0.0.1:6379", "work_pool": "conductor"})
    finally:
        os.umask(old)
    assert shown["optuna_storage"] == "postgresql://u:***@127.0.0.1:5432/test"
    assert _mode(cs.profile_path()) == 0o600 and _mode(cs.secrets_path()) == 0o600
    assert "pw@" not in cs.profile_path().read_text()
    assert json.loads(cs.secrets_path().read_text()) == {"optuna_storage": PG}
    assert load_settings().optuna_storage == PG and load_settings().ray_address == "127.0.0.1:6379"
    monkeypatch.setenv("CONDUCTOR_OPTUNA_STORAGE", "sqlite:///x.db")  # the environment still wins
    assert load_settings().optuna_storage == "sqlite:///x.db"
    cs.remove_profile()
    assert not cs.profile_path().exists() and not cs.secrets_path().exists()


def test_private_files_are_created_0600_not_chmod_later(home, monkeypatch):
    modes = []
    real_open = os.open

    def spy(path, flags, mode=0o777, *a, **kw):
        modes.append((flags & os.O_CREAT and flags & os.O_EXCL, mode))
        return real_open(path, flags, mode, *a, **kw)

    monkeypatch.setattr(os, "open", spy)
    cs.save_profile({"optuna_storage": PG})
    assert modes and all(excl and mode == 0o600 for excl, mode in modes), modes


def test_no_secrets_file_without_secrets(home):
    cs.save_profile({"optuna_storage": PG})
    cs.save_profile({"optuna_storage": "sqlite:///o.db"})
    assert not cs.secrets_path().exists() and load_settings().optuna_storage == "sqlite:///o.db"


def test_missing_secrets_is_an_error_unless_the_environment_gives_the_url(home, monkeypatch):
    cs.save_profile({"optuna_storage": PG})
    cs.secrets_path().unlink()
    with pytest.raises(SettingsError, match="secrets.json: cannot read .*CONDUCTOR_OPTUNA_STORAGE"):
        load_settings()
    monkeypatch.setenv("CONDUCTOR_OPTUNA_STORAGE", PG)
    assert load_settings().optuna_storage == PG


CORRUPT = {"not JSON": "{nope", "a list": "[1, 2]", "wrong shape": '{"ray_address": 5}',
           "bad secret keys": '{"secret_keys": ["HOME"]}', "binary": b"\xff\xfe\x00"}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_a_corrupt_profile_is_one_settings_error_naming_the_file(home, case):
    cs.profile_path().parent.mkdir(parents=True)
    content = CORRUPT[case]
    (cs.profile_path().write_bytes if isinstance(content, bytes) else cs.profile_path().write_text)(content)
    with pytest.raises(SettingsError) as err:
        load_settings()
    msg = str(err.value)
    assert str(cs.profile_path()) in msg and "conductor cluster down" in msg and "\n" not in msg


def test_down_removes_a_corrupt_profile_with_one_warning(home, capsys):
    root = cs.profile_path().parent
    root.mkdir(parents=True)
    cs.profile_path().write_text("{nope")
    cs.secrets_path().write_text("{}")
    (root / "pids.json").write_text("not json")
    assert LocalCluster(root).down(log=lambda *_: None) == []
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("warning: ") for line in err), err
    assert not cs.profile_path().exists() and not cs.secrets_path().exists() and not (root / "pids.json").exists()
    assert load_settings().optuna_storage is None


def test_cluster_up_json_prints_no_password(home, monkeypatch):
    """`cluster up --json` prints the profile: masked, as the file is (services are stubbed out here)."""
    from flows.cli import app

    monkeypatch.setattr(LocalCluster, "_start_all", lambda *a, **k: {})
    monkeypatch.setattr(LocalCluster, "_wait_all", lambda *a, **k: None)
    result = CliRunner().invoke(app, ["cluster", "up", "--json"],
                                env={"CONDUCTOR_OPTUNA_STORAGE": PG, "PREFECT_API_URL": None})
    assert result.exit_code == 0, result.output
    assert "pw@" not in result.stdout + result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["optuna_storage"] == redact_url(PG)
    assert "pw@" not in cs.profile_path().read_text() and _mode(cs.profile_path()) == 0o600
    assert load_settings().optuna_storage == PG  # another shell, without the variable, still connects


@pytest.mark.parametrize("command", [["cluster", "status"], ["cluster", "down"]])
def test_cli_with_a_corrupt_profile(home, command):
    """One `error:` line for a command that reads it; `cluster down` removes it with one warning."""
    from flows.cli import app

    cs.profile_path().parent.mkdir(parents=True)
    cs.profile_path().write_text("{nope")
    result = CliRunner().invoke(app, command, env={"PREFECT_API_URL": None})
    lines = result.stderr.strip().splitlines()
    if command[-1] == "down":
        assert result.exit_code == 0 and lines[0].startswith("warning: ") and not cs.profile_path().exists()
    else:
        assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
