"""The same sweep run by the tools a user would pick instead, each in a fresh process:

  (a) plain Optuna in one process: study.optimize, the model trained inside the objective with torch.optim's
      optimizers, as a user writes it
  (a') the same with conductor's optimizers (tasks/train/optim.py: torch's own classes, stepped without importing
      torch._dynamo), to show what that part of conductor's loop saves a process by itself
  (b) Ray Tune: Tuner + OptunaSearch + ASHA, reuse_actors, 2 trials at a time, torch.optim's optimizers as in (a)
  (c) `conductor sweep` with the spec's defaults (W&B offline on, as a user runs it), parallel 2:
      cold (no conductor, Ray or Prefect process alive: the first command in a new home, which also creates
      Prefect's database, then a second one), then with `conductor cluster up` running: its first
      sweep (which starts the warm workers the cluster keeps) and warm (the next sweep, which reuses them, started
      by `cluster up`'s command server from its warm imports), alternated with "warm own proc", the same sweep
      with CONDUCTOR_COMMAND_SERVER=off (the command imports the engines itself, as it did before that server)

Work: scikit-learn's digits, the CNN of experiments/digits-cnn.yaml (conv 32-64, hidden 128), 12 trials
x up to 9 epochs, random sampler, successive halving (Optuna's for a and c, ASHA for b), space lr x
dropout x batch size, one torch thread per trial where trials run side by side. All three read the
same preprocessed splits (preprocessed once, before any clock starts).
Prints wall times, epochs, best val accuracy, the ratios, (c)'s breakdown and its per-trial overhead, and for each
the CPU every process of the machine used meanwhile, by kind (sampled from /proc every 0.2 s, ~2 % of a core): on
2 cores a cold sweep keeps both busy from its first second to its last trial, so its wall is its CPU over two.

--repeat N (default 3): (a), (a') and (c) cold run N times each, alternated (a, a', c, a, a', c, ...), and (c) warm
N times on the cluster (alternated with N in its own process); the ratios are of the medians (this 2-core machine's
speed swings by up to ~20 % within minutes: two runs of the same sweep in the same minute differed by 4 s), each
run's wall is printed, and the breakdown is the median run's. (b) and the two once-only sweeps (a new home's first,
the cluster's first) run once.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SPEC = ROOT / "experiments" / "digits-cnn.yaml"


# who used the CPU while a sweep ran, by the process's command line (first match wins; "spawn_main": the processes
# of `cluster up`'s Dask workers)
CPU_KINDS = (("the command", ("-m flows",)), ("Prefect's API", ("uvicorn", "prefect server")),
             ("Prefect's worker", ("prefect worker",)), ("Dask", ("dask", "distributed", "spawn_main")),
             ("plain Optuna / Tune's driver", ("--child",)), ("W&B", ("wandb",)),
             ("Ray's own processes", ("gcs_server", "raylet/raylet", "dashboard/dashboard.py", "dashboard/agent.py",
                                      "DashboardAgent", "RuntimeEnvAgent", "runtime_env", "monitor.py", "ray start",
                                      "ray.util.client")),
             ("Ray workers (the trials)", ("ray::", "default_worker.py")))


def _proc_cpu(pid: str, tick: float) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * tick
    except (OSError, IndexError, ValueError):
        return None


def _proc_kind(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "other"
    return next((kind for kind, marks in CPU_KINDS if any(m in cmd for m in marks)), "other")


@contextmanager
def cpu_use(period: float = 0.2):
    """The CPU seconds every process of this machine used inside the block (sampled from /proc every `period`
    s: a process that lives less than that may be missed), by kind; yields a dict filled when the block ends."""
    tick, me = 1.0 / os.sysconf("SC_CLK_TCK"), str(os.getpid())
    first, last, kinds, out, stop = {}, {}, {}, {}, threading.Event()

    def sample(initial: bool = False) -> None:
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or pid == me or (cpu := _proc_cpu(pid, tick)) is None:
                continue
            if pid not in first:
                first[pid] = cpu if initial else 0.0
            if pid not in kinds or cpu > last[pid]:  # a Ray worker's title changes when it becomes an actor
                kind = _proc_kind(pid)  # "other" too for a process that has just exited (no command line)
                kinds[pid] = kind if kind != "other" else kinds.get(pid, kind)
            last[pid] = cpu

    def sampling() -> None:
        while not stop.wait(period):
            sample()

    sample(initial=True)
    t0 = time.perf_counter()
    thread = threading.Thread(target=sampling, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join()
        sample()
        by = Counter()
        for pid, cpu in last.items():
            by[kinds.get(pid, "other")] += cpu - first[pid]
        out.update(wall_s=time.perf_counter() - t0, by={k: v for k, v in by.most_common() if v >= 0.05})


def cpu_line(use: dict) -> str:
    total, cores = sum(use["by"].values()), os.cpu_count() or 1
    parts = ", ".join(f"{k} {v:.1f}" for k, v in use["by"].items())
    return (f"CPU {total:.1f} core-s in {use['wall_s']:.1f} s ({total / use['wall_s'] / cores:.0%} of {cores} cores): "
            f"{parts}")


def overrides(trials: int, epochs: int) -> dict:
    return {"train.epochs": epochs, "train.early_stopping": None, "train.workers": 1, "sweep.sampler": "random",
            "sweep.pruner": "successive_halving", "sweep.trials": trials, "sweep.parallel": 2}


def child_optuna(spec, prepared_dir: str) -> dict:
    """(a) and (a'): thirty lines of plain Optuna, with conductor's own loop and data so the work is the same."""
    import optuna

    from tasks.sweep import make_pruner, make_sampler, suggest, trial_spec
    from tasks.sweep.trial import TrialData, TrialJob, run_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data, raw, epochs = TrialData(prepared_dir), spec.model_dump(mode="json"), []
    study = optuna.create_study(direction="maximize", sampler=make_sampler(spec.sweep, spec.train.seed),
                                pruner=make_pruner(spec.sweep, spec.train.epochs))

    def objective(trial):
        params = suggest(trial, spec.sweep.space)
        job = TrialJob(trial._trial_id, trial.number, params, trial_spec(raw, params).model_dump(mode="json"),
                       prepared_dir, tempfile.mkdtemp(), "val/accuracy", threads=os.cpu_count() or 1)
        try:
            progress, _ = run_trial(trial, job, data)
        finally:
            epochs.append(len(trial.study._storage.get_trial(trial._trial_id).intermediate_values))
        return next(r["val/accuracy"] for r in progress.history if r["epoch"] == progress.best_epoch)

    study.optimize(objective, n_trials=spec.sweep.trials)
    return {"epochs": sum(epochs), "best_val": study.best_value}


def child_tune(spec, prepared_dir: str) -> dict:
    """(b): Ray Tune runs the same trials on reused actors; ASHA stops the weak ones."""
    import optuna
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR")
    space = {k.replace(".", "__"): (optuna.distributions.CategoricalDistribution(d.choices) if d.choices is not None
                                    else optuna.distributions.FloatDistribution(d.low, d.high, log=d.log))
             for k, d in spec.sweep.space.items()}
    raw = spec.model_dump(mode="json")

    def trainable(config):
        import torch._dynamo  # noqa: F401 - what torch.optim's first optimizer imports in a user's trainable

        from models import build_model
        from tasks.sweep import trial_spec
        from tasks.sweep.trial import TrialData, reseed
        from tasks.train import LossModule, fit

        s = trial_spec(raw, {k.replace("__", "."): v for k, v in config.items()})
        data = TrialData(prepared_dir)
        reseed(s.train.seed, 1)
        p = data.preprocessor
        model = build_model(s.model.name, p.input_shape, p.output_dim, p.task, s.model.params,
                            target_index=p.target_index)
        train, val = data.batches(s.train.batch_size, s.train.seed)
        fit(LossModule(model), model, train, val, s.train, p,
            report=lambda row, *_: tune.report({"val_accuracy": row["val/accuracy"]}) and False)

    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        tune_config=tune.TuneConfig(
            search_alg=OptunaSearch(space, metric="val_accuracy", mode="max",
                                    sampler=optuna.samplers.RandomSampler(seed=spec.train.seed)),
            scheduler=ASHAScheduler(metric="val_accuracy", mode="max", max_t=spec.train.epochs, grace_period=1,
                                    reduction_factor=3),
            num_samples=spec.sweep.trials, max_concurrent_trials=2, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=tempfile.mkdtemp(), name="b", verbose=0))
    grid = tuner.fit()
    epochs = sum(int(r.metrics.get("training_iteration", 0)) for r in grid if r.metrics)
    full = [r.metrics["val_accuracy"] for r in grid if r.metrics and r.metrics["training_iteration"] >= spec.train.epochs]
    ray.shutdown()
    return {"epochs": epochs, "best_val": max(full) if full else None}


def child(mode: str, prepared_dir: str, trials: int, epochs: int, out: str) -> None:
    from tasks.spec_file import load_spec

    spec = load_spec(SPEC, overrides(trials, epochs))
    if mode == "a":
        # torch.optim's first optimizer imports torch._dynamo (~1 s, and ~120k objects every full collection walks
        # again); with it loaded, conductor's loop uses torch.optim's own classes (the same arithmetic, bit for bit)
        import torch._dynamo  # noqa: F401
    res = (child_optuna if mode in ("a", "a2") else child_tune)(spec, prepared_dir)
    Path(out).write_text(json.dumps(res))


def run_peer(mode: str, prepared_dir: str, trials: int, epochs: int, tmp: Path) -> dict:
    out = tmp / f"{mode}.json"
    with cpu_use() as use:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--child", mode, "--prepared", prepared_dir, "--trials",
                               str(trials), "--epochs", str(epochs), "--out", str(out)], capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"({mode}) failed:\n{proc.stderr[-3000:]}")
    return {"wall_s": wall, "cpu": use, **json.loads(out.read_text())}


def conductor(home: Path, trials: int, epochs: int, study: str, extra_env: dict | None = None) -> dict:
    """(c): the CLI as a user runs it, in a fresh process."""
    import optuna

    from tasks.sweep import make_storage

    args = [sys.executable, "-m", "flows", "sweep", str(SPEC), "--json", "--study", study]
    for k, v in overrides(trials, epochs).items():
        args += ["--set", f"{k}={json.dumps(v) if v is not None else 'null'}"]
    env = {**os.environ, "CONDUCTOR_HOME": str(home), "CONDUCTOR_TRIAL_THREADS": "1", **(extra_env or {})}
    with cpu_use() as use:
        t0 = time.perf_counter()
        proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env)
        wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"(c) failed:\n{proc.stderr[-3000:]}")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    url = os.environ.get("CONDUCTOR_OPTUNA_STORAGE") or f"sqlite:///{home / 'optuna.db'}"
    trials_ = optuna.load_study(study_name=study, storage=make_storage(url, heartbeat=False)).trials
    overheads = []
    for t in sorted(trials_, key=lambda t: t.number)[2:]:  # after each worker's first trial
        prog = json.loads((home / "digits-cnn" / "sweeps" / study / f"t{t.number:03d}" / "progress.json").read_text())
        spent = (t.datetime_complete - t.datetime_start).total_seconds()
        overheads.append(spent - sum(r["epoch_seconds"] for r in prog["history"]))
    return {"wall_s": wall, "cpu": use, "summary": summary, "epochs": sum(len(t.intermediate_values) for t in trials_),
            "best_val": summary["best"]["value"], "overhead_median_s": statistics.median(overheads)}


def breakdown(c: dict) -> str:
    t = c["summary"]["timings"]
    before = c["summary"]["duration_s"] - t["flow_s"]
    trials = t["optimize_s"] - t.get("pool_wait_s", 0)  # the workers close after the best trial registers
    return (f"before the flow {before:.1f}s (imports, checks, Prefect API {t.get('prefect_start_s', 0):.1f}s beside "
            f"ray.init {t['ray_start_s']:.1f}s, Dask) · in the flow: preprocessing {t['preprocess_s']:.1f}s, warm "
            f"workers ready {t.get('pool_start_s', 0):.1f}s after their start (the sweep waited "
            f"{t.get('pool_wait_s', 0):.1f}s), trials {trials:.1f}s, W&B drain + workers down "
            f"{t.get('pool_close_s', 0):.1f}s, best trial registered {t.get('register_s', 0):.1f}s · after the "
            f"flow (summary, exit) {c['wall_s'] - c['summary']['duration_s']:.1f}s · per-trial overhead (median "
            f"after the first) {c['overhead_median_s']:.3f}s")


def median_run(runs: list[dict]) -> dict:
    """The run whose wall is the median (the lower middle one of an even count), with every run's wall."""
    ranked = sorted(runs, key=lambda r: r["wall_s"])
    return {**ranked[(len(ranked) - 1) // 2], "walls": [r["wall_s"] for r in runs]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=9)
    ap.add_argument("--repeat", type=int, default=3, help="runs of (a), (c) cold and (c) warm each; ratios of medians")
    ap.add_argument("--no-warm", action="store_true", help="skip (c) warm, which starts `conductor cluster up`")
    ap.add_argument("--child")
    ap.add_argument("--prepared")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.prepared, args.trials, args.epochs, args.out)
    from tasks.data import preprocess
    from tasks.spec_file import load_spec

    with tempfile.TemporaryDirectory(prefix="sweep-peers-") as tmp:
        home = Path(tmp) / "runs"
        prepared = preprocess(load_spec(SPEC).data, home, log=lambda *_: None)
        n = max(1, args.repeat)
        res = {"b": run_peer("b", str(prepared.dir), args.trials, args.epochs, Path(tmp)),
               # nothing of conductor's alive before any cold one: the first command in a new home also creates
               # Prefect's database (from the template); every later one finds it
               "c cold new home": conductor(home, args.trials, args.epochs, "cold-new")}
        a_runs, own_runs, cold_runs = [], [], []
        for i in range(n):  # alternated, so that all see the same minutes of this machine
            a_runs.append(run_peer("a", str(prepared.dir), args.trials, args.epochs, Path(tmp)))
            own_runs.append(run_peer("a2", str(prepared.dir), args.trials, args.epochs, Path(tmp)))
            cold_runs.append(conductor(home, args.trials, args.epochs, f"cold{i}"))
        res["a"], res["a'"], res["c cold"] = median_run(a_runs), median_run(own_runs), median_run(cold_runs)
        if not args.no_warm:
            from first_epoch import cluster_up

            with cluster_up(home):
                # the first sweep on the cluster starts its warm workers (tasks/sweep/warm.py); the next finds them
                res["c 1st on cluster"] = conductor(home, args.trials, args.epochs, "warm-first")
                warm, own = [], []
                for i in range(n):  # alternated: with the command server (cluster up's), and in its own process
                    warm.append(conductor(home, args.trials, args.epochs, f"warm{i}"))
                    own.append(conductor(home, args.trials, args.epochs, f"own{i}",
                                         {"CONDUCTOR_COMMAND_SERVER": "off"}))
                res["c warm"], res["c warm own proc"] = median_run(warm), median_run(own)
    print(f"\nsweep_peers: digits CNN, {args.trials} trials x <= {args.epochs} epochs, random sampler, "
          "successive halving, 2 at a time\n")
    for name in ("a", "a'", "b", "c cold new home", "c cold", "c 1st on cluster", "c warm", "c warm own proc"):
        if name not in res:
            continue
        r = res[name]
        each = f"  (median of {', '.join(f'{w:.1f}' for w in r['walls'])})" if len(r.get("walls", [])) > 1 else ""
        print(f"  ({name:<17}) wall {r['wall_s']:6.1f} s  epochs {r['epochs']:4d}  best val/accuracy {r['best_val']}{each}")
    for name in ("c cold new home", "c cold", "c 1st on cluster", "c warm", "c warm own proc"):
        if name in res:
            c = res[name]
            ratios = "   ".join(f"({name}) / ({peer}) = {c['wall_s'] / res[peer]['wall_s']:.2f}x"
                                   for peer in ("a", "b", "a'"))
            print(f"\n  {ratios}")
            print(f"  ({name}) {breakdown(c)}")
            print(f"  ({name}) {cpu_line(c['cpu'])}")
    print()
    for name in ("a", "a'", "b"):
        print(f"  ({name}) {cpu_line(res[name]['cpu'])}")
    print("\n  goals: warm <= 1.2x (a) and < (b); cold <= 2x (a); per-trial overhead <= 1 s")


if __name__ == "__main__":
    main()
