"""Start, inspect and stop the Serve application: foreground on any Ray, detached on a lasting one."""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import time
from pathlib import Path

from cluster.settings import home, load_settings

from ..errors import UserError
from ..runs.load import RUN_FILES
from .config import ServeOptions, check_options, clear_state, load_state, new_token, save_state


def resolve_run(run_dir: str | Path | None, study: str | None, storage: str | None = None) -> Path:
    """RUN_DIR as given, or the newest run directory registered for a sweep study's best trial."""
    if bool(run_dir) == bool(study):
        raise UserError("serve: give a RUN_DIR or --study NAME (one of them)")
    if run_dir:
        return Path(run_dir)
    found = []
    for meta in home().glob("*/*/sweep.json"):
        try:
            info = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        if info.get("study") == study and (storage is None or _same_storage(info.get("storage"), storage)):
            found.append(meta.parent)
    if not found:
        raise UserError(f"--study: no run directory under {home()} was registered for study {study!r}; "
                        "run `conductor sweep SPEC --study NAME` first, or pass RUN_DIR")
    return max(found, key=lambda p: p.name)


def _same_storage(saved: str | None, given: str) -> bool:
    from cluster.settings import redact_url

    return saved == redact_url(given)


def check_run(run_dir: Path) -> dict:
    """Refuse an incomplete run, or one whose model.pt does not load with weights_only=True."""
    if not run_dir.is_dir():
        raise UserError(f"RUN_DIR: {str(run_dir)!r} is not a directory")
    missing = [f for f in RUN_FILES if not (run_dir / f).is_file()]
    if missing:
        raise UserError(f"RUN_DIR: {str(run_dir)!r} is not a complete run directory (missing {missing})")
    from .scoring import Scorer

    try:
        return Scorer(run_dir).schema
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - a corrupt or foreign checkpoint
        raise UserError(f"RUN_DIR: {str(run_dir / 'model.pt')!r} does not load with weights_only=True "
                        f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})") from None


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _quiet() -> None:
    for name in ("ray.serve", "ray", "uvicorn", "uvicorn.error"):
        logging.getLogger(name).setLevel(logging.WARNING)


def start(run_dir: Path, opts: ServeOptions, log=print) -> dict:
    """Deploy the run; returns the state (url, run, token file). The caller waits or detaches."""
    check_options(opts)
    settings = load_settings()
    if opts.detach and not settings.ray_address:
        raise UserError("--detach: needs a Ray that outlives this command; start one with `conductor cluster up` "
                        "(or set CONDUCTOR_RAY_ADDRESS), or serve in the foreground without --detach")
    schema = check_run(run_dir)
    running = load_state()
    if running and _alive(running):
        raise UserError(f"serve: {running['run_dir']} is already served at {running['url']}; "
                        "`conductor serve down` first")
    if not _port_free(opts.host, opts.port):
        raise UserError(f"--port: {opts.host}:{opts.port} is in use; choose another --port")
    token = None if opts.no_auth else new_token()
    log(f"serving {run_dir}: starting Ray Serve on {opts.url} ...")
    from cluster.connect import ensure_ray

    ensure_ray(settings)
    _quiet()
    from ray import serve

    from .api import digest
    from .deployment import APP, application

    serve.start(proxy_location="HeadOnly", http_options={"host": opts.host, "port": opts.port},
                logging_config={"log_level": "WARNING", "enable_access_log": False})
    app = application(str(run_dir.resolve()), digest(token) if token else None, opts.limits(), opts.replicas,
                      opts.autoscale_max, opts.cpus_per_replica)
    t0 = time.monotonic()
    try:
        serve.run(app, name=APP, route_prefix="/")
    except BaseException:  # Ctrl-C or a replica that cannot start: leave nothing deployed
        stop_serve(embedded=not settings.ray_address)
        raise
    state = {"url": opts.url, "run_dir": str(run_dir.resolve()), "run_id": run_dir.name, "task": schema["task"],
             "mode": "detached" if opts.detach else "foreground", "pid": os.getpid(), "pid_started": _started(),
             "auth": token is not None,
             "ray_address": settings.ray_address, "replicas": opts.replicas, "started": time.time(),
             "deploy_s": round(time.monotonic() - t0, 1)}
    save_state(state)
    return state


def _started(pid: int | None = None) -> float:
    import psutil

    return psutil.Process(pid).create_time()


def _alive(state: dict) -> bool:
    """A detached app lives on its Ray; a foreground one as long as its own command (same pid, same start)."""
    if state.get("mode") == "detached":
        return True
    try:
        return abs(_started(int(state["pid"])) - float(state["pid_started"])) < 1
    except Exception:  # noqa: BLE001 - gone, or a stranger's pid now
        return False


def wait_foreground(should_stop=lambda: False) -> None:
    """Block until Ctrl-C or SIGTERM (or `should_stop()`), then remove the app (and the embedded Ray)."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        while not should_stop():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop_serve(embedded=not load_settings().ray_address)
        clear_state()


def _raise_interrupt(*_):
    raise KeyboardInterrupt


def stop_serve(embedded: bool = False) -> None:
    """Delete the app; then Serve itself when no other app is left, or the whole embedded Ray."""
    from ray import serve

    from cluster.connect import shutdown_ray

    from .deployment import APP

    try:
        serve.delete(APP)
        if embedded:
            shutdown_ray()  # takes Serve's controller and proxy with it
        elif not serve.status().applications:
            serve.shutdown()
    except Exception:  # noqa: BLE001 - Ray already gone: nothing left to remove
        pass


def status() -> dict | None:
    """The served app's state file, with what Serve says of it (apps, replicas) and whether it answers."""
    state = load_state()
    if state is None:
        return None
    from cluster.local import answers_http

    state["answers"] = answers_http(f"{state['url']}/health")
    if state["mode"] == "detached":
        state["apps"] = _serve_apps()
    elif not _alive(state):
        state["stale"] = True
    return state


def _serve_apps() -> dict:
    from cluster.connect import ensure_ray

    ensure_ray(load_settings())
    _quiet()
    from ray import serve

    apps = {}
    for name, app in serve.status().applications.items():
        apps[name] = {"status": str(app.status.value if hasattr(app.status, "value") else app.status),
                      "deployments": {d: {str(getattr(k, "value", k)): v for k, v in dep.replica_states.items()}
                                      for d, dep in app.deployments.items()}}
    return apps


def down(log=print) -> bool:
    """Remove the served app: a detached one from its Ray, a foreground one by signalling its command."""
    state = load_state()
    if state is None:
        log("nothing is being served")
        return False
    if state["mode"] == "detached":
        from cluster.connect import ensure_ray

        ensure_ray(load_settings())
        _quiet()
        stop_serve()
    elif _alive(state):
        os.kill(int(state["pid"]), signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _alive(state) and time.monotonic() < deadline:
            time.sleep(0.3)
    clear_state()
    log(f"stopped serving {state['run_dir']} at {state['url']}")
    return True
