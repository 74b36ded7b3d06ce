"""What both flows share: quiet Prefect consoles, the Dask preprocessing task, the published summary."""
from __future__ import annotations

import functools
import json
import logging
import re
from pathlib import Path

from cluster.connect import quiet_env

quiet_env()

from prefect import task  # noqa: E402
from prefect_dask import get_dask_client  # noqa: E402

logging.getLogger("distributed").setLevel(logging.ERROR)  # Prefect's logging config sets it to INFO

from tasks.data import Prepared  # noqa: E402
from tasks.data.locate import QuietParseFailures  # noqa: E402
from tasks.errors import USER_ERRORS  # noqa: E402
from tasks.spec import Data, Spec  # noqa: E402

# a bad CSV line fails inside a Dask task: the preprocess task says where in one line, the worker need not
if not any(isinstance(f, QuietParseFailures) for f in logging.getLogger("distributed.worker").filters):
    logging.getLogger("distributed.worker").addFilter(QuietParseFailures())


# A flow run's own loggers speak at INFO, so its Logs tab in the UI shows the run's story (Prefect's state
# lines, the per-epoch progress, each trial's outcome, the summary); the rest of Prefect (client, server,
# events) stays at PREFECT_LOGGING_LEVEL, and Ray's and Dask's loggers never reach the API handler.
RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


def logged(fn):
    """Run a flow function with its user-facing lines (tasks.progress.say) copied to the flow run's log;
    the summary it returns names the flow run (`flow_run_id`), where the UI shows that log."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from prefect.logging import get_run_logger

        from flows.beats import beating
        from tasks.progress import echo_to

        for name in RUN_LOGGERS:
            logging.getLogger(name).setLevel(logging.INFO)
        logger = get_run_logger()
        with echo_to(logger.info), beating():
            result = fn(*args, **kwargs)
        if isinstance(result, dict):
            from prefect.runtime import flow_run

            result["flow_run_id"] = str(flow_run.id)
        return result

    return wrapper


def quiet_prefect_console(level: int = logging.CRITICAL) -> None:
    """Keep Prefect's console handlers from printing a failed run's traceback: the CLI says it in one
    line (--debug shows it). Its API handler still sends every log line to the server for the UI."""
    for name in ["prefect", *[n for n in logging.root.manager.loggerDict if n.startswith("prefect")]]:
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler) \
                    and type(handler).__name__ != "APILogHandler":
                handler.setLevel(level)
    for handler in logging.root.handlers:  # Prefect's console sits on the root logger too (its logging.yml)
        if type(handler).__module__.startswith("prefect"):
            handler.setLevel(level)


def _not_user_error(task, task_run, state) -> bool:
    """Retry infrastructure failures, never a user's bad input."""
    try:
        state.result()
    except USER_ERRORS:
        return False
    except Exception:  # noqa: BLE001
        return True
    return False


def preprocess(*args, **kwargs) -> Prepared:
    """tasks.data.preprocess, imported where it runs: the preprocessing steps and dask.dataframe load in the
    process that reads the rows, never in a sweep's driver (0.4 s of its start)."""
    from tasks.data import preprocess as run

    return run(*args, **kwargs)


@task(name="preprocess", retries=1, retry_condition_fn=_not_user_error)
def preprocess_task(data: dict, home: str) -> Prepared:
    """Dask dataframe work on the flow's Dask cluster; returns where the Parquet splits are, and the
    fitted Preprocessor."""
    from tasks.progress import say

    with get_dask_client():  # a long preprocessing says how far it is (and, in this process, into the flow's log)
        return preprocess(Data.model_validate(data), Path(home), log=lambda *_: None, progress=say)


@task(name="baselines")
def baselines_task(spec: Spec, prepared: Prepared) -> dict:
    """The baselines' test metrics (≤ BASELINE_ROWS rows), scored on Dask like the preprocessing: a cluster's
    worker keeps scikit-learn imported, and the command that waits for them never imports it (~1.2 s of a run's
    start-up with `cluster up`); a sweep's are ready when its best trial registers."""
    from tasks.evaluate.baselines import score_baselines

    return score_baselines(prepared, prepared.preprocessor, spec)


def publish_summary(summary: dict) -> None:
    """The run's summary as a Prefect artifact: readable in the UI, and by `conductor submit --wait`. Every URL
    in it is masked and no value under a secret-looking key is shown (tasks.tracking.redact)."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.logging import get_run_logger

    from tasks.tracking import redact

    summary = redact(json.loads(json.dumps(summary, default=str)))
    lines = [f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in (summary.get("metrics") or {}).items()]
    if summary.get("verdict"):
        lines.append(summary["verdict"])
    get_run_logger().info("summary of %s: run directory %s\n%s", summary["name"], summary.get("run_dir"),
                          "\n".join(lines))

    metrics = "\n".join(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |"
                         for k, v in (summary.get("metrics") or {}).items())
    key = re.sub(r"[^a-z0-9-]+", "-", f"{summary['name']}-summary".lower())
    create_markdown_artifact(
        key=key, description=f"conductor summary of {summary['name']}",
        markdown=f"# {summary['name']}\n\nrun directory `{summary.get('run_dir')}`\n\n| metric | value |\n|---|---|\n"
                 f"{metrics}\n\n```json\n{json.dumps(summary, default=str)}\n```\n")
