"""W&B tracking: offline unless the user is logged in, secrets never in configs."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

SECRET_KEY = re.compile(r"(api[_-]?key|token|secret|password|passwd|credential)", re.I)


def redact(obj):
    """Drop values whose key looks like a secret, and mask a URL's credential (user:pw@, token=), at any depth."""
    from cluster.settings import redact_url

    if isinstance(obj, dict):
        return {k: ("<redacted>" if SECRET_KEY.search(str(k)) else redact(v)) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact(v) for v in obj]
    return redact_url(obj) if isinstance(obj, str) else obj


def logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def resolve_mode(spec_mode: str, warn=lambda msg: print(msg, file=sys.stderr)) -> str:
    """WANDB_MODE wins over the spec; online without credentials falls back to offline (no 90 s hang)."""
    mode = os.environ.get("WANDB_MODE") or spec_mode
    if mode == "dryrun":
        mode = "offline"
    if mode == "online" and not logged_in():
        warn("warning: W&B mode is online but no API key is set (WANDB_API_KEY or `wandb login`); logging offline")
        mode = "offline"
    return mode


def start(project: str, mode: str, home: Path, name: str, group: str, config: dict, job_type: str = "train",
          entity: str | None = None, tags: list[str] | None = None, run_id: str | None = None,
          requirements: bool = True):
    """Open a run whose files land in home/wandb/; returns the run (or None when disabled). With
    `run_id`, the run of that id is continued (`resume="allow"`).
    `requirements`: W&B lists every installed package with the run (requirements.txt), ~0.45 s of CPU per
    run here; a sweep's trials leave it to the study's summary run (the same environment)."""
    if mode == "disabled":
        return None
    import wandb

    skip_unstaged_launch_inputs(wandb)
    no_analytics_when_offline(mode)
    env_defaults(home)
    return wandb.init(
        project=project, entity=entity, mode=mode, dir=str(home), name=name, group=group, job_type=job_type,
        config=redact(config), tags=tags, reinit="create_new", id=run_id, resume="allow" if run_id else None,
        settings=wandb.Settings(console="off", x_disable_stats=True, x_disable_meta=True,
                                x_save_requirements=requirements),
    )


def warm_imports(mode: str) -> None:
    """What a process's first `wandb.init` imports (wandb, ~0.75 s after torch here), imported before a process that
    trains opens runs from a thread (there, the imports held the GIL through its first epochs); with what `start`
    sets up before a run of `mode`."""
    import wandb

    skip_unstaged_launch_inputs(wandb)
    no_analytics_when_offline(mode)


def no_analytics_when_offline(mode: str) -> None:
    """An offline run reaches no server. W&B's own product analytics (OpenTelemetry metrics and logs for W&B's
    servers) follows the process's global W&B settings, not the run's mode: a process whose runs were offline built
    OTLP exporters on its first run (~0.2 s of CPU, two export threads) and, a minute later, looked W&B's server up
    to post to it (a DNS query, seen with strace). Where the mode is offline, W&B's switch for the whole process
    (`opentelemetry_proxy.disable`) turns them off before the first run; an online run leaves them as W&B has them,
    and so does a W&B without that switch."""
    if mode != "offline":
        return
    try:
        from wandb.analytics.opentelemetry import opentelemetry_proxy
    except ImportError:
        return
    if callable(disable := getattr(opentelemetry_proxy, "disable", None)):
        disable()


STAGING = "wandb.sdk.launch.inputs.internal"  # where W&B Launch stages a job's inputs (wandb.launch.manage_*)


def skip_unstaged_launch_inputs(wandb) -> None:
    """Every process's first run applies the W&B Launch job inputs staged in that process, and imports
    wandb.sdk.launch for it (its agent and API client: ~0.45 s of CPU here) even when there are none. Inputs are
    staged only through STAGING, so while it is not loaded there are none to apply: W&B's step runs only once it is.
    Where W&B's Run has no such step (another W&B version), nothing changes."""
    apply = getattr(wandb.Run, "_detect_and_apply_job_inputs", None)
    if apply is None or getattr(apply, "skips_unstaged", False):
        return

    def apply_staged(run) -> None:
        if STAGING in sys.modules:
            apply(run)

    apply_staged.skips_unstaged = True
    wandb.Run._detect_and_apply_job_inputs = apply_staged


def env_defaults(home: Path) -> None:
    """W&B's directories under home/wandb, and quiet. A thread that opens a run while other threads of the
    process run (Ray's, in a run's driver) gets them set beforehand: setting the environment while another
    thread reads it is not safe in C."""
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_CACHE_DIR", str(home / "wandb" / ".cache"))
    os.environ.setdefault("WANDB_DATA_DIR", str(home / "wandb" / ".data"))
    os.environ.setdefault("WANDB_CONFIG_DIR", str(home / "wandb" / ".config"))
    (home / "wandb").mkdir(parents=True, exist_ok=True)


def run_dir(run) -> str | None:
    """The run's own directory (offline-run-.../ under home/wandb)."""
    if run is None:
        return None
    return str(Path(run.dir).parent)
