"""Memory of warm trial workers over hundreds of trials, against plain Optuna running the same trials.

  (a) plain Optuna in one process: study.optimize, the model trained inside the objective; its RSS after each trial
  (c) `conductor sweep` (embedded, parallel 2, W&B offline as a user runs it): the RSS of each warm worker
      (`ray::TrialWorker`), sampled every 0.25 s from outside while the trials run

Work: scikit-learn's digits, the CNN of experiments/digits-cnn.yaml, --trials trials (default 200) of one epoch
each, random sampler. Reported per process: RSS once a quarter of its trials are done (allocators and caches
warmed) and at the end, and the growth per 100 trials after that quarter; the ratio of conductor's growth to
plain Optuna's. A warm worker that kept each trial's model, optimizer or W&B run would grow by megabytes per
trial.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SPEC = ROOT / "experiments" / "digits-cnn.yaml"
MB = 2**20


def overrides(trials: int) -> dict:
    return {"train.epochs": 1, "train.early_stopping": None, "train.workers": 1, "sweep.sampler": "random",
            "sweep.pruner": "none", "sweep.trials": trials, "sweep.parallel": 2}


def child_optuna(prepared_dir: str, trials: int, out: str) -> None:
    """(a): plain Optuna with conductor's own loop and data, its RSS after every trial."""
    import optuna
    import psutil

    from tasks.spec_file import load_spec
    from tasks.sweep import make_sampler, suggest, trial_spec
    from tasks.sweep.trial import TrialData, TrialJob, run_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = load_spec(SPEC, overrides(trials))
    data, raw, rss = TrialData(prepared_dir), spec.model_dump(mode="json"), []
    study = optuna.create_study(direction="maximize", sampler=make_sampler(spec.sweep, spec.train.seed))

    def objective(trial):
        params = suggest(trial, spec.sweep.space)
        job = TrialJob(trial._trial_id, trial.number, params, trial_spec(raw, params).model_dump(mode="json"),
                       prepared_dir, tempfile.mkdtemp(), "val/accuracy", threads=1)
        progress, _ = run_trial(trial, job, data)
        return progress.history[-1]["val/accuracy"]

    study.optimize(objective, n_trials=trials, callbacks=[lambda *_: rss.append(psutil.Process().memory_info().rss)])
    Path(out).write_text(json.dumps({"rss": rss}))


def workers_rss(samples: list, stop: threading.Event) -> None:
    """Every 0.25 s: (time, pid, rss) of each process titled ray::TrialWorker."""
    import psutil

    while not stop.is_set():
        now = time.perf_counter()
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                if (p.info["cmdline"] or [""])[0].startswith("ray::TrialWorker"):
                    samples.append((now, p.info["pid"], p.memory_info().rss))
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        stop.wait(0.25)


def conductor(home: Path, trials: int) -> dict:
    args = [sys.executable, "-m", "flows", "sweep", str(SPEC), "--json", "--study", "memory"]
    for k, v in overrides(trials).items():
        args += ["--set", f"{k}={json.dumps(v) if v is not None else 'null'}"]
    env = {**os.environ, "CONDUCTOR_HOME": str(home), "CONDUCTOR_TRIAL_THREADS": "1"}
    samples, stop = [], threading.Event()
    sampler = threading.Thread(target=workers_rss, args=(samples, stop), daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"(c) failed:\n{proc.stderr[-3000:]}")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    timings = summary["timings"]
    # the trials ran from the workers' readiness until optimize ended; the samples of that span, per worker
    end = t0 + summary["duration_s"] - summary["flow_s"] + timings["optimize_s"]
    start = end - (timings["optimize_s"] - timings.get("pool_wait_s", 0))
    by_pid: dict[int, list] = {}
    for t, pid, rss in samples:
        if start <= t <= end:
            by_pid.setdefault(pid, []).append((t, rss))
    # a worker's fork that has not exec'd yet carries its title for an instant (W&B starts helpers per run)
    by_pid = {pid: points for pid, points in by_pid.items() if len(points) >= 5}
    return {"wall_s": wall, "trials": summary["trials"], "by_pid": by_pid}


def growth(points: list, per: float) -> tuple[float, float, float]:
    """(RSS at a quarter, RSS at the end, growth per 100 trials after the quarter), in MiB; `per`: trials per point."""
    quarter = points[len(points) // 4]
    last = points[-1]
    trials_between = max(1.0, (len(points) - 1 - len(points) // 4) * per)
    return quarter / MB, last / MB, (last - quarter) / MB / trials_between * 100


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--child")
    ap.add_argument("--prepared")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.child:
        return child_optuna(args.prepared, args.trials, args.out)
    from tasks.data import preprocess
    from tasks.spec_file import load_spec

    with tempfile.TemporaryDirectory(prefix="warm-memory-") as tmp:
        home = Path(tmp) / "runs"
        prepared = preprocess(load_spec(SPEC).data, home, log=lambda *_: None)
        out = Path(tmp) / "a.json"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--child", "a", "--prepared", str(prepared.dir), "--trials",
                        str(args.trials), "--out", str(out)], check=True, capture_output=True, text=True)
        a_wall, a_rss = time.perf_counter() - t0, json.loads(out.read_text())["rss"]
        c = conductor(home, args.trials)
    print(f"\nwarm_memory: digits CNN, {args.trials} trials of one epoch, random sampler\n")
    q, last, a_growth = growth(a_rss, 1.0)
    print(f"  (a) plain Optuna    wall {a_wall:6.1f} s   RSS {q:7.1f} MiB at a quarter -> {last:7.1f} MiB at the end "
          f"({a_growth:+.2f} MiB per 100 trials)")
    done = c["trials"]["complete"] + c["trials"]["pruned"]
    growths = []
    for pid, points in sorted(c["by_pid"].items()):
        per = done / len(c["by_pid"]) / max(1, len(points) - 1)  # trials per sample, each worker ran its share
        q, last, g = growth([r for _, r in points], per)
        growths.append(g)
        print(f"  (c) warm worker {pid:<7d}        RSS {q:7.1f} MiB at a quarter -> {last:7.1f} MiB at the end "
              f"({g:+.2f} MiB per 100 trials, {len(points)} samples)")
    print(f"  (c) conductor sweep wall {c['wall_s']:6.1f} s   trials {c['trials']}   wall (c) / (a) = "
          f"{c['wall_s'] / a_wall:.2f}x")
    worst = max(growths) if growths else float("nan")
    print(f"\n  worst warm worker growth {worst:+.2f} MiB per 100 trials; plain Optuna {a_growth:+.2f} "
          f"(difference {worst - a_growth:+.2f} MiB per 100 trials)")
    print("  goal: a warm worker's memory stays flat over hundreds of trials (as flat as one plain Optuna process)")


if __name__ == "__main__":
    main()
