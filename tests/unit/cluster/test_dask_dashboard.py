"""The Dask dashboard of `cluster up`, in one process: HTTPS that serves the cluster's certificate holder only
(no certificate: the TLS handshake fails; another cluster's: the same; the right one: the Bokeh status page
and the /info pages with the workers), on the port it was given or not at all; the browser's copy of the
certificate (dashboard.p12) 0600 and locked with the auth string; what `cluster status` prints about it."""
from __future__ import annotations

import asyncio
import gc
import socket
import ssl
import stat
import urllib.error
import urllib.request

import pytest

from cluster import credentials
from cluster.dashboard import dashboard_answers, dashboard_help
from cluster.tls import security


@pytest.fixture
def gc_thresholds():
    """owner_only_scheduler raises the GC thresholds of its process (as `dask scheduler` does): undone here."""
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, tls_dir=None, cert_dir=None) -> tuple[int, str] | Exception:
    """GET over HTTPS, checking the server against tls_dir's CA and presenting cert_dir's certificate (if any)."""
    context = ssl.create_default_context(cafile=str(tls_dir / "ca.pem"))
    if cert_dir is not None:
        context.load_cert_chain(cert_dir / "cert.pem", cert_dir / "key.pem")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(url, timeout=10) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError as e:
        return e


def test_the_dashboard_serves_the_certificate_only(tmp_path, gc_thresholds):
    from distributed import Worker

    tls = credentials.issue(tmp_path / "cluster").tls_dir
    other = credentials.issue(tmp_path / "other").tls_dir  # another cluster of the same user
    port = _free_port()
    origin = f"https://127.0.0.1:{port}"

    async def main():
        async with credentials.owner_only_scheduler(str(tls), f"127.0.0.1:{port}", host="127.0.0.1", port=0,
                                                    protocol="tls") as s:
            assert s.http_server.port == port and s.address.startswith("tls://127.0.0.1:")
            async with Worker(s.address, security=security(tls), nthreads=1, dashboard=False) as w:
                bare = await asyncio.to_thread(_get, f"{origin}/health", tls)
                stranger = await asyncio.to_thread(_get, f"{origin}/health", tls, other)
                workers = await asyncio.to_thread(_get, f"{origin}/info/main/workers.html", tls, tls)
                status = await asyncio.to_thread(_get, f"{origin}/status", tls, tls)
                assert await asyncio.to_thread(dashboard_answers, f"{origin}/status", tls)
                assert not await asyncio.to_thread(dashboard_answers, f"{origin}/status", other)
                with socket.create_connection(("127.0.0.1", port), timeout=5) as plain:  # HTTP without TLS
                    plain.sendall(b"GET /health HTTP/1.0\r\n\r\n")
                    plain.settimeout(3)
                    try:
                        answer = plain.recv(100)
                    except OSError:
                        answer = b""
                return bare, stranger, workers, status, w.address, answer

    bare, stranger, workers, status, worker, answer = asyncio.run(main())
    assert isinstance(bare, ssl.SSLError | urllib.error.URLError | ConnectionError), bare  # no certificate
    assert isinstance(stranger, ssl.SSLError | urllib.error.URLError | ConnectionError), stranger  # not this CA's
    assert workers[0] == 200 and worker in workers[1]
    assert status[0] == 200 and "bokeh" in status[1].lower()
    assert b"HTTP/" not in answer


@pytest.mark.filterwarnings("ignore:Port .* is already in use")  # distributed's, before it moves
def test_the_dashboard_port_or_nothing(tmp_path, gc_thresholds):
    """Taken by someone else, the port is not silently swapped for another one (the profile names it)."""
    tls = credentials.issue(tmp_path / "cluster").tls_dir
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        async def main():
            with pytest.raises(RuntimeError, match=f"port {port} was taken"):
                credentials.owner_only_scheduler(str(tls), f"127.0.0.1:{port}", host="127.0.0.1", port=0,
                                                 protocol="tls")

        asyncio.run(main())


def test_the_browser_certificate_is_private_and_locked(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    creds = credentials.issue(tmp_path / "cluster")
    p12 = creds.tls_dir / credentials.DASHBOARD_P12
    assert stat.S_IMODE(p12.stat().st_mode) == 0o600
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(p12.read_bytes(), b"wrong")
    key, cert, cas = pkcs12.load_key_and_certificates(p12.read_bytes(), creds.auth_string.encode())
    assert cert == x509.load_pem_x509_certificate((creds.tls_dir / "cert.pem").read_bytes())
    assert cas == [x509.load_pem_x509_certificate((creds.tls_dir / "ca.pem").read_bytes())]
    raw = serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(serialization.Encoding.PEM, raw) == \
        cert.public_key().public_bytes(serialization.Encoding.PEM, raw)
    assert creds.auth_string.encode() not in p12.read_bytes()
    credentials.revoke(tmp_path / "cluster")
    assert not p12.exists()


def test_status_says_how_to_open_the_dashboard(tmp_path, monkeypatch):
    monkeypatch.setenv("CONDUCTOR_HOME", str(tmp_path / "runs"))
    creds = credentials.issue(tmp_path / "runs" / "cluster")
    url = "https://127.0.0.1:8787/status"
    lines = dashboard_help({"dask_dashboard_url": url, **creds.profile()})
    text = "\n".join(lines)
    assert lines[0].startswith(f"Dask dashboard: {url}")
    assert f"--cert {creds.tls_dir / 'cert.pem'} --key {creds.tls_dir / 'key.pem'}" in text
    assert str(creds.tls_dir / "dashboard.p12") in text and str(tmp_path / "runs" / "cluster" / "secrets.json") in text
    assert creds.auth_string not in text
    assert dashboard_help({"dask_address": "tls://127.0.0.1:8786"}) == []  # a profile of before: nothing to say
    assert not dashboard_answers(url, None)
