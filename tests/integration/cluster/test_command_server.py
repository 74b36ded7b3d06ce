"""`cluster up`'s command server (flows/cli/command_server.py, flows/cli/handover.py), started on its own here: a run
handed to it behaves as the same command in its own process (output, exit code, Ctrl-C), a command it must not
serve runs in its own process, and only its owner gets in. tests/e2e/test_cluster.py runs real runs and sweeps
through it on `cluster up`."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from cluster.commands import socket_path
from cluster.processes import answers_unix
from flows.cli.handover import code_version, receive, send
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("cs") / "runs"
    (home / "cluster").mkdir(parents=True, mode=0o700)
    env = {**os.environ, "CONDUCTOR_HOME": str(home)}
    env.pop("CONDUCTOR_DASK_ADDRESS", None)
    log = home / "cluster" / "commands.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "flows.cli.command_server", str(socket_path(home))], cwd=ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while not answers_unix(socket_path(home)) and time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        time.sleep(0.2)
    yield env, log
    proc.terminate()
    proc.wait(30)


def conductor(env: dict, *args, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "flows", *map(str, args)], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def children(log: Path, command: str) -> list[int]:
    return [int(line.split()[2].rstrip(":")) for line in log.read_text().splitlines()
            if line.endswith(f": conductor {command}")]


def test_a_handed_run_answers_as_its_own_process_would(server):
    env, log = server
    before = children(log, "run")
    bad = conductor(env, "run", ROOT / "experiments" / "digits-cnn.yaml", "--set", "train.lr=-1")
    out, err = bad.communicate(timeout=60)
    assert bad.returncode == 2 and err.startswith("error: ") and "train.lr" in err and out == ""
    assert len(children(log, "run")) == len(before) + 1  # the server's child ran it
    ok = conductor(env, "sweep", "--help")
    out, _ = ok.communicate(timeout=60)
    assert ok.returncode == 0 and "Hyperparameter sweep" in out
    assert "exit 2" in log.read_text() and "exit 0" in log.read_text()


def test_another_environment_runs_in_its_own_process(server):
    env, log = server
    before = children(log, "run")
    other = conductor({**env, "PREFECT_LOGGING_LEVEL": "DEBUG", "CONDUCTOR_DEBUG": "1"}, "run",
                      ROOT / "experiments" / "digits-cnn.yaml", "--set", "train.lr=-1")
    _, err = other.communicate(timeout=120)
    assert other.returncode == 2 and err.strip().splitlines()[-1].startswith("error: ")
    assert err.startswith("note: not run by the command server of `cluster up`: another environment in "
                          "PREFECT_LOGGING_LEVEL\n")  # with --debug, why
    assert children(log, "run") == before and "another environment in PREFECT_LOGGING_LEVEL" in log.read_text()


def test_ctrl_c_reaches_the_child_and_a_killed_command_takes_its_child(server, tmp_path):
    env, log = server
    os.mkfifo(tmp_path / "data.csv")  # nobody writes it: the run waits in its checks of the data
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: fifo\ndata:\n  source: {tmp_path / 'data.csv'}\n  target: y\n  task: classification\n"
                    "model:\n  name: mlp\n")
    for sig, code in ((signal.SIGINT, 130), (signal.SIGKILL, -9)):
        before = children(log, "run")
        cmd = conductor(env, "run", spec)
        deadline = time.monotonic() + 60
        while len(children(log, "run")) == len(before) and time.monotonic() < deadline:
            time.sleep(0.1)
        child = children(log, "run")[-1]
        time.sleep(1.0)  # into its read of the FIFO
        cmd.send_signal(sig)
        _, err = cmd.communicate(timeout=60)
        assert cmd.returncode == code, err
        if sig == signal.SIGINT:
            assert err.strip().endswith("interrupted")
        deadline = time.monotonic() + 10
        while psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
    assert f"child {child}: its command is gone; killed" in log.read_text()


def test_only_the_same_code_and_the_owner_are_served(server):
    env, _ = server
    path = socket_path(Path(env["CONDUCTOR_HOME"]))
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        send(s, {"argv": ["conductor", "run"], "env": env, "cwd": str(ROOT), "umask": 0o22, "code": "other"},
             fds=(0, 1, 2))
        assert receive(s)[0] == {"refused": "other code (conductor's sources changed since `cluster up`)"}
    err_r, err_w = os.pipe()  # a command the child cannot become (its directory is gone): one line, exit 1
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        send(s, {"argv": ["conductor", "run"], "env": env, "cwd": "/nonexistent", "umask": 0o22,
                 "code": code_version()}, fds=(0, 1, err_w))
        os.close(err_w)
        assert "pid" in receive(s)[0] and receive(s)[0] == {"exit": 1}
    with os.fdopen(err_r) as err:
        assert err.read().startswith("failed: the command server of `cluster up` could not start this command: "
                                     "FileNotFoundError")
    if os.getuid() == 0:  # another user (root can become one): the socket's mode keeps it out
        pid = os.fork()
        if pid == 0:
            try:
                os.setuid(65534)
                socket.socket(socket.AF_UNIX).connect(str(path))
                os._exit(1)
            except PermissionError:
                os._exit(0)
            except BaseException:  # noqa: BLE001 - anything else fails the test
                os._exit(2)
        assert os.waitpid(pid, 0)[1] == 0
