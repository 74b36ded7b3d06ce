"""What `cluster up` hands out and `cluster down` takes back: a fresh Prefect API auth string, the Dask TLS
files (cluster/tls.py) and a Ray token of this cluster's own, so that every service answers its owner only.

Nothing here is ever printed or logged. The auth string lives in runs/cluster/secrets.json (through the
profile, masked in profile.json); the TLS files in runs/cluster/tls/ and the Ray token in
runs/cluster/ray_auth_token, every one 0600. A client finds them through the profile (settings.client_env,
connect.dask_runner_kwargs); the services started by `cluster up` get them in their environment or flags.

The Dask dashboard (owner_only_scheduler) takes the Dask certificate too: HTTPS that asks every client for
it (mutual TLS). For a browser the same certificate and key are in runs/cluster/tls/dashboard.p12 (0600),
whose password is the auth string.
"""
from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from .settings import write_private
from .tls import make_tls, remove_tls, tls_files

RAY_TOKEN = "ray_auth_token"
TLS_DIR = "tls"
DASHBOARD_P12 = "dashboard.p12"
# what the dashboard serves besides its Bokeh pages (/status, /workers, ...), to the certificate only:
# distributed's scheduler routes without its proxy to other hosts' ports
DASHBOARD_ROUTES = ["distributed.http.scheduler.prometheus", "distributed.http.scheduler.info",
                    "distributed.http.scheduler.json", "distributed.http.health", "distributed.http.statics"]


@dataclass(frozen=True)
class Credentials:
    auth_string: str = field(repr=False)
    tls_dir: Path
    ray_token_path: Path

    def profile(self) -> dict:
        """Profile entries: save_profile masks the auth string and keeps the real one in secrets.json."""
        return {"prefect_api_auth_string": self.auth_string, "dask_tls": str(self.tls_dir),
                "ray_auth_token_path": str(self.ray_token_path)}

    def ray_env(self) -> dict:
        """Every Ray node and driver: token mode, with this cluster's token (never ~/.ray's, which Ray writes
        0644 and every cluster of the user shares)."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.ray_token_path)}

    def prefect_server_env(self) -> dict:
        return {"PREFECT_SERVER_API_AUTH_STRING": self.auth_string}

    def prefect_client_env(self) -> dict:
        return {"PREFECT_API_AUTH_STRING": self.auth_string}

    def dask_env(self) -> dict:
        """Dask scheduler and workers: the client role of a worker (worker_client) uses the same files, and
        the workers' HTTP servers (which Dask starts even with --no-dashboard) serve no route at all: no /info
        pages with logs and call stacks, no proxy, only 404. The scheduler's serves the dashboard only where
        owner_only_scheduler made it ask for the certificate (no route otherwise)."""
        files = tls_files(self.tls_dir)
        return {"CONDUCTOR_DASK_TLS": str(self.tls_dir), "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
                "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(files["ca"]),
                "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": str(files["cert"]),
                "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": str(files["key"]),
                "DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES": "[]", "DASK_DISTRIBUTED__WORKER__HTTP__ROUTES": "[]"}


def issue(root: Path) -> Credentials:
    """New credentials for a cluster about to start (old ones, if any, are replaced)."""
    root.mkdir(parents=True, exist_ok=True)
    tls_dir = root / TLS_DIR
    make_tls(tls_dir)
    write_private(root / RAY_TOKEN, secrets.token_hex(32))  # what `ray get-auth-token --generate` makes
    creds = Credentials(secrets.token_urlsafe(32), tls_dir, root / RAY_TOKEN)
    _write_p12(tls_dir, creds.auth_string)
    return creds


def _write_p12(tls_dir: Path, password: str) -> Path:
    """The certificate, its key and the CA in one PKCS#12 file (what a browser imports), 0600, encrypted
    with `password` (AES-256, PBKDF2)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    files = tls_files(tls_dir)
    blob = pkcs12.serialize_key_and_certificates(
        b"conductor cluster", serialization.load_pem_private_key(files["key"].read_bytes(), None),
        x509.load_pem_x509_certificate(files["cert"].read_bytes()),
        [x509.load_pem_x509_certificate(files["ca"].read_bytes())],
        serialization.BestAvailableEncryption(password.encode()))
    path = tls_dir / DASHBOARD_P12
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # created 0600, as write_private does (text)
    with os.fdopen(fd, "wb") as f:
        f.write(blob)
    return path


def owner_only_scheduler(tls_dir: str, dashboard_address: str, **opts):
    """The cluster's Dask scheduler (the `cls` of `dask spec`, see cluster/local.py): comms over mutual TLS
    with the files in `tls_dir`, and the dashboard on `dashboard_address` over HTTPS that requires the same
    client certificate: a client without it fails the TLS handshake and is served nothing.

    distributed's own dashboard TLS settings (distributed.scheduler.dashboard.tls.*) build a server context
    that never asks for a client certificate (ssl.create_default_context(purpose=CLIENT_AUTH) leaves
    verify_mode at CERT_NONE): anyone on the machine would get in. So the HTTP server here starts with the
    comms' own server context (Security.get_listen_args: CERT_REQUIRED), from the first connection on."""
    import gc
    import ssl

    import dask
    from distributed import Scheduler

    from .tls import security

    port = int(dashboard_address.rsplit(":", 1)[1])

    class OwnerOnlyScheduler(Scheduler):
        def start_http_server(self, routes, dashboard_address, default_port=0, ssl_options=None):
            context = self.security.get_listen_args("scheduler").get("ssl_context")
            if context is None or context.verify_mode != ssl.CERT_REQUIRED:
                raise RuntimeError("the dashboard needs the scheduler's TLS certificate and a CA to check clients by")
            super().start_http_server(routes, dashboard_address, default_port, ssl_options=context)
            if self.http_server.port != port:  # distributed moves to another port when this one is taken
                raise RuntimeError(f"the dashboard's port {port} was taken; `conductor cluster up` again")

    g0, g1, g2 = gc.get_threshold()
    gc.set_threshold(g0 * 3, g1 * 3, g2 * 3)  # as `dask scheduler` does (dask/distributed#1653)
    with dask.config.set({"distributed.scheduler.http.routes": DASHBOARD_ROUTES,
                          "distributed.scheduler.dashboard.tls.cert": None,  # else distributed's CERT_NONE context
                          # the Bokeh websockets: from the dashboard's own pages only, not any site the browser shows
                          "distributed.scheduler.dashboard.bokeh-application.allow_websocket_origin":
                              [f"127.0.0.1:{port}", f"localhost:{port}"]}):
        return OwnerOnlyScheduler(security=security(tls_dir), dashboard=True, dashboard_address=dashboard_address,
                                  **opts)


def revoke(root: Path) -> None:
    """Remove the files (secrets.json goes with the profile)."""
    remove_tls(root / TLS_DIR)
    (root / RAY_TOKEN).unlink(missing_ok=True)


def basic_auth(auth_string: str | None) -> dict:
    """The header a Prefect client sends: HTTP basic auth carrying the auth string."""
    if not auth_string:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(auth_string.encode()).decode()}
