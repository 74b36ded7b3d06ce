"""`conductor serve` with real Ray Serve and real HTTP on 127.0.0.1: the same answers as `conductor predict`,
4xx for every client mistake, token auth, a replica killed mid-stream, /docs in a browser, Ctrl-C."""
from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from fixtures_data import customers

from conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def free_port() -> int:
    with socket.socket() as s:
        return s.bind(("127.0.0.1", 0)) or s.getsockname()[1]


def jsonable(df: pd.DataFrame) -> list[dict]:
    """Rows as JSON keeps them: NaN → null, full float precision."""
    return json.loads(json.dumps(df.astype(object).where(df.notna(), None).to_dict(orient="records")))


def same(a: list[dict], b: list[dict]) -> bool:
    """Equal labels, probabilities within 1e-6 (float32 scores of a batch of 3 or of 60 rows)."""
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(abs(x[k] - y[k]) < 1e-6 if isinstance(x[k], float) else x[k] == y[k] for k in x)
        for x, y in zip(a, b, strict=True))


def train_plain(raw: dict, home: Path) -> Path:
    """A tiny run directory: preprocess, the plain loop (no Ray), registered the way `conductor run` does."""
    import torch

    from models import build_model
    from tasks.data import preprocess
    from tasks.runs import new_run, new_run_id, register
    from tasks.spec import validate
    from tasks.train import LossModule, fit, local_batches

    spec = validate(raw)
    prepared = preprocess(spec.data, home, log=lambda *_: None)
    prep, bs = prepared.preprocessor, spec.train.batch_size
    torch.manual_seed(0)
    model = build_model(spec.model.name, prep.input_shape, prep.output_dim, prep.task, spec.model.params,
                        target_index=prep.target_index)
    progress, best = fit(LossModule(model), model,
                         lambda _: local_batches(prepared.path("train"), prep.n_inputs, prep.task, bs),
                         lambda: local_batches(prepared.path("val"), prep.n_inputs, prep.task, bs), spec.train, prep)
    model.load_state_dict(best)
    run_id = new_run_id()
    with new_run(home, spec.name, run_id) as stage:
        torch.save(model.state_dict(), stage / "model.pt")
        register(stage, spec, prep, progress.to_dict(), {})
    return home / spec.name / run_id


@pytest.fixture(scope="module")
def runs(smoke_run, home) -> dict[str, Path]:
    """The session's churn classifier (text categories, holes), and a regression and a forecasting model."""
    return {
        "classification": Path(smoke_run["run_dir"]),
        "regression": train_plain({"name": "serve-diabetes", "model": {"name": "linear"},
                                   "data": {"source": "builtin:diabetes", "task": "regression", "target": "progression"},
                                   "train": {"epochs": 20, "batch_size": 32, "lr": 0.01, "workers": 1}}, home),
        "forecasting": train_plain({"name": "serve-sunspots", "model": {"name": "rnn", "params": {"hidden_size": 8}},
                                    "data": {"source": "builtin:sunspots", "task": "forecasting", "target": "sunactivity",
                                             "time_column": "year", "window": 12, "horizon": 2,
                                             "preprocessing": {"impute": "interpolate"}},
                                    "train": {"epochs": 3, "batch_size": 16, "lr": 0.01, "workers": 1}}, home),
    }


@pytest.fixture(scope="module")
def served(runs):
    """Serve starts once on the session's Ray: the classifier through `start` (the CLI's path), the others
    as apps beside it."""
    from ray import serve

    from tasks.serve import ServeOptions, start
    from tasks.serve.api import digest
    from tasks.serve.config import Limits, token_path
    from tasks.serve.control import stop_serve
    from tasks.serve.deployment import application

    opts = ServeOptions(port=free_port(), max_rows=500, max_body_mb=0.05)
    state = start(runs["classification"], opts, log=lambda *_: None)
    token = token_path().read_text().strip()
    for task, prefix in (("regression", "/reg"), ("forecasting", "/fc")):
        serve.run(application(str(runs[task]), digest(token), Limits()), name=f"test-{task}", route_prefix=prefix)
    client = httpx.Client(base_url=state["url"], headers={"Authorization": f"Bearer {token}"}, timeout=30)
    yield {"url": state["url"], "token": token, "client": client, "state": state}
    client.close()
    for task in ("regression", "forecasting"):
        serve.delete(f"test-{task}")
    stop_serve()


def batch_predict(run_dir: Path, rows: pd.DataFrame, tmp_path: Path, id_column: str | None = None) -> pd.DataFrame:
    """What `conductor predict RUN INPUT --out OUT` writes for the same raw rows."""
    from tasks.predict import predict

    src, out = tmp_path / "input.csv", tmp_path / "out.parquet"
    rows.to_csv(src, index=False)
    predict(run_dir, str(src), out, id_column)
    return pd.read_parquet(out)


def test_classification_matches_predict(served, runs, tmp_path):
    rows = customers(60, seed=7).drop(columns=["churn"])
    rows.loc[3, "plan"] = "enterprise"  # a category the model never saw
    rows.loc[4, ["age", "income"]] = np.nan
    expected = batch_predict(runs["classification"], rows, tmp_path, id_column="customer")
    r = served["client"].post("/predict", params={"id": "customer"}, json=jsonable(rows))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["run_id"] == runs["classification"].name and body["rows"] == len(rows)
    got = pd.DataFrame(body["predictions"])
    assert got["customer"].tolist() == expected["customer"].tolist()
    assert got["prediction"].tolist() == expected["prediction"].astype(str).tolist()
    for c in [c for c in expected.columns if c.startswith("p_")]:
        np.testing.assert_allclose(got[c].to_numpy(), expected[c].to_numpy(), atol=1e-6)
    head = jsonable(rows.head(3))
    columns = served["client"].post("/predict", json={c: [r[c] for r in head] for c in rows.columns})
    one = served["client"].post("/predict", json=head[0])
    without_id = [{k: v for k, v in p.items() if k != "customer"} for p in body["predictions"]]
    assert columns.status_code == 200 and same(columns.json()["predictions"], without_id[:3])
    assert one.status_code == 200 and same(one.json()["predictions"], without_id[:1])


def test_regression_matches_predict(served, runs, tmp_path):
    from sklearn.datasets import load_diabetes

    rows = load_diabetes(as_frame=True, scaled=False).frame.drop(columns=["target"]).head(40)
    expected = batch_predict(runs["regression"], rows, tmp_path)
    r = served["client"].post("/reg/predict", json=jsonable(rows))
    assert r.status_code == 200, r.text
    got = pd.DataFrame(r.json()["predictions"])
    np.testing.assert_allclose(got["prediction"].to_numpy(), expected["prediction"].to_numpy(), atol=1e-6)


def test_forecasting_matches_predict(served, runs, tmp_path):
    import statsmodels.api as sm
    series = sm.datasets.sunspots.load_pandas().data.rename(columns={"YEAR": "year", "SUNACTIVITY": "sunactivity"})
    rows = series.astype({"year": int}).tail(30).sample(frac=1, random_state=0)  # any order: sorted by year
    expected = batch_predict(runs["forecasting"], rows, tmp_path).sort_values("year").iloc[-1]
    r = served["client"].post("/fc/predict", json=jsonable(rows))
    assert r.status_code == 200, r.text
    (got,) = r.json()["predictions"]
    assert got["year"] == expected["year"] == 2008
    assert all(abs(got[f"prediction_t+{h}"] - expected[f"prediction_t+{h}"]) < 1e-6 for h in (1, 2))
    short = served["client"].post("/fc/predict", json=jsonable(rows.head(5)))
    assert short.status_code == 422 and "window" in short.json()["error"]


GOOD = [{"age": 40, "income": 30000.0, "plan": "pro", "region": "north"}]


@pytest.mark.parametrize("body,status,field", [
    (b"", 400, "body"),
    (b"{not json", 400, "body"), (b"[]", 422, "body"),
    (b"[1, 2]", 422, "body[0]"), (b'"rows"', 422, "body"),
    (json.dumps([{"age": 40, "income": 1.0}]).encode(), 422, "plan"),
    (json.dumps([{**GOOD[0], "age": "forty"}]).encode(), 422, "age"),
    (json.dumps([{**GOOD[0], "income": "31000", "plan": "platinum"}]).encode(), 200, None),  # as predict does
    (json.dumps([{**GOOD[0], "income": float("inf")}]).encode(), 422, "income"),
    (json.dumps([{**GOOD[0], "plan": ["pro"]}]).encode(), 422, "plan"),
    (json.dumps({"age": [1, 2], "income": [1.0], "plan": ["a", "b"], "region": ["x", "y"]}).encode(), 422, "body"),
    (b"[" + b",".join([json.dumps(GOOD[0]).encode()] * 501) + b"]", 413, "body"),
    (json.dumps([{**GOOD[0], "note": "x" * 60_000}]).encode(), 413, "body"),
])
def test_bad_requests_get_4xx_and_the_replica_keeps_serving(served, body, status, field):
    client = served["client"]
    r = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert status == 200 or r.json()["field"] == field and r.json()["error"]
    assert client.post("/predict", json=GOOD).status_code == 200


def test_only_the_token_holder_gets_answers(served):
    url = served["url"]
    assert httpx.post(f"{url}/predict", json=GOOD).status_code == 401
    wrong = httpx.post(f"{url}/predict", json=GOOD, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["field"] == "Authorization"
    assert httpx.get(f"{url}/schema").status_code == 401
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}  # liveness only, no model details
    from tasks.serve.config import token_path

    assert token_path().stat().st_mode & 0o777 == 0o600
    schema = served["client"].get("/schema").json()
    assert [c["name"] for c in schema["columns"]] == ["age", "income", "plan", "region"]
    assert schema["columns"][2] == {"name": "plan", "type": "category", "categories": ["basic", "plus", "pro"]}
    import psutil  # the token never reaches Ray: not in a replica's environment (runtime_env) or command line

    replica = psutil.Process(served["client"].get("/health").json()["pid"])
    assert served["token"] not in json.dumps(replica.environ()) + " ".join(replica.cmdline())


def test_a_killed_replica_is_replaced(served):
    client = served["client"]
    before = client.get("/health").json()["pid"]
    os.kill(before, signal.SIGKILL)  # mid-stream: requests keep coming until one is answered again
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if client.post("/predict", json=GOOD, timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    else:
        pytest.fail("no answer within 60 s of killing the replica")
    after = client.get("/health").json()["pid"]
    assert after != before
    assert all(client.post("/predict", json=GOOD).status_code == 200 for _ in range(5))


def test_docs_load_in_a_browser(served, tmp_path):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None and os.geteuid() == 0:  # as the dashboard test does
        subprocess.run("apt-get update -qq && apt-get install -y -qq chromium", shell=True, capture_output=True,
                       timeout=600)
        exe = shutil.which("chromium")
    if exe is None:
        (pytest.fail if os.environ.get("CI") else pytest.skip)("no chromium (apt-get install -y chromium)")
    dom = subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'chrome'}",
         "--virtual-time-budget=10000", "--dump-dom", f"{served['url']}/docs"],
        capture_output=True, text=True, timeout=120).stdout
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<style.*?</style>|<script.*?</script>", " ", dom, flags=re.S))
    assert "/predict" in text and "POST" in text, text[:500]


def test_cli_refuses_bad_input_with_one_line(runs, home, tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app
    assert "serve" in {g.name for g in app.registered_groups}  # registered by flows/cli/__init__.py
    from flows.cli import serve
    cli = CliRunner()
    no_auth = cli.invoke(serve.serve_app, [str(runs["classification"]), "--no-auth", "--host", "0.0.0.0"])
    assert no_auth.exit_code == 2 and "error: --no-auth" in no_auth.output
    assert cli.invoke(serve.serve_app, [str(tmp_path / "missing")]).exit_code == 2
    broken = tmp_path / "broken"
    shutil.copytree(runs["classification"], broken)
    (broken / "model.pt").write_bytes(b"not a checkpoint")
    bad = cli.invoke(serve.serve_app, [str(broken)])
    assert bad.exit_code == 2 and "weights_only" in bad.output and bad.output.count("\n") == 1
    assert cli.invoke(serve.serve_app, ["--study", "no-such-study"]).exit_code == 2
    from tasks.serve import resolve_run

    best = home / "churn-swept" / "20991231-000000-beef"
    shutil.copytree(runs["classification"], best)
    (best / "sweep.json").write_text(json.dumps({"study": "churn-study", "storage": "sqlite:///x.db"}))
    assert resolve_run(None, "churn-study") == best
    assert cli.invoke(serve.serve_app, [str(runs["classification"]), "--detach"]).exit_code == 2


def test_foreground_serve_stops_cleanly_on_ctrl_c(runs, home):
    port = free_port()
    env = {**os.environ, "CONDUCTOR_HOME": str(home / "fg"), "CONDUCTOR_SERVE_TOKEN": "t" * 32}
    proc = subprocess.Popen([sys.executable, "-m", "flows", "serve", str(runs["classification"]),
                             "--port", str(port), "--json"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert select.select([proc.stdout], [], [], 180)[0], "no state line within 180 s"
        state = json.loads(proc.stdout.readline())  # the JSON state, printed once serving
        health = httpx.get(f"http://127.0.0.1:{port}/health", headers={"Authorization": "Bearer " + "t" * 32}).json()
        listeners = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
        assert all(row.split()[3].startswith("127.0.0.1:") for row in listeners.splitlines()), listeners
        assert (home / "fg" / "serve" / "token").stat().st_mode & 0o777 == 0o600
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert state["url"] == f"http://127.0.0.1:{port}" and not (home / "fg" / "serve" / "app.json").exists()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
    import psutil  # the replica went with the embedded Ray

    deadline = time.monotonic() + 15
    while psutil.pid_exists(health["pid"]) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not psutil.pid_exists(health["pid"]) or psutil.Process(health["pid"]).status() == psutil.STATUS_ZOMBIE
