"""A command starts a Prefect API of its own only when Prefect has none: not over a PREFECT_API_URL, and not over
the user's own Prefect profile (a server they run, Prefect Cloud)."""
from __future__ import annotations

from flows.engines import prefect_api_configured


def test_the_users_prefect_profile_keeps_its_api(tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_PROFILES_PATH", raising=False)
    monkeypatch.delenv("PREFECT_PROFILE", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    monkeypatch.setattr("sys.modules", {k: v for k, v in __import__("sys").modules.items() if k != "prefect.context"})
    assert not prefect_api_configured()  # no profiles file: embedded
    (tmp_path / "profiles.toml").write_text('active = "mine"\n[profiles.mine]\nPREFECT_API_URL = "http://h:4200/api"\n')
    assert prefect_api_configured()
    monkeypatch.setenv("PREFECT_PROFILE", "other")
    assert not prefect_api_configured()  # the active profile has no API URL
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")
    assert prefect_api_configured()


def test_flow_runs_send_heartbeats_where_an_api_watches_them(monkeypatch):
    """A cluster's API crashes a flow run after 75 s without a heartbeat (Prefect's default is one per 180 s):
    every 30 s there, from conductor's thread (Prefect's own is off: joining it cost up to 1 s per flow); none to
    the command's own API, which dies with it."""
    import types

    from prefect.settings import get_current_settings

    from cluster.zombies import HEARTBEAT_S, SILENCE_S
    from flows.beats import BEAT_EVERY, heartbeats
    from flows.engines import PrefectServer

    monkeypatch.setattr(PrefectServer, "current", None)
    with heartbeats():
        assert get_current_settings().flows.heartbeat_frequency is None
        assert BEAT_EVERY.get() == HEARTBEAT_S < SILENCE_S / 2
    own = types.SimpleNamespace(proc=types.SimpleNamespace(poll=lambda: None))  # a server still running
    monkeypatch.setattr(PrefectServer, "current", own)
    with heartbeats():
        assert get_current_settings().flows.heartbeat_frequency is None and BEAT_EVERY.get() is None
    assert get_current_settings().flows.heartbeat_frequency is not None and BEAT_EVERY.get() is None  # only inside


def test_warming_an_api_that_does_not_answer_is_no_error(monkeypatch):
    """The request that warms the command's own API (flows/engines.py PrefectServer.warm) never fails a command."""
    import socket
    import types

    from flows.engines import PrefectServer

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "x")
    assert PrefectServer.warm(types.SimpleNamespace(url=f"http://127.0.0.1:{port}/api")) is False
    # nor one that answers with something that is not HTTP (http.client's BadStatusLine, no OSError)
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def garble():
        conn, _ = server.accept()
        conn.recv(4096)
        conn.sendall(b"not http at all\r\n\r\n")
        conn.close()

    threading.Thread(target=garble, daemon=True).start()
    try:
        assert PrefectServer.warm(types.SimpleNamespace(url=f"http://127.0.0.1:{server.getsockname()[1]}/api")) is False
    finally:
        server.close()
