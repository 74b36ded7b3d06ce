"""No credential reaches a file, a log, W&B or Prefect: `conductor run` and `conductor sweep` (in-process, on the
session's engines) with a W&B key, an Optuna storage password and a data source that needs credentials, each a
sentinel; then every file under the home (run directories, the cache, W&B's offline runs), the Prefect flow runs'
parameters, task runs, logs and artifacts, Prefect's database file and the console are searched for them: none is
found, yet the data was read with them.

Ray's workers (where a run's and a trial's W&B runs write) started with the session, before the key was set, so
here only the driver's W&B run (the sweep's summary) has it; the spec's source reaches every W&B run."""
from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import threading
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import require_postgres, write_spec

pytestmark = pytest.mark.integration

KEY, PASSWORD, SOURCE_PW, SIGNATURE = (f"Sentinel{w}{uuid.uuid4().hex[:10]}" for w in ("Key", "Pg", "Src", "Sig"))
SENTINELS = {"WANDB_API_KEY": KEY, "storage password": PASSWORD, "source password": SOURCE_PW,
             "source signature": SIGNATURE}


class _Guarded(http.server.SimpleHTTPRequestHandler):
    """Serves data.csv only to a request with the credential: basic auth, or the signature in the query."""

    def log_message(self, *_):
        pass

    def do_GET(self):
        basic = "Basic " + base64.b64encode(f"reader:{SOURCE_PW}".encode()).decode()
        if self.headers.get("Authorization") != basic and f"X-Amz-Signature={SIGNATURE}" not in self.path:
            self.send_error(403)
            return
        self.server.hits += 1
        super().do_GET()

    do_HEAD = do_GET


@pytest.fixture
def served(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    frame = pd.DataFrame(x, columns=["a", "b", "c", "d"]).assign(label=np.where(x[:, 0] + x[:, 1] > 0, "yes", "no"))
    frame.to_csv(folder / "data.csv", index=False)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Guarded, directory=str(folder)))
    server.hits = 0
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def spec(name: str, source: str, sweep: bool) -> dict:
    out = {"name": name, "data": {"source": source, "target": "label"},
           "model": {"name": "mlp", "params": {"hidden": [8]}},
           "train": {"epochs": 2, "workers": 1, "batch_size": 32, "early_stopping": None},
           "tracking": {"wandb": {"mode": "offline"}}}
    if sweep:
        out["sweep"] = {"metric": "val/accuracy", "trials": 2, "parallel": 1, "sampler": "random", "pruner": "none",
                        "space": {"train.lr": {"low": 1e-3, "high": 1e-2, "log": True}}}
    return out


def leaks(blob: bytes) -> list[str]:
    return [what for what, s in SENTINELS.items() if s.encode() in blob]


def postgres_or_skip() -> str:
    require_postgres()
    return f"postgresql+psycopg2://postgres:{PASSWORD}@127.0.0.1:5432/test"  # trust auth: any password works


def prefect_records(names: set[str]) -> dict[str, list[dict]]:
    """What Prefect's API holds of the flow runs of `names`: the runs (parameters, states), task runs, logs,
    artifacts."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    with get_client(sync_client=True) as c:
        runs = [r for r in c.read_flow_runs(limit=200) if (r.parameters.get("spec") or {}).get("name") in names]
        ids = [r.id for r in runs]
        return {"flow_runs": [r.model_dump(mode="json") for r in runs],
                "task_runs": [t.model_dump(mode="json") for t in
                              c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))],
                "logs": [g.model_dump(mode="json") for g in
                         c.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)))],
                "artifacts": [a.model_dump(mode="json") for a in c.read_artifacts(
                    artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids)))]}


def prefect_db_files() -> list[Path]:
    from prefect.settings import get_current_settings

    url = get_current_settings().server.database.connection_url
    db = Path(str(getattr(url, "get_secret_value", lambda: url)()).split(":///", 1)[-1])
    return [p for p in db.parent.glob(db.name + "*") if p.is_file()]


def test_no_credential_reaches_files_logs_wandb_or_prefect(engines, served, tmp_path, monkeypatch, capfd):
    from flows.cli import app

    storage, port, home, tag = postgres_or_skip(), served.server_address[1], tmp_path / "runs", uuid.uuid4().hex[:6]
    names = {f"secret-run-{tag}", f"secret-sweep-{tag}"}
    run_spec = write_spec(tmp_path / "run.yaml", spec(f"secret-run-{tag}", f"http://reader:{SOURCE_PW}@127.0.0.1:{port}"
                                                      "/data.csv", sweep=False))
    sweep_spec = write_spec(tmp_path / "sweep.yaml", spec(f"secret-sweep-{tag}", f"http://127.0.0.1:{port}/data.csv?"
                                                          f"X-Amz-Expires=60&X-Amz-Signature={SIGNATURE}", sweep=True))
    for var, value in {"CONDUCTOR_HOME": str(home), "WANDB_API_KEY": KEY, "CONDUCTOR_OPTUNA_STORAGE": storage}.items():
        monkeypatch.setenv(var, value)  # the CLI sets CONDUCTOR_OPTUNA_STORAGE from --storage: undone at teardown
    before = set(os.environ)
    try:
        outs = [CliRunner().invoke(app, args) for args in (
            ["run", str(run_spec)], ["sweep", str(sweep_spec), "--storage", storage, "--study", f"secrets-{tag}"])]
    finally:  # the real source URLs the CLI put in the environment (CONDUCTOR_SOURCE_<hash>)
        for var in set(os.environ) - before:
            os.environ.pop(var)
    console = "".join(o.output for o in outs) + "".join(capfd.readouterr())
    assert [o.exit_code for o in outs] == [0, 0], console[-3000:]
    assert served.hits > 0  # the data was read, with the credentials

    files = [p for p in home.rglob("*") if p.is_file()] + prefect_db_files()
    assert {str(p): w for p in files if (w := leaks(p.read_bytes()))} == {}
    assert sum(p.name == "spec.yaml" for p in files) == 2 and any(p.suffix == ".db" for p in files)
    # W&B's offline runs were searched, and hold the config in the clear: a credential would have been found
    assert any(b"reader:***@127.0.0.1" in p.read_bytes() for p in home.glob("wandb/offline-run-*/*.wandb"))
    assert leaks(console.encode()) == []
    prefect = prefect_records(names)
    assert leaks(json.dumps(prefect).encode()) == []
    assert len(prefect["artifacts"]) == 2 and prefect["task_runs"]
    assert sorted(r["parameters"]["spec"]["data"]["source"] for r in prefect["flow_runs"]) == [
        f"http://127.0.0.1:{port}/data.csv?X-Amz-Expires=60&X-Amz-Signature=***",
        f"http://reader:***@127.0.0.1:{port}/data.csv"]
