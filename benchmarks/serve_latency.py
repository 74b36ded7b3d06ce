"""Online inference cost: `conductor serve` (Ray Serve, dynamic batching) against a plain peer.

  (a) `conductor serve RUN` : Ray Serve proxy → replica (0.25 CPU) → @serve.batch → predict_rows
  (b) the peer              : the same FastAPI app, model and preprocessor in one uvicorn process,
                              no Ray, each request scored as it comes (what a user writes by hand)

Single-row POST /predict requests from 1, 8 and 32 concurrent clients on loopback, each level for a
bounded time. Prints p50/p99 latency and rows/s of both, and the ratios a/b. Goals on 2 cores: at 32
clients (a) ≥ 1.0× (b)'s rows/s; at 1 client (a)'s p50 ≤ 2× (b)'s.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from fixtures_data import customers  # noqa: E402 - the tests' messy customer table


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_run(home: Path) -> Path:
    """A churn classifier (numbers, text categories, holes) trained by the plain loop, registered as `run` does."""
    import torch

    from models import build_model
    from tasks.data import preprocess
    from tasks.runs import new_run, new_run_id, register
    from tasks.spec import validate
    from tasks.train import LossModule, fit, local_batches

    src = home / "churn.csv"
    customers(2000).to_csv(src, index=False)
    spec = validate({"name": "churn", "data": {"source": str(src), "target": "churn", "drop": ["customer"]},
                     "model": {"name": "mlp", "params": {"hidden": [32]}},
                     "train": {"epochs": 5, "batch_size": 64, "lr": 0.01, "workers": 1}})
    prepared = preprocess(spec.data, home, log=lambda *_: None)
    prep = prepared.preprocessor
    model = build_model(spec.model.name, prep.input_shape, prep.output_dim, prep.task, spec.model.params,
                        target_index=prep.target_index)
    progress, best = fit(LossModule(model), model, lambda _: local_batches(prepared.path("train"), prep.n_inputs,
                                                                           prep.task, 64), None, spec.train, prep)
    model.load_state_dict(best)
    run_id = new_run_id()
    with new_run(home, spec.name, run_id) as stage:
        torch.save(model.state_dict(), stage / "model.pt")
        register(stage, spec, prep, progress.to_dict(), {})
    return home / spec.name / run_id


def peer(run_dir: str, port: int) -> None:
    """(b): one uvicorn process, no Ray, no batching; same app factory, token and limits as (a)."""
    import torch
    import uvicorn

    torch.set_num_threads(1)
    from tasks.serve.api import build_api, digest
    from tasks.serve.config import Limits
    from tasks.serve.scoring import Scorer

    scorer, lim = Scorer(run_dir), Limits()

    async def score(rows, id_column):
        return scorer.score(rows, id_column)

    app = build_api(scorer.info, scorer.schema, scorer.columns, score, digest(os.environ["CONDUCTOR_SERVE_TOKEN"]),
                    lim.max_body_bytes, lim.max_rows)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def wait_health(url: str, proc: subprocess.Popen, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}: {proc.stderr.read()[-2000:] if proc.stderr else ''}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    sys.exit(f"{url} did not answer within {timeout:.0f}s")


async def load(url: str, token: str, rows: list[dict], clients: int, seconds: float, health: bool = False) -> dict:
    """`clients` loops of back-to-back single-row requests for `seconds`; latencies of those that answered."""
    import httpx

    lat, errors = [], 0
    headers = {"Authorization": f"Bearer {token}"}
    stop = time.perf_counter() + seconds
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10,
                                 limits=httpx.Limits(max_connections=clients)) as client:
        async def worker(k: int):
            nonlocal errors
            i = k
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                r = await (client.get("/health") if health else client.post("/predict", json=[rows[i % len(rows)]]))
                if r.status_code == 200:
                    lat.append(time.perf_counter() - t0)
                else:
                    errors += 1
                i += clients

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(clients)))
        wall = time.perf_counter() - t0
    lat.sort()
    pick = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000) if lat else (lambda q: float("nan"))
    return {"p50_ms": pick(0.50), "p99_ms": pick(0.99), "rows_s": len(lat) / wall, "n": len(lat), "errors": errors}


def start_servers(run_dir: Path, home: Path, token: str, extra: list[str]) -> tuple[dict, list]:
    env = {**os.environ, "CONDUCTOR_HOME": str(home), "CONDUCTOR_SERVE_TOKEN": token, "PYTHONPATH": str(ROOT)}
    pa, pb = free_port(), free_port()
    serve = subprocess.Popen([sys.executable, "-m", "flows", "serve", str(run_dir), "--port", str(pa), *extra],
                             env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = subprocess.Popen([sys.executable, __file__, "--peer", str(run_dir), "--port", str(pb)], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    procs = [serve, base]
    t0 = time.perf_counter()
    wait_health(f"http://127.0.0.1:{pb}", base, 120)
    wait_health(f"http://127.0.0.1:{pa}", serve, 180)
    print(f"servers up in {time.perf_counter() - t0:.1f}s", flush=True)
    return {"serve": f"http://127.0.0.1:{pa}", "peer": f"http://127.0.0.1:{pb}"}, procs


def stop_servers(procs: list) -> None:
    for p, sig in zip(procs, (signal.SIGINT, signal.SIGTERM), strict=True):  # serve: Ctrl-C, its clean path
        if p.poll() is None:
            p.send_signal(sig)
    for p in procs:
        try:
            p.wait(timeout=40)
        except subprocess.TimeoutExpired:
            p.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="serve this run directory instead of training a tiny one")
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--seconds", type=float, default=6.0, help="measured time per level and server")
    ap.add_argument("--serve-args", default="", help="extra `conductor serve` options, e.g. '--batch-wait-ms 0'")
    ap.add_argument("--peer", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peer:
        return peer(args.peer, args.port)
    import pandas as pd

    home = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    run_dir = Path(args.run) if args.run else tiny_run(home)
    from tasks.serve.scoring import Scorer

    features = list(Scorer(run_dir).columns.features)
    rows = json.loads(pd.DataFrame(_sample(run_dir, features)).to_json(orient="records"))
    token = secrets.token_urlsafe(24)
    urls, procs = start_servers(run_dir, home, token, args.serve_args.split())
    results = {}
    try:
        for c in [int(x) for x in args.clients.split(",")]:
            for name in ("serve", "peer"):
                asyncio.run(load(urls[name], token, rows, c, 1.0))  # warm-up
                results[(name, c)] = asyncio.run(load(urls[name], token, rows, c, args.seconds))
        for name in ("serve", "peer"):  # the fixed cost of one request: an authenticated GET /health
            results[(name, "health")] = asyncio.run(load(urls[name], token, rows, 1, min(args.seconds, 3.0), True))
    finally:
        stop_servers(procs)
    report(results, run_dir)


def _sample(run_dir: Path, features: list[str]):
    frame = customers(200, seed=1)
    return frame[[c for c in features if c in frame.columns]] if set(features) <= set(frame.columns) else \
        {c: [None] * 50 for c in features}


def report(results: dict, run_dir: Path) -> None:
    print(f"\nsingle-row POST /predict on loopback, model {run_dir}")
    print(f"{'clients':>7} | {'serve p50':>9} {'p99':>7} {'rows/s':>7} | {'peer p50':>8} {'p99':>7} {'rows/s':>7} |"
          f" {'p50 a/b':>7} {'rows/s a/b':>10}")
    levels = sorted(c for _, c in results if c != "health")
    for c in dict.fromkeys(levels):
        a, b = results[("serve", c)], results[("peer", c)]
        print(f"{c:>7} | {a['p50_ms']:>9.1f} {a['p99_ms']:>7.1f} {a['rows_s']:>7.0f} | {b['p50_ms']:>8.1f} "
              f"{b['p99_ms']:>7.1f} {b['rows_s']:>7.0f} | {a['p50_ms'] / b['p50_ms']:>7.2f} "
              f"{a['rows_s'] / b['rows_s']:>10.2f}" + (f"  errors {a['errors']}/{b['errors']}" if a['errors'] + b['errors'] else ""))
    lo, hi = min(levels), max(levels)
    a, b = results[("serve", "health")], results[("peer", "health")]
    print(f"fixed cost per request (GET /health, 1 client): serve p50 {a['p50_ms']:.1f} ms, peer {b['p50_ms']:.1f} ms; "
          f"scoring one row adds {results[('peer', lo)]['p50_ms'] - b['p50_ms']:.1f} ms in the peer")
    p50 = results[("serve", lo)]["p50_ms"] / results[("peer", lo)]["p50_ms"]
    thr = results[("serve", hi)]["rows_s"] / results[("peer", hi)]["rows_s"]
    print(f"goal {hi} clients rows/s a/b >= 1.0: {thr:.2f} ({'met' if thr >= 1.0 else 'NOT met'}); "
          f"goal {lo} client p50 a/b <= 2.0: {p50:.2f} ({'met' if p50 <= 2.0 else 'NOT met'})")


if __name__ == "__main__":
    main()
