"""Where things run: the embedded default, or a cluster named by the environment or a profile file.

Order of precedence: environment variables, then the profile written by `conductor cluster up`
(runs/cluster/profile.json), then the embedded default (nothing to start by hand).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

ENV = {
    "ray_address": "CONDUCTOR_RAY_ADDRESS",
    "dask_address": "CONDUCTOR_DASK_ADDRESS",
    "prefect_api_url": "PREFECT_API_URL",
    "optuna_storage": "CONDUCTOR_OPTUNA_STORAGE",
}


class SettingsError(ValueError):
    """An address, URL or file a user gave that is wrong or unreachable; the message names it.
    The CLI prints it as one `error: ...` line with exit code 2, like tasks.errors.UserError."""


def home() -> Path:
    """Root of everything conductor writes: runs/ in the working directory, or CONDUCTOR_HOME."""
    return Path(os.environ.get("CONDUCTOR_HOME", "runs")).absolute()


def profile_path() -> Path:
    return home() / "cluster" / "profile.json"


@dataclass(frozen=True)
class Settings:
    home: Path
    ray_address: str | None = None
    dask_address: str | None = None
    prefect_api_url: str | None = None
    optuna_storage: str | None = None

    def default_storage(self) -> str:
        return self.optuna_storage or f"sqlite:///{self.home / 'optuna.db'}"


def load_settings() -> Settings:
    values: dict[str, str | None] = {}
    prof = profile_path()
    if prof.is_file():
        data = json.loads(prof.read_text())
        values.update({k: data.get(k) for k in ENV})
    for key, var in ENV.items():
        if os.environ.get(var):
            values[key] = os.environ[var]
    return Settings(home=home(), **values)


def redact_url(url: str) -> str:
    """postgresql://user:secret@host/db → postgresql://user:***@host/db, for logs and summaries."""
    return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", url)
