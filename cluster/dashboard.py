"""The Dask dashboard of `cluster up`: HTTPS on 127.0.0.1 that answers only a client presenting the cluster's
certificate (cluster/credentials.py owner_only_scheduler); whether it answers, and how a user opens it."""
from __future__ import annotations

import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from . import credentials
from .settings import secrets_path
from .tls import tls_files


def dashboard_answers(url: str, tls_dir) -> bool:
    """True when the Dask dashboard at `url` answers /health with 200 to a client presenting the cluster's
    certificate (and checking the dashboard's against the cluster's CA)."""
    import ssl

    if not tls_dir:
        return False
    files = tls_files(tls_dir)
    try:
        context = ssl.create_default_context(cafile=str(files["ca"]))
        context.load_cert_chain(files["cert"], files["key"])
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),  # straight to 127.0.0.1
                                             urllib.request.HTTPSHandler(context=context))
        parts = urlsplit(url)
        with opener.open(f"{parts.scheme}://{parts.netloc}/health", timeout=2) as r:
            return r.status == 200
    except (OSError, ValueError):
        return False


def dashboard_help(profile: dict) -> list[str]:
    """How to open the Dask dashboard of the profile: lines to print (paths only, never a credential)."""
    url, tls_dir = profile.get("dask_dashboard_url"), profile.get("dask_tls")
    if not url or not tls_dir:
        return []
    files = tls_files(tls_dir)
    return [f"Dask dashboard: {url} (answers this cluster's certificate only)",
            f"  curl --cacert {files['ca']} --cert {files['cert']} --key {files['key']} {url}",
            f"  browser: import {Path(tls_dir) / credentials.DASHBOARD_P12} (its password is prefect_api_auth_string "
            f"in {secrets_path()}) and trust {files['ca']} for websites (its CA key is gone: it vouches for "
            "nothing else)"]
