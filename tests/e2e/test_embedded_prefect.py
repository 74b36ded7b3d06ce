"""The Prefect API a command starts for itself (flows/engines.py PrefectServer): only its owner's requests are
served (an auth string, fresh per command), it never outlives the command, even one killed with -9, and in a
new home it starts on a copy of the database template (cluster/prefect_db.py)."""
from __future__ import annotations

import base64
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e

SCRIPT = """
import json, os, sys, time
import prefect  # imported before the server starts: its settings must still point at the server
from cluster import prefect_db
from flows.engines import PrefectServer, build_template
assert build_template(), "no Prefect database template"  # `make install` made it; else made here
server = PrefectServer()
seeded = server.db.is_file()  # the new home's database, copied from the template before the server started
seconds = server.wait()
assert server.warm(), "the warm-up request was not answered"
from prefect.client.orchestration import get_client
with get_client(sync_client=True) as client:  # this process's client: the server above, not one of its own
    client.create_flow_from_name("written-to-the-copy")
    flows = [f.name for f in client.read_flows()]
print(json.dumps({"url": os.environ["PREFECT_API_URL"], "auth": os.environ["PREFECT_API_AUTH_STRING"],
                  "client_url": str(client.api_url), "own_server": "prefect.server.api.server" in sys.modules,
                  "pid": server.proc.pid, "seconds": seconds, "seeded": seeded, "flows": flows,
                  "db": str(server.db), "template": str(prefect_db.template())}), flush=True)
time.sleep(600)
"""


def status(url: str, auth: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    request = urllib.request.Request(f"{url}/flows/filter", data=b"{}", headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # a zombie of ours would count as alive: reap it if it is our child (it is not: the script's)
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        time.sleep(0.2)
    return False


def test_embedded_api_answers_its_owner_only_and_dies_with_the_command(tmp_path):
    env = {k: v for k, v in os.environ.items()  # Prefect's own database in the new home, from the template
           if not k.startswith(("PREFECT_API", "PREFECT_SERVER_DATABASE", "CONDUCTOR_PREFECT_TEMPLATES"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), CONDUCTOR_HOME=str(tmp_path / "runs"))
    parent = subprocess.Popen([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(parent.stdout.readline())
        assert info["client_url"].rstrip("/") == info["url"] and not info["own_server"]  # no second server
        assert status(info["url"], None) == 401  # another user of the machine: refused
        assert status(info["url"], "someone-else") == 401
        assert status(info["url"], info["auth"]) == 200
        # the database came from the template (cluster/prefect_db.py): the server took it, the flow went into
        # the copy, never into the template
        assert info["seeded"] and info["flows"] == ["written-to-the-copy"]
        with sqlite3.connect(f"file:{info['template']}?mode=ro", uri=True) as c:
            assert c.execute("SELECT count(*) FROM flow").fetchone() == (0,)
            assert c.execute("SELECT count(*) FROM block_type").fetchone()[0] > 0
        # a copy of the template is at head: its server skipped the migration and block registration checks
        server_env = dict(kv.split("=", 1) for kv in open(f"/proc/{info['pid']}/environ").read().split("\0") if kv)
        assert server_env["PREFECT_API_DATABASE_MIGRATE_ON_START"] == "false"
        assert server_env["PREFECT_API_BLOCKS_REGISTER_ON_START"] == "false"
        print(f"embedded Prefect API up in {info['seconds']:.1f}s")
    finally:
        parent.send_signal(signal.SIGKILL)  # no atexit: the kernel's parent-death signal stops the server
        parent.wait()
    assert gone(info["pid"], 15), "the Prefect API server outlived the command that started it"
