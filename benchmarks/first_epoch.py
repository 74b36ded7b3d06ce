"""How long until a run's first epoch: `conductor run` of digits-mlp, 1 epoch, 1 Ray Train worker, timed from the
command's start to its first epoch line on stderr, against

  (a) the plain PyTorch script a user would write: python, imports, the same prepared splits, 1 epoch, in one process,
      with torch.optim's optimizer (so torch._dynamo's import, which conductor's loop skips: tasks/train/optim.py),
  (f) the floor of any Ray run: python + an empty ray.init + one actor that imports torch,

for (b) the embedded default (every engine started by the command) and (c) with `conductor cluster up` running, and
(c0) the same without the head start a run takes as it connects to Ray: the worker processes it asks each raylet for
and its Ray Train workers made before fit() (CONDUCTOR_PRESTART=0 CONDUCTOR_EARLY_WORKERS=0), and (c1) without
`cluster up`'s command server (CONDUCTOR_COMMAND_SERVER=off: the command imports the engines itself), in turn with (c).
Each conductor figure is the median of --repeat runs after one run that fills the preprocessing cache (and, on the
cluster, starts its Dask worker's imports). Prints the ratios and where (c)'s time goes.
"""
from __future__ import annotations

import argparse
import contextlib
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
SPEC = ROOT / "experiments" / "digits-mlp.yaml"
SETS = ["--set", "train.epochs=1", "--set", "train.workers=1"]

PLAIN = """
import time
t0 = time.perf_counter()
import sys
sys.path.insert(0, {root!r})
import torch
import torch._dynamo  # what torch.optim's first optimizer imports in a user's script (conductor's loop does not)
from models import build_model
from tasks.data import Prepared
from tasks.spec_file import load_spec
from tasks.train import LossModule, fit, tensor_batches, whole_split
spec = load_spec({spec!r}, {{"train.epochs": 1, "train.workers": 1}})
prep = Prepared.load({prepared!r})
p = prep.preprocessor
train, val = (whole_split(prep.path(s), p.n_inputs, p.task) for s in ("train", "val"))
torch.manual_seed(spec.train.seed)
model = build_model(spec.model.name, p.input_shape, p.output_dim, p.task, spec.model.params)
fit(LossModule(model), model, lambda e: tensor_batches(train, spec.train.batch_size, e),
    lambda: tensor_batches(val, 8192), spec.train, p)
print(time.perf_counter() - t0)
"""


@contextlib.contextmanager
def cluster_up(home: Path):
    """`conductor cluster up` under CONDUCTOR_HOME=home for the block, `cluster down` after it, whatever happened."""
    env = {**os.environ, "CONDUCTOR_HOME": str(home)}
    up = subprocess.run([sys.executable, "-m", "flows", "cluster", "up"], cwd=ROOT, env=env, capture_output=True,
                        text=True)
    try:
        if up.returncode:
            raise SystemExit(f"cluster up failed:\n{up.stderr[-3000:]}")
        yield
    finally:
        subprocess.run([sys.executable, "-m", "flows", "cluster", "down"], cwd=ROOT, env=env, capture_output=True)


def first_epoch(home: Path) -> dict:
    """One `conductor run`; seconds from its start to its first epoch line, and its summary's timings."""
    env = {**os.environ, "CONDUCTOR_HOME": str(home)}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "flows", "run", str(SPEC), "--json", *SETS], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = None
    for line in proc.stderr:
        if first is None and "epoch   1/1" in line:
            first = time.perf_counter() - t0
    out = proc.stdout.read()
    if proc.wait() or first is None:
        raise SystemExit(f"conductor run failed (exit {proc.returncode}, first epoch line seen: {first is not None})")
    return {"first_s": first, "wall_s": time.perf_counter() - t0, **json.loads(out.strip().splitlines()[-1])}


def series(home: Path, repeat: int) -> list[dict]:
    first_epoch(home)  # fills the cache (and warms a cluster's Dask worker)
    return [first_epoch(home) for _ in range(repeat)]


def paired(home: Path, repeat: int) -> tuple[list[dict], list[dict], list[dict]]:
    """(c), (c0) and (c1) in turn, after one run that fills the cache: each triple ran in the same minute."""
    first_epoch(home)
    modes = {"c": {}, "c0": {"CONDUCTOR_PRESTART": "0", "CONDUCTOR_EARLY_WORKERS": "0"},
             "c1": {"CONDUCTOR_COMMAND_SERVER": "off"}}
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    for i in range(repeat):
        for mode in list(modes)[i % 3:] + list(modes)[:i % 3]:
            os.environ.update(modes[mode])
            runs[mode].append(first_epoch(home))
            for var in modes[mode]:
                os.environ.pop(var)
    return runs["c"], runs["c0"], runs["c1"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--no-cluster", action="store_true", help="skip (c), which starts `conductor cluster up`")
    args = ap.parse_args()
    from train_overhead import floor

    from tasks.data import preprocess
    from tasks.spec_file import load_spec

    with tempfile.TemporaryDirectory(prefix="first-epoch-") as tmp:
        home = Path(tmp) / "runs"
        prepared = preprocess(load_spec(SPEC).data, home, log=lambda *_: None)
        t0 = time.perf_counter()
        code = PLAIN.format(root=str(ROOT), spec=str(SPEC), prepared=str(prepared.dir))
        inner = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                     check=True).stdout.split()[-1])
        plain = time.perf_counter() - t0
        f_wall, f_init, f_actor = floor()
        cold = series(home, args.repeat)
        warm, unstarted, own = [], [], []
        if not args.no_cluster:
            with cluster_up(home):
                warm, unstarted, own = paired(home, args.repeat)
    report(plain, inner, (f_wall, f_init, f_actor), cold, warm, unstarted, own)


def report(plain: float, inner: float, floor: tuple, cold: list[dict], warm: list[dict], unstarted: list[dict],
           own: list[dict]) -> None:
    print(f"\nfirst_epoch: digits-mlp, 1 epoch, 1 Ray Train worker; median of {len(cold)} runs after one that "
          f"fills the cache\n")
    print(f"  (a) plain PyTorch script, first epoch done            {plain:6.1f} s (inside python {inner:.1f} s)")
    print(f"  (f) floor: python + ray.init + one actor importing torch {floor[0]:5.1f} s (ray.init {floor[1]:.1f} s, "
          f"actor {floor[2]:.1f} s)")
    for label, runs in (("(b) conductor run, embedded default", cold), ("(c) conductor run, cluster up", warm)):
        if not runs:
            continue
        first = statistics.median(r["first_s"] for r in runs)
        each = ", ".join(f"{r['first_s']:.1f}" for r in runs)
        t = runs[-1]["timings"]
        print(f"  {label:<52} {first:6.1f} s to the first epoch ({each}); "
              f"{first / plain:.1f}x (a), {first - floor[0]:+.1f} s over (f)")
        before = runs[-1]["duration_s"] - t["flow_s"]
        print(f"      last run: before the flow {before:.1f} s (Prefect API {t.get('prefect_start_s', 0):.1f} s beside "
              f"ray.init {t['ray_start_s']:.1f} s), preprocessing wait {t['preprocess_wait_s']:.1f} s, baselines "
              f"(scored beside training) waited for {t['baselines_s']:.1f} s after it, Ray Train {t['train_s']:.1f} s of which epochs {t['epochs_s']:.1f} s and "
              f"test evaluation {t['evaluate_s']:.1f} s; whole command {runs[-1]['wall_s']:.1f} s")
    for label, other in (("(c0) cluster up, no head start (processes, workers)", unstarted),
                         ("(c1) cluster up, in its own process (no command server)", own)):
        if other:
            off = [r["first_s"] for r in other]
            diffs = [w["first_s"] - u["first_s"] for w, u in zip(warm, other, strict=True)]
            print(f"  {label:<52} {statistics.median(off):6.1f} s ({', '.join(f'{x:.1f}' for x in off)}); "
                  f"(c) - {label[:4]} per pair, median {statistics.median(diffs):+.1f} s")
    if warm:
        print(f"\n  goal: first epoch <= 8 s with cluster up: "
              f"{'met' if statistics.median(r['first_s'] for r in warm) <= 8 else 'not met'}")


if __name__ == "__main__":
    main()
