"""A short connection probe of every service address conductor was given, made before anything starts:
an unreachable Prefect API, Dask scheduler or Ray head fails in a second, naming the variable (or the
cluster profile) that pointed there, not after a library's connect time-out of half a minute or more."""
from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

from .settings import ENV, Settings, SettingsError, profile_path

IN_PROCESS = ("inproc://", "local://")  # a scheduler inside this very process: nothing to connect to
DEFAULT_PORTS = {"prefect_api_url": 4200, "dask_address": 8786, "ray_address": 6379}


def probe(settings: Settings, timeout: float = 2.0) -> None:
    """Raise SettingsError for the first address that is malformed or does not accept a connection."""
    for key, default_port in DEFAULT_PORTS.items():
        address = getattr(settings, key)
        if key == "prefect_api_url":
            address = os.environ.get("PREFECT_API_URL") or address
        if not address or address == "auto" or address.startswith(IN_PROCESS):
            continue
        where = _origin(key)
        host, port = host_port(address, default_port, where)
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as e:
            raise SettingsError(f"{where}: nothing answers at {host}:{port} ({e.strerror or type(e).__name__}); "
                                "start it (conductor cluster up), fix the address, or unset it to run embedded"
                                ) from None


def host_port(address: str, default_port: int, where: str) -> tuple[str, int]:
    """(host, port) of 'tcp://h:p', 'tls://h:p', 'ray://h:p', 'http://h:p/api' or 'h:p'."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        port = parts.port or default_port
    except ValueError:
        raise SettingsError(f"{where}: {address!r} has no valid port; write host:port, e.g. 127.0.0.1:"
                            f"{default_port}") from None
    if not parts.hostname:
        raise SettingsError(f"{where}: {address!r} names no host; write host:port, e.g. 127.0.0.1:{default_port}")
    return parts.hostname, port


def _origin(key: str) -> str:
    var = ENV[key]
    return var if os.environ.get(var) else f"{var} (from {profile_path()})"
