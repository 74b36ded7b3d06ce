"""What pruning and parallel trials buy: the same spec, seed and trial count swept

  (a) with Hyperband pruning, (b) without pruning, both 2 trials at a time, and
  (c) without pruning, 1 trial at a time,

printing the epochs spent (a/b), wall time (a/b), the gap in best validation accuracy, and the
speed-up of parallel 2 over parallel 1 (c/b). Each sweep is `conductor sweep --json` in a fresh
process with its own SQLite storage.
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


def sweep(home: Path, pruner: str, parallel: int, trials: int, epochs: int) -> dict:
    args = [sys.executable, "-m", "flows", "sweep", str(ROOT / "experiments" / "digits-cnn.yaml"), "--json",
            "--trials", str(trials), "--parallel", str(parallel),
            "--set", f"train.epochs={epochs}", "--set", "train.early_stopping=null", "--set", "train.workers=1",
            "--set", f"sweep.pruner={pruner}", "--set", "sweep.sampler=random"]
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "CONDUCTOR_HOME": str(home)})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"sweep failed:\n{proc.stderr[-3000:]}")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    import optuna

    from tasks.sweep import make_storage

    study = optuna.load_study(study_name=summary["study"], storage=make_storage(f"sqlite:///{home / 'optuna.db'}", heartbeat=False))
    epochs_spent = sum(len(t.intermediate_values) for t in study.trials)
    best = max((max(t.intermediate_values.values()) for t in study.trials if t.intermediate_values), default=0.0)
    return {"wall_s": wall, "epochs": epochs_spent, "best_val": summary["best"]["value"], "best_any_epoch": best,
            "trials": summary["trials"], "test_accuracy": summary["metrics"].get("test/accuracy")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=9)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        a = sweep(Path(tmp) / "a", "successive_halving", 2, args.trials, args.epochs)
        b = sweep(Path(tmp) / "b", "none", 2, args.trials, args.epochs)
        c = sweep(Path(tmp) / "c", "none", 1, args.trials, args.epochs)
    print(f"\nsweep_pruning: digits-cnn, {args.trials} trials x up to {args.epochs} epochs, random sampler, seed 0\n")
    for label, r in (("(a) successive halving, parallel 2", a), ("(b) no pruning, parallel 2", b), ("(c) no pruning, parallel 1", c)):
        print(f"  {label:<28} wall {r['wall_s']:7.1f} s  epochs {r['epochs']:4d}  best val/accuracy {r['best_val']:.4f}  "
              f"trials {r['trials']}")
    print(f"\n  epochs spent, pruned/unpruned: {a['epochs'] / b['epochs']:.2f}  (target <= 0.40)")
    print(f"  wall time, pruned/unpruned:    {a['wall_s'] / b['wall_s']:.2f}")
    print(f"  best val/accuracy gap:         {100 * (b['best_val'] - a['best_val']):+.2f} points (target within 0.5)")
    print(f"  parallel 2 speed-up over 1:    {c['wall_s'] / b['wall_s']:.2f}x")


if __name__ == "__main__":
    main()
