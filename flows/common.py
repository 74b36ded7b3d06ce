"""What both flows share: quiet Prefect consoles, the Dask preprocessing task, the published summary."""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from cluster.connect import quiet_env

quiet_env()

from prefect import task  # noqa: E402
from prefect_dask import get_dask_client  # noqa: E402

logging.getLogger("distributed").setLevel(logging.ERROR)  # Prefect's logging config sets it to INFO

from tasks.data import Prepared, preprocess  # noqa: E402
from tasks.data.locate import QuietParseFailures  # noqa: E402
from tasks.errors import USER_ERRORS  # noqa: E402
from tasks.spec import Data  # noqa: E402

# a bad CSV line fails inside a Dask task: the preprocess task says where in one line, the worker need not
if not any(isinstance(f, QuietParseFailures) for f in logging.getLogger("distributed.worker").filters):
    logging.getLogger("distributed.worker").addFilter(QuietParseFailures())


def quiet_prefect_console(level: int = logging.CRITICAL) -> None:
    """Keep Prefect's console handlers from printing a failed run's traceback: the CLI says it in one
    line (--debug shows it). Its API handler still sends every log line to the server for the UI."""
    for name in ["prefect", *[n for n in logging.root.manager.loggerDict if n.startswith("prefect")]]:
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler) \
                    and type(handler).__name__ != "APILogHandler":
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


@task(name="preprocess", retries=1, retry_condition_fn=_not_user_error)
def preprocess_task(data: dict, home: str) -> Prepared:
    """Dask dataframe work on the flow's Dask cluster; returns where the Parquet splits are, and the
    fitted Preprocessor."""
    with get_dask_client():
        return preprocess(Data.model_validate(data), Path(home), log=lambda *_: None)


def publish_summary(summary: dict) -> None:
    """The run's summary as a Prefect artifact: readable in the UI, and by `conductor submit --wait`. Every URL
    in it is masked and no value under a secret-looking key is shown (tasks.tracking.redact)."""
    from prefect.artifacts import create_markdown_artifact

    from tasks.tracking import redact

    summary = redact(json.loads(json.dumps(summary, default=str)))

    metrics = "\n".join(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |"
                         for k, v in (summary.get("metrics") or {}).items())
    key = re.sub(r"[^a-z0-9-]+", "-", f"{summary['name']}-summary".lower())
    create_markdown_artifact(
        key=key, description=f"conductor summary of {summary['name']}",
        markdown=f"# {summary['name']}\n\nrun directory `{summary.get('run_dir')}`\n\n| metric | value |\n|---|---|\n"
                 f"{metrics}\n\n```json\n{json.dumps(summary, default=str)}\n```\n")
