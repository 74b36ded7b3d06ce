"""A flow run's Logs tab tells the run's story: the Prefect API holds, at INFO, the per-epoch progress lines,
the summary, and Prefect's own state lines — and none of Ray's or Dask's own log lines."""
from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.integration


def flow_run_logs(flow_run_id: str, want: str, timeout: float = 20.0) -> list[str]:
    """The log messages the API stored for a flow run (its tasks' included), once one containing `want` arrived:
    Prefect ships logs in the background."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        messages = [log.message for log in logs]
        if any(want in m for m in messages) or time.monotonic() > deadline:
            return messages
        time.sleep(0.5)


def test_the_flow_run_log_carries_epochs_and_summary_without_engine_noise(smoke_run):
    messages = flow_run_logs(smoke_run["flow_run_id"], "summary of churn-smoke")
    text = "\n".join(messages)
    epochs = [m for m in messages if m.startswith("[churn-smoke] epoch")]
    assert [m.split()[2] for m in epochs] == ["1/3", "2/3", "3/3"], text[:2000]
    assert all("val/loss" in m and "train/loss" in m for m in epochs)
    assert "summary of churn-smoke: run directory " + smoke_run["run_dir"] in text
    assert f"test/accuracy {smoke_run['metrics']['test/accuracy']:.4f}" in text
    assert "Finished in state Completed()" in text  # Prefect's own INFO lines are back too
    for noise in ("raylet", "ray.train", "ray.data", "distributed.worker", "distributed.scheduler", "Dataset"):
        assert noise not in text, noise
