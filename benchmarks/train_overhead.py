"""What conductor's engines cost: the same model, data and epochs trained

  (a) by a plain PyTorch loop in one process, and
  (b) by `conductor run` (Prefect + Dask + Ray Train with 2 workers + W&B offline),

printing the wall-time ratio b/a, where b's time goes, and samples/s of both training loops.
Early stopping is off in both so they run the same number of epochs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def plain_loop(spec, home: Path) -> dict:
    """(a): preprocess without Dask's cluster, then tasks.train.fit on one process, then evaluate."""
    import pandas as pd
    import torch

    from models import build_model
    from tasks.data import preprocess
    from tasks.evaluate import evaluate
    from tasks.train import LossModule, fit

    t0 = time.perf_counter()
    prep = preprocess(spec.data, home, log=lambda *_: None)
    t_prep = time.perf_counter() - t0
    prepro = prep.preprocessor

    def tensors(split):
        df = pd.read_parquet(prep.path(split))
        x = torch.from_numpy(df.filter(regex=r"^x\d+$").to_numpy().copy())
        y = torch.from_numpy(df["y"].to_numpy().copy())
        return x, y

    (xt, yt), (xv, yv), (xs, ys) = tensors("train"), tensors("val"), tensors("test")
    bs = spec.train.batch_size

    def batches(x, y, shuffle_seed=None):
        idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(shuffle_seed)) if shuffle_seed is not None else torch.arange(len(x))
        for i in range(0, len(x), bs):
            j = idx[i:i + bs]
            yield {"x": x[j], "y": y[j], "row": j}

    torch.manual_seed(spec.train.seed)
    model = build_model(spec.model.name, prepro.input_shape, prepro.output_dim, prepro.task, spec.model.params,
                        target_index=prepro.target_index)
    t1 = time.perf_counter()
    progress, best = fit(LossModule(model), model, lambda e: batches(xt, yt, e), lambda: batches(xv, yv),
                         spec.train, prepro)
    t_train = time.perf_counter() - t1
    model.load_state_dict(best)
    t2 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = evaluate(model, batches(xs, ys), prepro, progress.history, Path(tmp))
    t_eval = time.perf_counter() - t2
    return {"total_s": time.perf_counter() - t0, "preprocess_s": t_prep, "train_s": t_train, "evaluate_s": t_eval,
            "samples_per_s": progress.samples / progress.train_seconds, "epochs": progress.epoch,
            "test_accuracy": result["metrics"].get("test/accuracy")}


def conductor_run(spec_path: Path, epochs: int, home: Path) -> dict:
    """(b): the CLI as a user runs it, fresh process, embedded engines."""
    env = {**os.environ, "CONDUCTOR_HOME": str(home)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "flows", "run", str(spec_path), "--json",
                           "--set", f"train.epochs={epochs}", "--set", "train.early_stopping=null"],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"conductor run failed:\n{proc.stderr[-3000:]}")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"wall_s": wall, **summary}


FLOOR = """
import time
t0 = time.perf_counter()
import ray
ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
t1 = time.perf_counter()

@ray.remote(num_cpus=1)
class Torch:
    def ready(self):
        import torch
        return torch.__version__

a = Torch.remote()
ray.get(a.ready.remote())
t2 = time.perf_counter()
print(f"{t1 - t0:.2f} {t2 - t1:.2f}")
"""


def floor() -> tuple[float, float, float]:
    """(c): an empty ray.init plus one actor that imports torch, in a fresh process: what any Ray run pays."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", FLOOR], capture_output=True, text=True, check=True).stdout.split()
    return time.perf_counter() - t0, float(out[0]), float(out[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", default=str(ROOT / "experiments" / "digits-cnn.yaml"))
    ap.add_argument("--epochs", type=int, default=20)
    args = ap.parse_args()
    from tasks.spec_file import load_spec

    spec = load_spec(args.spec, {"train.epochs": args.epochs, "train.early_stopping": None})
    with tempfile.TemporaryDirectory() as tmp:
        a = plain_loop(spec, Path(tmp) / "plain")
        b = conductor_run(Path(args.spec), args.epochs, Path(tmp) / "conductor")
        c_wall, c_init, c_actor = floor()
    t = b["timings"]
    startup = b["wall_s"] - t["flow_s"]  # interpreter, imports, Prefect API and Ray side by side, Dask
    ray_train_overhead = t["train_s"] - t["epochs_s"] - t["evaluate_s"]
    wait = max(0.0, t["preprocess_wait_s"])
    rows = [
        ("(a) plain PyTorch loop, 1 process", a["total_s"]),
        ("(b) conductor run", b["wall_s"]),
        ("    start-up before the flow: imports, Prefect API | Ray, Dask", startup),
        ("      of which Prefect's API server start (in a thread)", t.get("prefect_start_s", 0.0)),
        ("      of which ray.init (beside the API server's start)", t["ray_start_s"]),
        ("    preprocessing on Dask (wait)", wait),
        ("    Ray Train start-up, reports, checkpoints, teardown", ray_train_overhead),
        ("    training epochs (train + val)", t["epochs_s"]),
        ("    evaluation (test, plots, importance)", t["evaluate_s"]),
        ("    register + flow bookkeeping", t["flow_s"] - wait - t["train_s"]),
        ("    after the flow: summary, exit", b["wall_s"] - b["duration_s"]),
    ]
    print(f"\ntrain_overhead: {spec.name}, {args.epochs} epochs, {b['workers']} Ray Train workers, same model and data\n")
    for label, secs in rows:
        print(f"  {label:<60} {secs:7.1f} s")
    print(f"  {'(c) floor: python + ray.init + one actor importing torch':<60} {c_wall:7.1f} s "
          f"(ray.init {c_init:.1f} s, actor {c_actor:.1f} s)")
    print(f"\n  wall-time ratio b/a: {b['wall_s'] / a['total_s']:.1f}x; b over the floor: {b['wall_s'] - c_wall:.1f} s")
    print(f"  training loop only (epochs): b/a = {t['epochs_s'] / a['train_s']:.2f}x")
    print(f"  samples/s: plain {a['samples_per_s']:.0f}, conductor {b['samples_per_s']:.0f} "
          f"({b['workers']} workers, DDP over gloo)")
    print(f"  test accuracy: plain {a['test_accuracy']:.4f}, conductor {b['metrics'].get('test/accuracy', float('nan')):.4f}")


if __name__ == "__main__":
    main()
