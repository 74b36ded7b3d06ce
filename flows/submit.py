"""`conductor submit`: a Prefect deployment of the flow in the cluster's work pool, and one flow run of it.

The spec travels as the run's validated parameter; the Optuna storage URL and any key stay in the
worker's environment (never a Prefect parameter). So does a credential of data.source: a source that
carries one (user:pw@, token=, a signature) is refused here, not handed to the worker in the spec.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
import time
from pathlib import Path

from cluster.connect import quiet_env

quiet_env()

from prefect.client.orchestration import get_client  # noqa: E402
from prefect.deployments import run_deployment  # noqa: E402

from tasks.data.sources import refuse_credentials  # noqa: E402
from tasks.errors import UserError  # noqa: E402
from tasks.spec import Spec  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# flows/entrypoints.py re-exports the flows from their packages: were the entrypoint flows/pipeline.py
# itself, its tasks would belong to a top-level module `pipeline` that Dask cannot unpickle.
FLOWS = {"run": ("flows/entrypoints.py:pipeline", "conductor-run"),
         "sweep": ("flows/entrypoints.py:sweep_flow", "conductor-sweep")}
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def deploy(kind: str, pool: str) -> str:
    """Register (or update) the deployment that runs `kind` from this checkout; returns flow/deployment."""
    from prefect import Flow

    entrypoint, flow_name = FLOWS[kind]
    flow = Flow.from_source(source=str(ROOT), entrypoint=entrypoint)
    with contextlib.redirect_stdout(io.StringIO()):  # Prefect prints a deployments table
        flow.deploy(name=flow_name, work_pool_name=pool, job_variables={"working_dir": str(ROOT)},
                    print_next_steps=False, ignore_warnings=True)
    return f"{flow_name}/{flow_name}"


def submit(spec: Spec, kind: str, profile: dict, wait: bool, log=print, poll_s: float = 2.0) -> dict:
    if kind not in FLOWS:
        raise UserError(f"--flow: {kind!r} is not a flow; choose from {sorted(FLOWS)}")
    refuse_credentials(spec.data.source)
    if kind == "sweep":
        from tasks.sweep import check_space

        check_space(spec)
    name = deploy(kind, profile.get("work_pool", "conductor"))
    run = run_deployment(name=name, parameters={"spec": spec.model_dump(mode="json")}, timeout=0)
    ui = f"{profile.get('ui_url', '')}/runs/flow-run/{run.id}"
    log(f"submitted {kind} of {spec.name}: flow run {run.name} ({run.id})\n  {ui}")
    out = {"name": spec.name, "flow": kind, "flow_run_id": str(run.id), "flow_run_name": run.name, "ui_url": ui,
           "state": run.state.type.value if run.state else "SCHEDULED"}
    if not wait:
        return out
    t0, last = time.monotonic(), None
    with get_client(sync_client=True) as client:
        while True:
            fr = client.read_flow_run(run.id)
            state = fr.state.type.value if fr.state else "PENDING"
            if state != last:
                log(f"  {time.monotonic() - t0:6.1f}s  {state}")
                last = state
            if state in FINAL:
                break
            time.sleep(poll_s)
        out.update(state=state, message=fr.state.message if fr.state else "", wait_s=time.monotonic() - t0)
        out["summary"] = run_summary(client, run.id)
    return out


def run_summary(client, flow_run_id) -> dict | None:
    """The JSON summary the flow published as an artifact (metrics, run_dir, ...)."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    for art in arts:
        if not isinstance(art.data, str):
            continue
        m = re.search(r"```json\n(.*?)\n```", art.data, re.S)
        if m:
            return json.loads(m.group(1))
    return None
