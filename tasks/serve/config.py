"""Options of `conductor serve`, checked before anything starts; the token and state files."""
from __future__ import annotations

import ipaddress
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from cluster.settings import home

from ..errors import UserError

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
TOKEN_ENV = "CONDUCTOR_SERVE_TOKEN"


@dataclass(frozen=True)
class Limits:
    """What a replica allows and how it batches; stated defaults, each a `conductor serve` option."""

    max_batch_size: int = 32
    batch_wait_ms: float = 1.0
    max_body_bytes: int = 10 * 2**20
    max_rows: int = 10_000


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    replicas: int = 1
    autoscale_max: int | None = None
    max_batch_size: int = Limits.max_batch_size
    batch_wait_ms: float = Limits.batch_wait_ms
    max_body_mb: float = Limits.max_body_bytes / 2**20
    max_rows: int = Limits.max_rows
    cpus_per_replica: float = 0.25
    no_auth: bool = False
    detach: bool = False

    def limits(self) -> Limits:
        return Limits(max_batch_size=self.max_batch_size, batch_wait_ms=self.batch_wait_ms,
                      max_body_bytes=int(self.max_body_mb * 2**20), max_rows=self.max_rows)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_options(o: ServeOptions) -> None:
    """Every option problem as one UserError naming the option."""
    if o.no_auth and not is_loopback(o.host):
        raise UserError(f"--no-auth: only allowed on a loopback host (127.0.0.1, ::1); --host is {o.host!r}. "
                        f"Keep the token (set {TOKEN_ENV} to choose it)")
    if not 1 <= o.port <= 65535:
        raise UserError(f"--port: {o.port} is not a TCP port (1-65535)")
    checks = {"--replicas": o.replicas >= 1, "--max-batch-size": 1 <= o.max_batch_size <= 1024,
              "--batch-wait-ms": 0 <= o.batch_wait_ms <= 1000, "--max-body-mb": 0 < o.max_body_mb <= 1024,
              "--max-rows": o.max_rows >= 1, "--cpus-per-replica": 0 < o.cpus_per_replica <= 64,
              "--autoscale-max": o.autoscale_max is None or o.autoscale_max >= o.replicas}
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        allowed = {"--replicas": ">= 1", "--max-batch-size": "1..1024", "--batch-wait-ms": "0..1000",
                   "--max-body-mb": "(0, 1024]", "--max-rows": ">= 1", "--cpus-per-replica": "(0, 64]",
                   "--autoscale-max": ">= --replicas"}
        raise UserError("; ".join(f"{k}: must be {allowed[k]}" for k in bad))


def serve_dir() -> Path:
    return home() / "serve"


def token_path() -> Path:
    return serve_dir() / "token"


def state_path() -> Path:
    return serve_dir() / "app.json"


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (0600 from the first byte), replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(3)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def new_token() -> str:
    """CONDUCTOR_SERVE_TOKEN, or a fresh random one; either way saved to the 0600 token file."""
    token = os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(32)
    if len(token) < 16:
        raise UserError(f"{TOKEN_ENV}: at least 16 characters, please (a random one is made when unset)")
    write_private(token_path(), token + "\n")
    return token


def save_state(state: dict) -> None:
    write_private(state_path(), json.dumps(state, indent=2))


def load_state() -> dict | None:
    try:
        return json.loads(state_path().read_text())
    except (OSError, ValueError):
        return None


def clear_state() -> None:
    state_path().unlink(missing_ok=True)
    token_path().unlink(missing_ok=True)


def options_dict(o: ServeOptions) -> dict:
    return asdict(o)
