"""Where things run: the embedded default, or a cluster named by the environment or a profile file.

Order of precedence: environment variables, then the profile written by `conductor cluster up`
(runs/cluster/profile.json), then the embedded default (nothing to start by hand). The profile
holds URLs masked (it is shown and printed); a credential one of them carries lives only in
runs/cluster/secrets.json, and both files are 0600.
"""
from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

ENV = {
    "ray_address": "CONDUCTOR_RAY_ADDRESS",
    "dask_address": "CONDUCTOR_DASK_ADDRESS",
    "prefect_api_url": "PREFECT_API_URL",
    "optuna_storage": "CONDUCTOR_OPTUNA_STORAGE",
    # what a client shows to be let in: Prefect's auth string, the folder of the Dask TLS files, Ray's token file
    "prefect_api_auth_string": "PREFECT_API_AUTH_STRING",
    "dask_tls": "CONDUCTOR_DASK_TLS",
    "ray_auth_token_path": "RAY_AUTH_TOKEN_PATH",
}
# each credential belongs to one address: a profile's credential is never sent to another service
CREDENTIAL_OF = {"prefect_api_auth_string": "prefect_api_url", "dask_tls": "dask_address",
                 "ray_auth_token_path": "ray_address"}
ALWAYS_SECRET = {"prefect_api_auth_string"}  # masked in profile.json whatever it looks like


class SettingsError(ValueError):
    """An address, URL or file a user gave that is wrong or unreachable; the message names it.
    The CLI prints it as one `error: ...` line with exit code 2, like tasks.errors.UserError."""


def home() -> Path:
    """Root of everything conductor writes: runs/ in the working directory, or CONDUCTOR_HOME."""
    return Path(os.environ.get("CONDUCTOR_HOME", "runs")).absolute()


def profile_path() -> Path:
    return home() / "cluster" / "profile.json"


def secrets_path() -> Path:
    """The credentialed URLs of the profile (mode 0600): profile.json itself only ever holds masked ones."""
    return home() / "cluster" / "secrets.json"


@dataclass(frozen=True)
class Settings:
    home: Path
    ray_address: str | None = None
    dask_address: str | None = None
    prefect_api_url: str | None = None
    optuna_storage: str | None = None
    prefect_api_auth_string: str | None = field(default=None, repr=False)
    dask_tls: str | None = None
    ray_auth_token_path: str | None = None

    def default_storage(self) -> str:
        return self.optuna_storage or f"sqlite:///{self.home / 'optuna.db'}"


def load_settings() -> Settings:
    """Environment first, then the cluster profile with its secrets put back, then the defaults."""
    values: dict[str, str | None] = {}
    prof = read_profile()
    if prof:
        values.update({k: prof.get(k) for k in ENV})
        values.update(_read_secrets([k for k in prof.get("secret_keys", []) if not os.environ.get(ENV[k])]))
    for cred, addr in CREDENTIAL_OF.items():  # the environment points elsewhere: the profile's key stays home
        if os.environ.get(ENV[addr]) not in (None, "", values.get(addr)):
            values[cred] = None
    for key, var in ENV.items():
        if os.environ.get(var):
            values[key] = os.environ[var]
    return Settings(home=home(), **values)


def client_env(settings: Settings | None = None) -> dict[str, str]:
    """The variables Prefect and Ray read their cluster credentials from, for a process about to import them:
    the auth string of the cluster's Prefect API and the file of its Ray token ({} with no cluster)."""
    try:
        settings = settings or load_settings()
    except SettingsError:
        return {}  # a corrupt profile: the command says so itself
    pairs = (("PREFECT_API_AUTH_STRING", settings.prefect_api_auth_string),
             ("RAY_AUTH_TOKEN_PATH", settings.ray_auth_token_path))
    return {var: value for var, value in pairs if value}


def _corrupt(path: Path, why: str) -> SettingsError:
    return SettingsError(f"{path}: not a cluster profile ({why}); `conductor cluster down` removes it "
                         "(then `conductor cluster up` writes a new one)")


def read_profile() -> dict:
    """profile.json as written by `cluster up` (every URL masked), {} when there is none."""
    path = profile_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as e:
        raise _corrupt(path, f"unreadable: {type(e).__name__}") from None
    except ValueError as e:
        raise _corrupt(path, f"not JSON: {str(e)[:80]}") from None
    if not isinstance(data, dict):
        raise _corrupt(path, f"a JSON {type(data).__name__}, not an object")
    bad = [k for k in ENV if not isinstance(data.get(k), str | None)]
    keys = data.get("secret_keys", [])
    if bad or not isinstance(keys, list) or not set(keys) <= set(ENV):
        raise _corrupt(path, f"wrong shape: {bad or ['secret_keys']} are not what `cluster up` writes")
    return data


def _read_secrets(keys: list[str]) -> dict[str, str]:
    """The real values of `keys`, which the profile holds only masked."""
    if not keys:
        return {}
    path = secrets_path()
    try:
        data = json.loads(path.read_text())
        return {k: str(data[k]) for k in keys}
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise SettingsError(f"{path}: cannot read the credentials of the cluster profile ({type(e).__name__}); "
                            f"set {', '.join(ENV[k] for k in keys)}, or run `conductor cluster down` and "
                            "`conductor cluster up` again") from None


def save_profile(profile: dict) -> dict:
    """Write profile.json with every URL masked and, where masking hid a credential, the real value to
    secrets.json; both 0600. Returns the masked profile: the only one to print."""
    masked = {k: ("***" if k in ALWAYS_SECRET else redact_url(v)) if isinstance(v, str) else v
              for k, v in profile.items()}
    hidden = {k: v for k, v in profile.items() if k in ENV and masked[k] != v}
    if hidden:  # secrets first: a reader never finds a profile naming secrets that are not there yet
        write_private(secrets_path(), json.dumps(hidden))
    else:
        secrets_path().unlink(missing_ok=True)
    write_private(profile_path(), json.dumps({**masked, "secret_keys": sorted(hidden)}, indent=2))
    return masked


def remove_profile() -> None:
    profile_path().unlink(missing_ok=True)
    secrets_path().unlink(missing_ok=True)


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read: created 0600 (never readable by others, not even for an
    instant) under a temporary name, then renamed over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(3)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# credentials a URL may carry in its query: password=, pwd=, token=, api_key=, access_token=, client_secret=,
# and a signed URL's signature and credential: X-Amz-Signature=, X-Amz-Credential=, X-Goog-Signature=, sig= (SAS), ...
_SECRET_PARAM = re.compile(r"(?i)((?:^|[?&;])[\w.-]*?(?:password|passwd|pwd|token|secret|api[_-]?key|signature|sig"
                           r"|credential)=)[^&;#\s]*")
# user:password@ (or :password@) after the scheme; greedy to the last '@', so a password holding '@', '/'
# or '?' is masked whole (at worst a little too much is masked, never too little)
_USERINFO = re.compile(r"(://[^:/?#@\s]*:)\S*@")


def redact_url(url: str) -> str:
    """postgresql://user:secret@host/db → postgresql://user:***@host/db; secret query parameters → ***.
    For everything that is printed, logged or written to profile.json."""
    return _SECRET_PARAM.sub(r"\1***", _USERINFO.sub(r"\1***@", url))
