"""What pruning and parallel trials buy, with `conductor sweep` in a fresh process each time:

  (a) successive halving (the default pruner), 2 trials at a time
  (b) no pruning, 2 at a time            — both for each seed (train.seed, which also seeds the sampler)
  (c) no pruning, 1 at a time            — seed 0
  (a) and (b) of seed 0 again with `conductor cluster up` running, on the warm workers it keeps: the whole
      command's fixed cost (Prefect's API, Ray's start) is then the cluster's, not each command's

Prints epochs pruned/unpruned, wall pruned/unpruned (goal: within 0.1 of the epochs ratio), the gap in
best validation accuracy (goal: <= 0.35 of the epochs, within 0.5 points, averaged over the seeds), and
parallel 2 over parallel 1 in epochs per wall second (goal >= 1.6x), one torch thread per trial in both.
"""
from __future__ import annotations

import argparse
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


def sweep(home: Path, pruner: str, parallel: int, trials: int, epochs: int, seed: int, study: str = "") -> dict:
    args = [sys.executable, "-m", "flows", "sweep", str(ROOT / "experiments" / "digits-cnn.yaml"), "--json",
            *(["--study", study] if study else []),
            "--trials", str(trials), "--parallel", str(parallel), "--set", f"train.seed={seed}",
            "--set", f"train.epochs={epochs}", "--set", "train.early_stopping=null", "--set", "train.workers=1",
            "--set", f"sweep.pruner={pruner}", "--set", "sweep.sampler=random"]
    env = {**os.environ, "CONDUCTOR_HOME": str(home), "CONDUCTOR_TRIAL_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"sweep failed:\n{proc.stderr[-3000:]}")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    import optuna

    from tasks.sweep import make_storage

    url = os.environ.get("CONDUCTOR_OPTUNA_STORAGE") or f"sqlite:///{home / 'optuna.db'}"
    study = optuna.load_study(study_name=summary["study"], storage=make_storage(url, heartbeat=False))
    t = summary["timings"]
    return {"wall_s": wall, "trials_s": t["optimize_s"] - t.get("pool_wait_s", 0),  # from the first trial on
            "epochs": sum(len(tr.intermediate_values) for tr in study.trials), "best_val": summary["best"]["value"],
            "trials": summary["trials"], "epoch_s": epoch_seconds(home / "digits-cnn" / "sweeps" / summary["study"])}


def epoch_seconds(folder: Path) -> float:
    """The seconds the sweep's trials spent in their epochs (each trial's progress.json): an epoch's cost depends
    on the trial's batch size, so the trials a pruner keeps can cost more per epoch than the average one."""
    return sum(r["epoch_seconds"] for p in folder.glob("t*/progress.json")
               for r in json.loads(p.read_text())["history"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=9)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--no-warm", action="store_true", help="skip the pair run with `conductor cluster up` running")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            a = sweep(Path(tmp) / f"a{seed}", "successive_halving", 2, args.trials, args.epochs, seed)
            b = sweep(Path(tmp) / f"b{seed}", "none", 2, args.trials, args.epochs, seed)
            rows.append((seed, a, b))
        c = sweep(Path(tmp) / "c", "none", 1, args.trials, args.epochs, 0)
        warm = None
        if not args.no_warm:  # seed 0 again on the warm workers `cluster up` keeps (one small sweep starts them)
            from first_epoch import cluster_up

            home = Path(tmp) / "w"
            with cluster_up(home):
                sweep(home, "none", 2, 2, 1, 0, "start-workers")
                warm = (sweep(home, "successive_halving", 2, args.trials, args.epochs, 0, "warm-a"),
                        sweep(home, "none", 2, args.trials, args.epochs, 0, "warm-b"))
    print(f"\nsweep_pruning: digits-cnn, {args.trials} trials x up to {args.epochs} epochs, random sampler\n")
    for seed, a, b in rows:
        for label, r in (("(a) successive halving, parallel 2", a), ("(b) no pruning, parallel 2", b)):
            print(f"  seed {seed} {label:<36} wall {r['wall_s']:6.1f} s (trials {r['trials_s']:5.1f} s)  "
                  f"epochs {r['epochs']:4d} ({r['epoch_s']:5.1f} s)  best val/accuracy {r['best_val']:.4f}")
    print(f"  seed 0 {'(c) no pruning, parallel 1':<36} wall {c['wall_s']:6.1f} s (trials {c['trials_s']:5.1f} s)  "
          f"epochs {c['epochs']:4d}  best val/accuracy {c['best_val']:.4f}")
    epochs = statistics.mean(a["epochs"] / b["epochs"] for _, a, b in rows)
    wall = statistics.mean(a["wall_s"] / b["wall_s"] for _, a, b in rows)
    trials_wall = statistics.mean(a["trials_s"] / b["trials_s"] for _, a, b in rows)
    gap = statistics.mean(100 * (b["best_val"] - a["best_val"]) for _, a, b in rows)
    b0 = rows[0][2]
    speedup = (b0["epochs"] / b0["trials_s"]) / (c["epochs"] / c["trials_s"])
    print(f"\n  epochs spent, pruned/unpruned (mean of {args.seeds} seeds): {epochs:.2f}  (goal <= 0.35)")
    epoch_s = statistics.mean(a["epoch_s"] / b["epoch_s"] for _, a, b in rows)
    print(f"  wall time, pruned/unpruned: {wall:.2f} whole command, {trials_wall:.2f} trials alone "
          f"(goal: within 0.1 of {epochs:.2f})")
    print(f"  seconds inside epochs, pruned/unpruned: {epoch_s:.2f} (what the trials alone would be with no cost "
          f"between epochs: the kept trials' epochs cost more or less than the average one)")
    if warm:
        a, b = warm
        print(f"  with cluster up (warm workers), seed 0: pruned {a['wall_s']:.1f} s ({a['epochs']} epochs), unpruned "
              f"{b['wall_s']:.1f} s ({b['epochs']} epochs): wall {a['wall_s'] / b['wall_s']:.2f} whole command, "
              f"{a['trials_s'] / b['trials_s']:.2f} trials alone, epochs {a['epochs'] / b['epochs']:.2f}, seconds inside "
              f"epochs {a['epoch_s'] / b['epoch_s']:.2f}")
    print(f"  best val/accuracy, unpruned - pruned: {gap:+.2f} points (goal within 0.5)")
    print(f"  parallel 2 over parallel 1, epochs per second of the trials: {speedup:.2f}x (goal >= 1.6)")


if __name__ == "__main__":
    main()
