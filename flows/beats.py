"""Heartbeats of the flow runs the CLI starts. A cluster's Prefect API (cluster/zombies.py) marks a flow run
CRASHED after SILENCE_S without a heartbeat event, and Prefect's default is one every 180 s: a `conductor run`
of 125 s against `cluster up` was marked "Crashed: no heartbeat for 75 s" 77 s in, while it trained (then
Completed at its end). So the CLI's flows beat every HEARTBEAT_S there, and not at all against the command's
own API, which dies with the command and which nothing watches.

The beats come from a thread of ours, not Prefect's: Prefect's sleeps in 1 s steps and is joined when the flow
ends, 0.5-0.9 s at the end of every flow here. Flow runs that a cluster's worker starts (`submit`) keep
Prefect's own, every HEARTBEAT_S (cluster/zombies.py heartbeat_env)."""
from __future__ import annotations

import contextlib
import contextvars
import threading

from cluster.zombies import HEARTBEAT_S

BEAT_EVERY: contextvars.ContextVar[float | None] = contextvars.ContextVar("conductor_beat_every", default=None)


@contextlib.contextmanager
def heartbeats():
    """Around a flow call: Prefect's heartbeat thread off, ours on (every HEARTBEAT_S) where an API watches."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.engines import PrefectServer

    token = BEAT_EVERY.set(None if PrefectServer.serving() else HEARTBEAT_S)
    try:
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield
    finally:
        BEAT_EVERY.reset(token)


@contextlib.contextmanager
def beating():
    """Inside a flow run: the heartbeat events heartbeats() asked for, from a thread that stops at once."""
    every = BEAT_EVERY.get()
    if not every:
        yield
        return
    from prefect.events import emit_event
    from prefect.runtime import flow_run

    resource = {"prefect.resource.id": f"prefect.flow-run.{flow_run.id}", "prefect.resource.name": flow_run.name or ""}
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                emit_event(event="prefect.flow-run.heartbeat", resource=resource)
            except Exception:  # noqa: BLE001 - a missed beat is Prefect's to notice, never the flow's failure
                pass
            if stop.wait(every):
                return

    # the thread sees this context's Prefect settings (the API URL), as Prefect's own heartbeat thread does
    thread = threading.Thread(target=contextvars.copy_context().run, args=(beat,), daemon=True, name="flow-heartbeat")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=2)
