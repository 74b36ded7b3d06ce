"""What `cluster up` hands out and `cluster down` takes back: a fresh Prefect API auth string, the Dask TLS
files (cluster/tls.py) and a Ray token of this cluster's own, so that every service answers its owner only.

Nothing here is ever printed or logged. The auth string lives in runs/cluster/secrets.json (through the
profile, masked in profile.json); the TLS files in runs/cluster/tls/ and the Ray token in
runs/cluster/ray_auth_token, every one 0600. A client finds them through the profile (settings.client_env,
connect.dask_runner_kwargs); the services started by `cluster up` get them in their environment or flags.
"""
from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from .settings import write_private
from .tls import make_tls, remove_tls, tls_files

RAY_TOKEN = "ray_auth_token"
TLS_DIR = "tls"


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
        their HTTP servers (which Dask starts even with --no-dashboard) serve no route at all: no /info
        pages with logs and call stacks, no proxy, only 404."""
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
    return Credentials(secrets.token_urlsafe(32), tls_dir, root / RAY_TOKEN)


def revoke(root: Path) -> None:
    """Remove the files (secrets.json goes with the profile)."""
    remove_tls(root / TLS_DIR)
    (root / RAY_TOKEN).unlink(missing_ok=True)


def basic_auth(auth_string: str | None) -> dict:
    """The header a Prefect client sends: HTTP basic auth carrying the auth string."""
    if not auth_string:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(auth_string.encode()).decode()}
