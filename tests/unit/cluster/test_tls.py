"""The cluster's credentials, without starting it: Dask TLS files made 0600 and usable (a TLS scheduler lets the
certificate in and refuses plain TCP and a TLS client without it), Prefect's auth string masked in the profile
and found again by every client, each credential sent only to its own service, everything gone at `down`,
and the dashboard's token gate."""
from __future__ import annotations

import asyncio
import json
import os
import ssl
import stat

import pytest

from cluster import credentials
from cluster import settings as cs
from cluster.connect import dask_runner_kwargs
from cluster.gate import COOKIE, TokenGate
from cluster.local import LocalCluster
from cluster.settings import load_settings
from cluster.tls import make_tls, security, tls_flags


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CONDUCTOR_HOME", str(tmp_path / "runs"))
    for var in cs.ENV.values():
        monkeypatch.setenv(var, "x")  # recorded, so that whatever a test sets is undone
        monkeypatch.delenv(var)
    return tmp_path / "runs"


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_tls_files_are_private_and_signed_by_their_ca(tmp_path):
    from cryptography import x509

    old = os.umask(0)
    try:
        paths = make_tls(tmp_path / "tls")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "tls") == 0o700 and all(_mode(p) == 0o600 for p in paths.values())
    assert sorted(p.name for p in (tmp_path / "tls").iterdir()) == ["ca.pem", "cert.pem", "key.pem"]  # no CA key
    ca = x509.load_pem_x509_certificate(paths["ca"].read_bytes())
    cert = x509.load_pem_x509_certificate(paths["cert"].read_bytes())
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert tls_flags(tmp_path / "tls") == ["--tls-ca-file", str(paths["ca"]), "--tls-cert", str(paths["cert"]),
                                           "--tls-key", str(paths["key"])]
    again = make_tls(tmp_path / "tls")  # a new cluster: a new CA, the old certificate no longer fits
    assert x509.load_pem_x509_certificate(again["ca"].read_bytes()) != ca


def test_security_needs_the_files(tmp_path):
    from cluster.settings import SettingsError

    with pytest.raises(SettingsError, match="missing; is the cluster up"):
        security(tmp_path / "nothing")
    make_tls(tmp_path / "tls")
    sec = security(tmp_path / "tls")
    assert sec.require_encryption and sec.tls_client_cert == str(tmp_path / "tls" / "cert.pem")


def test_a_tls_scheduler_admits_the_certificate_only(tmp_path):
    from distributed import Scheduler
    from distributed.comm import connect

    make_tls(tmp_path / "tls")
    sec = security(tmp_path / "tls")

    async def identity(address, **kwargs):
        comm = await connect(address, timeout=3, **kwargs)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await asyncio.wait_for(comm.read(), 3)
        finally:
            comm.abort()

    async def main():
        async with Scheduler(host="127.0.0.1", port=0, protocol="tls", security=sec, dashboard_address=":0",
                             dashboard=False) as s:
            assert s.address.startswith("tls://127.0.0.1:")
            assert (await identity(s.address, **sec.get_connection_args("client")))["type"] == "Scheduler"
            with pytest.raises(Exception):  # noqa: B017 - plain TCP: the handshake never completes
                await asyncio.wait_for(identity(s.address.replace("tls://", "tcp://")), 5)
            no_cert = ssl.create_default_context(cafile=str(tmp_path / "tls" / "ca.pem"))
            no_cert.check_hostname = False
            with pytest.raises(Exception):  # noqa: B017 - TLS without the client certificate
                await asyncio.wait_for(identity(s.address, ssl_context=no_cert), 5)

    asyncio.run(main())


def test_credentials_in_the_profile_and_back(home):
    root = home / "cluster"
    creds = credentials.issue(root)
    assert _mode(root / "ray_auth_token") == 0o600 and len((root / "ray_auth_token").read_text()) == 64
    shown = cs.save_profile({"prefect_api_url": "http://127.0.0.1:4200/api", "dask_address": "tls://127.0.0.1:8786",
                             "ray_address": "127.0.0.1:6379", **creds.profile()})
    assert shown["prefect_api_auth_string"] == "***" and creds.auth_string not in cs.profile_path().read_text()
    assert creds.auth_string not in repr(creds) and creds.auth_string not in repr(load_settings())
    assert json.loads(cs.secrets_path().read_text())["prefect_api_auth_string"] == creds.auth_string
    s = load_settings()  # another shell: everything comes back through the profile
    assert s.prefect_api_auth_string == creds.auth_string and s.dask_tls == str(creds.tls_dir)
    assert cs.client_env() == {"PREFECT_API_AUTH_STRING": creds.auth_string,
                               "RAY_AUTH_TOKEN_PATH": str(root / "ray_auth_token")}
    kwargs = dask_runner_kwargs(s)
    assert kwargs["address"] == "tls://127.0.0.1:8786"
    assert kwargs["client_kwargs"]["security"].tls_client_key == str(creds.tls_dir / "key.pem")
    assert credentials.basic_auth(creds.auth_string)["Authorization"].startswith("Basic ")


def test_a_credential_goes_to_its_own_service_only(home, monkeypatch):
    creds = credentials.issue(home / "cluster")
    cs.save_profile({"prefect_api_url": "http://127.0.0.1:4200/api", "dask_address": "tls://127.0.0.1:8786",
                     "ray_address": "127.0.0.1:6379", **creds.profile()})
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")  # the same server: still sent
    assert load_settings().prefect_api_auth_string == creds.auth_string
    monkeypatch.setenv("PREFECT_API_URL", "https://prefect.example.com/api")
    monkeypatch.setenv("CONDUCTOR_DASK_ADDRESS", "tcp://other:8786")
    monkeypatch.setenv("CONDUCTOR_RAY_ADDRESS", "other:6379")
    s = load_settings()
    assert s.prefect_api_auth_string is None and s.dask_tls is None and s.ray_auth_token_path is None
    assert cs.client_env() == {} and dask_runner_kwargs(s) == {"address": "tcp://other:8786"}


def test_down_removes_every_credential(home):
    root = home / "cluster"
    creds = credentials.issue(root)
    cs.save_profile({"prefect_api_url": "http://127.0.0.1:4200/api", **creds.profile()})
    LocalCluster(root).down(log=lambda *_: None)
    assert not (root / "tls").exists() and not (root / "ray_auth_token").exists()
    assert not cs.secrets_path().exists() and not cs.profile_path().exists()
    assert load_settings().prefect_api_auth_string is None


def test_up_hands_each_service_its_credential(home, monkeypatch):
    """The environment of each service, with the processes stubbed out: only the server holds the server's
    setting, Ray gets this cluster's token file, the caller's own credentials never leak in."""
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-my-shell")
    cluster = LocalCluster(home / "cluster")
    seen = {}
    monkeypatch.setattr(LocalCluster, "_wait_all", lambda *a, **k: None)
    monkeypatch.setattr(LocalCluster, "_spawn", lambda self, name, args, env=None: seen.setdefault(name, (args, env)))
    monkeypatch.setattr("cluster.commands.wait_until", lambda *a, **k: None)
    profile = cluster.up(log=lambda *_: None)
    assert profile["dask_address"].startswith("tls://") and profile["prefect_api_auth_string"] == "***"
    auth = json.loads(cs.secrets_path().read_text())["prefect_api_auth_string"]
    server_args, server_env = seen["prefect-server"]
    assert server_env["PREFECT_SERVER_API_AUTH_STRING"] == auth and auth not in " ".join(server_args)
    _, ray_env = seen["ray-head"]
    assert ray_env["RAY_AUTH_MODE"] == "token" and ray_env["RAY_AUTH_TOKEN_PATH"].endswith("ray_auth_token")
    assert "RAY_AUTH_TOKEN" not in ray_env and "PREFECT_SERVER_API_AUTH_STRING" not in ray_env
    dask_args, dask_env = seen["dask-scheduler"]
    spec = json.loads(dask_args[dask_args.index("--spec") + 1])  # `dask spec`: the dashboard asks for the cert
    assert spec["cls"] == "cluster.credentials.owner_only_scheduler"
    assert spec["opts"]["tls_dir"] == str(home / "cluster" / "tls") and spec["opts"]["protocol"] == "tls"
    assert profile["dask_dashboard_url"] == f"https://{spec['opts']['dashboard_address']}/status"
    assert profile["dask_dashboard_url"].startswith("https://127.0.0.1:")
    # no route in the environment: only owner_only_scheduler, with the certificate required, serves any
    assert dask_env["DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES"] == "[]"
    # the command server gets the caller's environment, as the commands it serves have it: no server's setting
    commands_args, commands_env = seen["commands"]
    assert commands_args[-2:] == ["flows.cli.command_server", str(home / "cluster" / "commands.sock")]
    assert "PREFECT_SERVER_API_AUTH_STRING" not in commands_env and auth not in json.dumps(commands_env)


def _call(app, path="/dashboard", query="", **headers):
    out = {}

    def start_response(status, hdrs):
        out["status"], out["headers"] = int(status.split()[0]), dict(hdrs)

    environ = {"PATH_INFO": path, "QUERY_STRING": query, "SCRIPT_NAME": "", **headers}
    out["body"] = b"".join(app(environ, start_response))
    return out


def test_dashboard_gate_token_then_cookie_else_403():
    gate = TokenGate(lambda env, start: (start("200 OK", []), [b"studies"])[1], token="t0k")
    assert _call(gate)["status"] == 403
    assert _call(gate, query="token=wrong")["status"] == 403
    first = _call(gate, query="token=t0k&x=1")
    assert first["status"] == 302 and first["headers"]["Location"] == "/dashboard?x=1"  # token off the address bar
    cookie = first["headers"]["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "t0k" not in cookie
    value = cookie.split(";")[0]
    assert _call(gate, "/api/studies", HTTP_COOKIE=value)["body"] == b"studies"
    assert _call(gate, "/api/studies", HTTP_COOKIE=f"{COOKIE}=forged")["status"] == 403
    assert _call(gate, "/api/studies", HTTP_AUTHORIZATION="token t0k")["status"] == 200
    assert _call(gate, "/api/studies", HTTP_COOKIE='bad"cookie;;')["status"] == 403
    assert len(TokenGate(lambda *a: []).token) >= 40  # a fresh random one by default


def test_dashboard_no_auth_is_for_loopback_only(tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "optuna.db").touch()
    result = CliRunner().invoke(app, ["dashboard", "--no-auth", "--host", "0.0.0.0"],
                                env={"CONDUCTOR_HOME": str(tmp_path / "runs"), "PREFECT_API_URL": None})
    assert result.exit_code == 2 and "--no-auth: only with a loopback --host" in result.stderr

