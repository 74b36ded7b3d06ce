"""Ray Train's epoch against plain PyTorch DDP on the same work: 2 processes, gloo, one torch thread each.

  (a) torchrun --nproc_per_node 2: each rank trains on its half of the prepared train split, then scores val
  (b) `conductor run` with train.workers=2 (Ray Train V2, Ray Data shards, a report + checkpoint every epoch)

Work: builtin:synthetic (200,000 rows, 64 features), an MLP 64-512-512-2, global batch 256, 3 epochs, early
stopping off. Prints the median epoch (train + val) of both, the ratio (goal <= 1.10; Ray's release tests gate
at 1.15), and the per-epoch report + checkpoint cost of (b) apart: the time between one epoch's end and the
next one's start, which in (a) is nothing.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SPEC = {"name": "ddp-bench",
        "data": {"source": "builtin:synthetic", "target": "label",
                 "synthetic": {"rows": 200_000, "features": 64, "classes": 2, "seed": 0}},
        "model": {"name": "mlp", "params": {"hidden": [512, 512], "dropout": 0.0}},
        "train": {"epochs": 3, "batch_size": 256, "lr": 0.001, "workers": 2, "early_stopping": None,
                  "use_gpu": False},
        "tracking": {"wandb": {"mode": "disabled"}}}

DDP = """
import json, sys, time
import pandas as pd, torch, torch.distributed as dist
sys.path.insert(0, sys.argv[1])
from models import build_model
from tasks.data import Prepared
from tasks.evaluate import predict_all, score
from tasks.spec import validate
from tasks.train import LossModule, to_tensors
torch.set_num_threads(1)
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
spec, prepared = validate(json.loads(sys.argv[2])), Prepared.load(sys.argv[3])
prep = prepared.preprocessor
frame = pd.read_parquet(prepared.path("train")).iloc[rank::world]
train = to_tensors({c: frame[c].to_numpy() for c in frame.columns}, prep.n_inputs, prep.task)
val_frame = pd.read_parquet(prepared.path("val"))
val = to_tensors({c: val_frame[c].to_numpy() for c in val_frame.columns}, prep.n_inputs, prep.task)
torch.manual_seed(0)
model = build_model(spec.model.name, prep.input_shape, prep.output_dim, prep.task, spec.model.params,
                    target_index=prep.target_index)
net = torch.nn.parallel.DistributedDataParallel(LossModule(model))
opt = torch.optim.Adam(net.parameters(), lr=spec.train.lr)
per = spec.train.batch_size // world
times = []
for epoch in range(spec.train.epochs):
    t0 = time.perf_counter()
    order = torch.randperm(len(train["x"]), generator=torch.Generator().manual_seed(epoch))
    for i in range(0, len(order), per):
        idx = order[i:i + per]
        loss, _ = net({k: v[idx] for k, v in train.items()})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    score(prep.task, predict_all(model, [val]), prep)
    times.append(time.perf_counter() - t0)
if rank == 0:
    print(json.dumps(times))
dist.destroy_process_group()
"""


def main() -> None:
    from tasks.data import preprocess
    from tasks.spec import validate

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "runs"
        spec = validate(SPEC)
        prepared = preprocess(spec.data, home, log=lambda *_: None)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "CONDUCTOR_HOME": str(home)}
        script = Path(tmp) / "ddp.py"
        script.write_text(DDP)
        torchrun = Path(sys.executable).parent / "torchrun"
        a = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", str(script), str(ROOT),
                            json.dumps(spec.model_dump(mode="json")), str(prepared.dir)],
                           capture_output=True, text=True, env=env, cwd=ROOT)
        if a.returncode:
            raise SystemExit(f"(a) failed:\n{a.stderr[-3000:]}")
        ddp = json.loads(a.stdout.strip().splitlines()[-1])
        spec_file = Path(tmp) / "spec.json"
        spec_file.write_text(json.dumps(SPEC))
        t0 = time.perf_counter()
        b = subprocess.run([sys.executable, "-m", "flows", "run", str(spec_file), "--json"], capture_output=True,
                           text=True, env=env, cwd=ROOT)
        wall = time.perf_counter() - t0
        if b.returncode:
            raise SystemExit(f"(b) failed:\n{b.stderr[-3000:]}")
        summary = json.loads(b.stdout.strip().splitlines()[-1])
        hist = json.loads((Path(summary["run_dir"]) / "history.json").read_text())
    ray_epochs = [r["epoch_seconds"] for r in hist]
    t = summary["timings"]
    between = (t["train_s"] - t["evaluate_s"] - sum(ray_epochs))  # start-up, reports, checkpoints, teardown
    print(f"\nddp_epoch: MLP 64-512-512-2 on 200,000 synthetic rows, global batch 256, 2 workers x 1 thread, "
          f"{len(hist)} epochs\n")
    print(f"  (a) plain DDP (torchrun, gloo)  epochs {[round(x, 2) for x in ddp]} s, median {statistics.median(ddp):.2f} s")
    print(f"  (b) Ray Train (conductor run)  epochs {[round(x, 2) for x in ray_epochs]} s, median "
          f"{statistics.median(ray_epochs):.2f} s; whole run {wall:.1f} s")
    print(f"      outside the epochs in fit(): {between:.1f} s (start-up, {len(hist)} reports + checkpoints, teardown)")
    print(f"\n  epoch ratio b/a: {statistics.median(ray_epochs) / statistics.median(ddp):.2f}x (goal <= 1.10)")


if __name__ == "__main__":
    main()
