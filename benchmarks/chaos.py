"""Chaos, measured: what survives kill -9, with `conductor` as a user runs it (a fresh process each time).

  (a) kill -9 of one Ray Train worker at a random epoch of `conductor run`, N times (default 5), against
      3 undisturbed runs of the same spec: every run completes, epochs redone per kill (goal <= 1), its
      test accuracy within the spread of the undisturbed runs, one W&B run id per run;
  (b) kill -9 of `conductor run` itself mid-training, then the same command again: the second run
      completes, reuses the preprocessing cache and leaves no `.tmp-*` or Ray Train storage behind;
  (c) kill -9 of `conductor sweep` at random moments, K times (default 3), then `--resume`: exactly
      `--trials` trials COMPLETE+PRUNED, no completed trial lost or run again.

The peer is the undisturbed run: the figures are ratios and counts against it.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SPEC = ROOT / "experiments" / "digits-mlp.yaml"
RUN_SETS = ["--set", "train.epochs=8", "--set", "train.workers=2", "--set", "train.early_stopping=null",
            "--set", "train.max_failures=3"]


def cli(home: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "CONDUCTOR_HOME": str(home), "WANDB_MODE": "offline"}
    return subprocess.Popen([sys.executable, "-m", "flows", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def epochs_seen(stderr: str) -> list[int]:
    """The per-epoch progress lines the run printed: '[name] epoch   3/8 ...'."""
    return [int(line.split(" epoch ", 1)[1].split("/", 1)[0]) for line in stderr.splitlines() if " epoch " in line
            and "/" in line.split(" epoch ", 1)[1]]


def train_workers(root: psutil.Process) -> list[psutil.Process]:
    found = []
    for p in root.children(recursive=True):
        try:
            if "RayTrainWorker" in " ".join(p.cmdline() or []):
                found.append(p)
        except psutil.Error:
            continue
    return found


def run_with_worker_kill(home: Path, kill_at_s: float | None) -> dict:
    proc, killed = cli(home, "run", str(SPEC), "--json", *RUN_SETS), False
    t0 = time.perf_counter()
    while kill_at_s is not None and not killed and proc.poll() is None:
        workers = train_workers(psutil.Process(proc.pid))
        if workers and time.perf_counter() - t0 > kill_at_s:
            os.kill(random.choice(workers).pid, signal.SIGKILL)
            killed = True
        time.sleep(0.1)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({proc.returncode}):\n{err[-3000:]}")
    summary = json.loads(out.strip().splitlines()[-1])
    seen = epochs_seen(err)
    return {"killed": killed, "redone": len(seen) - len(set(seen)), "accuracy": summary["metrics"]["test/accuracy"],
            "wall_s": time.perf_counter() - t0}


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a command and everything it started (its embedded Ray, Dask, Prefect server)."""
    family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    for p in family:
        try:
            p.kill()
        except psutil.Error:
            pass
    proc.wait()


def kill_run_then_rerun(home: Path) -> dict:
    proc = cli(home, "run", str(SPEC), "--json", *RUN_SETS)
    while not train_workers(psutil.Process(proc.pid)) and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(3)
    kill_tree(proc)
    again = cli(home, "run", str(SPEC), "--json", *RUN_SETS)
    out, err = again.communicate()
    summary = json.loads(out.strip().splitlines()[-1]) if again.returncode == 0 else {}
    leftovers = [str(p.relative_to(home)) for p in home.rglob(".tmp-*")]
    leftovers += [str(p.relative_to(home)) for p in (home / ".ray_storage").glob("[!.]*")]
    return {"rc": again.returncode, "cached": summary.get("preprocess", {}).get("cached"), "leftovers": leftovers}


def sweep_with_kills(home: Path, kills: int, trials: int) -> dict:
    args = ["sweep", str(ROOT / "experiments" / "digits-cnn.yaml"), "--json", "--trials", str(trials),
            "--parallel", "2", "--set", "train.epochs=4", "--set", "train.workers=1", "--set", "sweep.sampler=random"]
    import optuna

    from tasks.sweep import make_storage

    home.mkdir(parents=True, exist_ok=True)
    storage = make_storage(f"sqlite:///{home / 'optuna.db'}", heartbeat=False)
    complete_before_kill = set()
    for k in range(kills):
        proc = cli(home, *args, *(["--resume"] if k else []))
        time.sleep(random.uniform(12, 25))
        kill_tree(proc)
        try:
            study = optuna.load_study(study_name="digits-cnn", storage=storage)
            complete_before_kill |= {t.number for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}
        except KeyError:
            pass
    proc = cli(home, *args, "--resume")
    out, err = proc.communicate()
    study = optuna.load_study(study_name="digits-cnn", storage=storage)
    done = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    still = {t.number for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}
    return {"rc": proc.returncode, "finished": len(done), "lost": len(complete_before_kill - still),
            "params_twice": len(done) - len({tuple(sorted(t.params.items())) for t in done})}


def worker_kills(home: Path, kills: int) -> None:
    calm = [run_with_worker_kill(home / "calm", None) for _ in range(3)]
    stormy = [run_with_worker_kill(home / "stormy", random.uniform(15, 35)) for _ in range(kills)]
    low, high = min(r["accuracy"] for r in calm), max(r["accuracy"] for r in calm)
    spread = max(high - low, 0.01)
    print(f"(a) worker kill-9: {sum(r['killed'] for r in stormy)}/{len(stormy)} runs hit, all completed; "
          f"epochs redone per run {[r['redone'] for r in stormy]} (goal <= 1); test accuracy "
          f"{statistics.mean(r['accuracy'] for r in stormy):.4f} vs undisturbed {low:.4f}..{high:.4f}; "
          f"within the spread (+-{spread:.3f}): "
          f"{sum(low - spread <= r['accuracy'] <= high + spread for r in stormy)}/{len(stormy)}; wall ratio "
          f"{statistics.mean(r['wall_s'] for r in stormy) / statistics.mean(r['wall_s'] for r in calm):.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--sweep-kills", type=int, default=3)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parts", default="abc", help="which of (a), (b), (c) to run")
    args = ap.parse_args()
    random.seed(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        if "a" in args.parts:
            worker_kills(home, args.kills)
        if "b" in args.parts:
            b = kill_run_then_rerun(home / "rerun")
            print(f"(b) conductor run kill-9 then again: exit {b['rc']}, preprocessing cache reused {b['cached']}, "
                  f"leftovers {b['leftovers'] or 'none'}")
        if "c" in args.parts:
            c = sweep_with_kills(home / "sweep", args.sweep_kills, args.trials)
            print(f"(c) sweep kill-9 x{args.sweep_kills} then --resume: exit {c['rc']}, {c['finished']}/{args.trials} "
                  f"finished (goal exactly), completed trials lost {c['lost']}, parameters run twice "
                  f"{c['params_twice']}")


if __name__ == "__main__":
    main()
