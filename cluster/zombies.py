"""A flow run whose process died (its Prefect worker killed, its machine gone) stays RUNNING forever in
Prefect unless something notices: flow runs started by the cluster's worker send a heartbeat event every
HEARTBEAT_S (PREFECT_FLOWS_HEARTBEAT_FREQUENCY), and an automation on the server marks a run CRASHED when
no heartbeat (and no final state) came for SILENCE_S — Prefect's own recipe for zombie flow runs
(docs.prefect.io/v3/advanced/detect-zombie-flows). So `submit --wait` ends, non-zero, within 2 minutes."""
from __future__ import annotations

import json
import os
import urllib.request

HEARTBEAT_S = 30  # Prefect's floor
SILENCE_S = 75  # two and a half heartbeats
NAME = "conductor: crash silent flow runs"


def heartbeat_env() -> dict[str, str]:
    """What the worker passes on to each flow run it starts."""
    return {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S)}


def automation() -> dict:
    """The automation as the server's REST API takes it (built with Prefect's own models)."""
    from datetime import timedelta

    from .connect import home_env

    # before Prefect loads its settings, which create PREFECT_HOME: `cluster up` made ~/.prefect here, and every
    # later command then took it for the user's own Prefect set-up and kept its flow runs there, in any home
    for k, v in home_env().items():
        os.environ.setdefault(k, v)
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    trigger = EventTrigger(
        after={"prefect.flow-run.heartbeat"},
        expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"},
        match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
        for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1,
        within=timedelta(seconds=SILENCE_S))
    action = ChangeFlowRunState(state=StateType.CRASHED,
                                message=f"no heartbeat for {SILENCE_S} s: the flow run's process died "
                                        "(its worker or machine was lost)")
    core = AutomationCore(name=NAME, description="marks a flow run CRASHED when its heartbeats stop",
                          trigger=trigger, actions=[action])
    return json.loads(core.model_dump_json())


def install(api_url: str, headers: dict[str, str]) -> None:
    """Create the automation on the cluster's server (once per `cluster up`: the database is new)."""
    body = json.dumps(automation()).encode()
    req = urllib.request.Request(f"{api_url}/automations/", data=body, method="POST",
                                 headers={"Content-Type": "application/json", **headers})
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - the cluster's own server
        if r.status not in (200, 201):
            raise RuntimeError(f"Prefect refused the zombie-run automation: HTTP {r.status}")
