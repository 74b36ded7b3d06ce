"""repro.json: what it takes to run a run again. The commits (and dirty flags) of the spec's repository and
of conductor itself, the spec repository's uncommitted changes as repro.patch, package versions, the
command line, host, seeds and the data fingerprint (the preprocessing cache key).

The CLI builds the record, where sys.argv and the spec file are known, and leaves it under
CONDUCTOR_HOME/.repro/<run-id>.json; the flow that registers the run moves it into the run directory
(never a Prefect parameter). A flow started without one (`conductor submit`) records what it can.
Every string passes through the project's masking: URL credentials, secret-named keys, and in the
patch and command line any `name=value` whose name looks like a secret.
"""
from __future__ import annotations

import json
import os
import platform
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from cluster.settings import redact_url, write_private

from ..tracking import redact

CONDUCTOR_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("torch", "ray", "prefect", "dask", "optuna", "wandb", "conductor")
MAX_PATCH = 1 << 20  # bytes of `git diff HEAD` kept in repro.patch; the rest is cut, and the record says so
READ_LIMIT = 8 * MAX_PATCH  # a diff of giant tracked files is never held whole in memory
PENDING = ".repro"
NO_GIT = {"repo": None, "commit": None, "dirty": None}
GIT_REDIRECTS = {"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR", "GIT_PREFIX"}
# a name that holds a secret: api_key, WANDB_API_KEY, key, token, client_secret, password, pwd, credential
SECRET_NAME = re.compile(r"(?i)(token(?!iz)|secret|passw|pwd|credential|(?:^|[_.-]|api|access|private)key(?:[_-]?id)?$)")
# name = value, name: value, "name": "value", --name=value ("==" is a comparison, not an assignment); a quoted
# value runs to its closing quote, an unquoted one over its words to the line's end, a comma, ; ) or #
ASSIGN = re.compile(r"""(?P<name>[A-Za-z_][\w.-]*)(?P<q1>["']?)(?P<sep>\s*(?:=(?!=)|:)\s*)(?P<q2>["'])?"""
                    r"""(?P<value>(?(q2)[^"'\n]*|[^\s"',;)#]+(?:[ \t]+[^\s"',;)#]+)*))""")


# an HTTP credential (Authorization: Bearer abc, token abc) and a URL whose user part is a token (https://ghp_x@host)
SCHEME_TOKEN = re.compile(r"(?i)\b(bearer|token|basic)(\s+)[A-Za-z0-9._~+/=-]{6,}")
URL_TOKEN_USER = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/@:\s]{16,})@")
# an option that takes a secret as its next word, written on one line: --password abc, --token=abc handled above
OPTION_SECRET = re.compile(r"(?i)(--?[\w-]*(?:token|secret|passw|pwd|credential|key)[\w-]*)(\s+)(?!-)(\S+)")


def mask_line(line: str) -> str:
    """A line with URL credentials masked and the value of every secret-named assignment replaced by ***."""
    def one(m: re.Match) -> str:
        if not SECRET_NAME.search(m["name"]):
            return m[0]
        return f"{m['name']}{m['q1']}{m['sep']}{m['q2'] or ''}***"

    line = SCHEME_TOKEN.sub(r"\1\2***", redact_url(line))
    line = URL_TOKEN_USER.sub(r"\1***@", line)
    line = OPTION_SECRET.sub(r"\1\2***", line)
    return ASSIGN.sub(one, line)


def mask_command(argv: list[str]) -> list[str]:
    """sys.argv as it may be stored: `--storage postgresql://u:pw@h/db` → `u:***@`, `--token X` → `***`."""
    out, hide_next = [], False
    for arg in argv:
        out.append("***" if hide_next else mask_line(arg))
        hide_next = arg.startswith("-") and "=" not in arg and bool(SECRET_NAME.search(arg.lstrip("-")))
    return out


def _git_env() -> dict:
    """The environment without variables that point git at another repository (a hook's GIT_DIR)."""
    return {k: v for k, v in os.environ.items() if k not in GIT_REDIRECTS}


def _git(directory: str | Path, *args: str) -> str | None:
    """git's output in `directory`, or None when git is missing, fails, or it is no repository."""
    try:
        done = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, timeout=20, env=_git_env())
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.decode(errors="replace").strip() if done.returncode == 0 else None


def git_state(directory: str | Path) -> dict:
    """{"repo", "commit", "dirty"} of the repository holding `directory`; nulls outside one (or before its
    first commit: commit null). Dirty: tracked files differ from HEAD (untracked files do not count)."""
    root = _git(directory, "rev-parse", "--show-toplevel") if Path(directory).is_dir() else None
    if root is None:
        return dict(NO_GIT)
    commit = _git(directory, "rev-parse", "--verify", "-q", "HEAD")
    status = _git(directory, "status", "--porcelain", "--untracked-files=no")
    return {"repo": root, "commit": commit or None, "dirty": bool(status) if status is not None else None}


def uncommitted_patch(repo: str | Path) -> tuple[str, dict]:
    """`git diff HEAD` of `repo`, masked and cut at a line end to MAX_PATCH bytes; and what the record says of it."""
    try:
        proc = subprocess.Popen(["git", "-C", str(repo), "diff", "HEAD", "--no-color", "--no-ext-diff"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_git_env())
    except OSError:
        return "", {"file": None, "bytes": 0, "total_bytes": 0, "truncated": False}
    raw = proc.stdout.read(READ_LIMIT + 1)
    proc.kill()
    proc.wait()
    proc.stdout.close()
    text = "".join(mask_line(line) for line in raw[:READ_LIMIT].decode(errors="replace").splitlines(keepends=True))
    data = text.encode()
    truncated = len(data) > MAX_PATCH or len(raw) > READ_LIMIT
    if len(data) > MAX_PATCH:
        data = data[:data.rfind(b"\n", 0, MAX_PATCH) + 1]
    info = {"file": "repro.patch" if data else None, "bytes": len(data),
            "total_bytes": None if len(raw) > READ_LIMIT else len(text.encode()), "truncated": truncated}
    return data.decode(errors="ignore"), info


def versions() -> dict:
    """python and the engines' versions from package metadata (nothing heavy is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def seeds(spec) -> dict:
    return {"train.seed": spec.train.seed, "data.split.seed": spec.data.split.seed}


def build_record(spec_path: str | Path | None, spec, argv: list[str] | None = None, rerun_of: str | None = None,
                 started: float | None = None, warn=lambda m: print(f"warning: {m}", file=sys.stderr)) -> tuple[dict, str]:
    """The record and the patch text, built where the command runs (`started`: its start, epoch seconds);
    `spec_path` None: nothing known of the command (a flow started by `conductor submit`), so neither it
    nor the spec's repository is recorded."""
    spec_git, patch, info = dict(NO_GIT), "", None
    if spec_path is not None:
        spec_git = git_state(Path(spec_path).resolve().parent)
        if spec_git["commit"] and spec_git["dirty"]:
            patch, info = uncommitted_patch(spec_git["repo"])
            if info["truncated"]:
                total = f"{info['total_bytes'] / 2**20:.1f} MiB" if info["total_bytes"] else f"over {READ_LIMIT >> 20} MiB"
                warn(f"repro: the uncommitted changes of {spec_git['repo']} are {total}; repro.patch keeps the "
                     f"first {info['bytes']} bytes (MAX_PATCH {MAX_PATCH >> 20} MiB)")
    record = {
        "version": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "started": started or time.time(),
        "recorded_by": "cli" if spec_path is not None else "flow",
        "command": mask_command(sys.argv if argv is None else argv) if spec_path is not None else None,
        "cwd": os.getcwd(), "host": socket.gethostname(),
        "spec_file": str(Path(spec_path).resolve()) if spec_path is not None else None,
        "git": {"spec": {**spec_git, "patch": info}, "conductor": git_state(CONDUCTOR_ROOT)},
        "versions": versions(), "seeds": seeds(spec), "data_fingerprint": None, "rerun_of": rerun_of,
    }
    return redact(record), patch


def pending_path(home: Path, run_id: str) -> Path:
    return Path(home) / PENDING / f"{run_id}.json"


def save_pending(home: Path, run_id: str, record: dict, patch: str) -> Path:
    """Leave the record (and patch) for the flow that registers run `run_id`; owner-only files."""
    path = pending_path(home, run_id)
    for attempt in range(3):  # another command's discard_pending may remove the empty folder in between
        try:
            write_private(path, json.dumps(record))
            if patch:
                write_private(path.with_suffix(".patch"), patch)
            return path
        except FileNotFoundError:
            if attempt == 2:
                raise
    return path


def discard_pending(home: Path, run_id: str) -> None:
    path = pending_path(home, run_id)
    path.unlink(missing_ok=True)
    path.with_suffix(".patch").unlink(missing_ok=True)
    try:  # a refused run leaves nothing under the home, not even the empty folder
        path.parent.rmdir()
    except OSError:  # another command's record is waiting there, or it is gone already
        pass


def _pending(home: Path, run_id: str) -> tuple[dict | None, str]:
    path = pending_path(home, run_id)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None, ""
    patch = path.with_suffix(".patch")
    return record, patch.read_text() if patch.is_file() else ""


def current_record(home: Path, run_id: str, spec, prep=None) -> tuple[dict, str]:
    """The CLI's record for `run_id` (or, without one, what this process can tell), with the data
    fingerprint of the fitted preprocessor filled in."""
    record, patch = _pending(home, run_id)
    if record is None:
        record, patch = build_record(None, spec)
    if prep is not None and getattr(prep, "fingerprint", ""):
        record["data_fingerprint"] = prep.fingerprint
    return record, patch


def attach_repro(stage: Path, home: Path, run_id: str, spec, prep, flow_seconds: float | None = None) -> dict:
    """Write repro.json (and repro.patch) into the staged run directory; the pending files go. duration_s
    runs from the command's start when the CLI recorded it, else from the flow's."""
    record, patch = current_record(home, run_id, spec, prep)
    started = record.get("started") if record.get("recorded_by") == "cli" else None
    record["duration_s"] = time.time() - started if isinstance(started, int | float) else flow_seconds
    record["registered"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_private(Path(stage) / "repro.json", json.dumps(redact(record), indent=2))  # 0600: a patch may say much
    if patch:
        write_private(Path(stage) / "repro.patch", patch)
    discard_pending(home, run_id)
    return record
