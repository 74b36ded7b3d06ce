"""Warm trial workers with real Ray actors and a real Optuna storage: exact trial counts, pruning,
one W&B run per trial, a dead worker failing only its own trial, a warm worker giving a fresh
process's result, and the CPUs given back."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import optuna
import pytest

from tasks.spec import validate
from tasks.sweep import make_storage

pytestmark = pytest.mark.integration

SPEC = {
    "name": "warm",
    "data": {"source": "builtin:digits", "target": "label", "shape": [1, 8, 8]},
    "model": {"name": "cnn", "params": {"channels": [8], "hidden": 16}},
    "train": {"epochs": 3, "workers": 1, "batch_size": 64, "early_stopping": None},
    "sweep": {"metric": "val/accuracy", "direction": "maximize", "trials": 4, "parallel": 2,
              "sampler": "random", "pruner": "median",
              "space": {"train.lr": {"low": 1.0e-4, "high": 3.0e-2, "log": True}}},
}


def context(home: Path, study: str, spec: dict = SPEC):
    from tasks.data import preprocess
    from tasks.sweep.objective import SweepContext

    spec_obj = validate(spec)
    prepared = preprocess(spec_obj.data, home, log=lambda *_: None)
    return SweepContext(spec_obj, prepared, study, f"sqlite:///{home / 'optuna.db'}", home, 2, "offline")


def finished(study: optuna.Study) -> list:
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return [t for t in study.get_trials() if t.state in done]


def test_warm_sweep_finishes_exactly_and_tracks_every_trial(engines, home):
    import ray
    from wandb_files import read_run

    from tasks.progress import echo_to
    from tasks.sweep.optimize import optimize

    ctx, lines = context(home, "warm-exact"), []
    with echo_to(lines.append):  # what a flow copies to its Prefect run log (flows/common.py `logged`)
        out = optimize(ctx, n_trials=4, resume=False)
    study = optuna.load_study(study_name="warm-exact", storage=make_storage(ctx.storage_url, heartbeat=False))
    assert len(finished(study)) == 4 and out["counts"]["failed"] == 0
    for t in finished(study):  # each trial's outcome is one line of the run's story
        assert any(line.startswith(f"[t{t.number}] ") for line in lines), (t.number, lines)
    assert any(line.startswith("trials 4/4:") for line in lines), lines
    for t in finished(study):
        steps = sorted(t.intermediate_values)
        assert steps == list(range(1, len(steps) + 1))  # every epoch reached the trial
        assert (ctx.trial_dir(t.number) / "model.pt").is_file()
        logged = read_run(t.user_attrs["wandb_run_dir"])
        assert logged["name"] == f"warm-exact-t{t.number}" and logged["group"] == "warm-exact"
        curve = {h["epoch"]: h["val/accuracy"] for h in logged["history"] if "val/accuracy" in h}
        assert curve == pytest.approx(t.intermediate_values)
    pids = {t.user_attrs["node_id"] for t in finished(study)}
    assert pids  # the actors say where they ran
    deadline = time.monotonic() + 30  # the pool gives its CPUs back
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0) == ray.cluster_resources()["CPU"]


def test_a_warm_worker_gives_a_fresh_workers_result(engines, home):
    """The same trial twice on one warm actor, then on a fresh actor: the same curve to the last digit. (And before its
    first trial the worker has imported what W&B's first run in a process imports.)"""
    import ray

    from tasks.sweep.pool import WarmPool
    from tasks.sweep.trial import TrialJob

    ctx = context(home, "warm-same")
    study = optuna.create_study(study_name="warm-same", storage=make_storage(ctx.storage_url, heartbeat=False))
    pool = WarmPool(ctx.spec, "warm-same", 1, 1.0, home, "offline").prepare(ctx)
    try:
        # W&B's first-run imports are the worker's, not its first trial's tracker thread's (they held the GIL there);
        # W&B Launch's, which no run here needs, never (tasks/tracking.py)
        loaded = lambda _worker: [m in __import__("sys").modules for m in ("wandb", "wandb.sdk.launch")]  # noqa: E731
        assert ray.get(pool.actors[0].__ray_call__.remote(loaded), timeout=60) == [True, False]
        curves = []
        for actor_round in range(3):
            trial = study.ask()
            job = TrialJob(trial._trial_id, trial.number, {}, ctx.spec.model_dump(mode="json"), str(ctx.prepared.dir),
                           str(ctx.trial_dir(trial.number)), "val/accuracy")
            res = ray.get(pool.actors[0].run_trial.remote(job, ctx.storage_url, "warm-same",
                                                          ctx.spec.sweep.model_dump(mode="json")), timeout=300)
            curves.append([r["val/loss"] for r in res["progress"]["history"]])
            if actor_round == 1:
                pool.replace(pool.actors[0])
        assert curves[0] == curves[1] == curves[2]
        # a worker's trials (W&B runs, torch's optimizer) load neither W&B Launch nor torch._dynamo (~1.3 s of CPU)
        extra = lambda _worker: [m in __import__("sys").modules  # noqa: E731
                                 for m in ("wandb.sdk.launch", "torch._dynamo")]
        assert ray.get(pool.actors[0].__ray_call__.remote(extra), timeout=60) == [False, False]
    finally:
        pool.close()


def test_a_dead_worker_fails_only_its_trial_which_runs_again(engines, home):
    from tasks.sweep.optimize import optimize

    # ~0.05 s an epoch on a quiet machine: 60 epochs leave the killer time to catch a trial mid-way
    spec = {**SPEC, "train": {**SPEC["train"], "epochs": 60}, "sweep": {**SPEC["sweep"], "pruner": "none"}}
    ctx = context(home, "warm-kill", spec)
    storage = make_storage(ctx.storage_url, heartbeat=False)
    killed = {}

    import psutil

    def is_trial_worker(process):
        try:  # a worker that exited between children() and cmdline() is a zombie or gone: not ours to kill
            return "TrialWorker" in " ".join(process.cmdline() or [])
        except psutil.Error:
            return False

    def kill_one_worker_mid_trial():
        import ray

        raylet = ray._private.worker._global_node.all_processes["raylet"][0].process.pid  # this session's only

        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            try:
                study = optuna.load_study(study_name="warm-kill", storage=storage)
            except KeyError:
                time.sleep(0.5)
                continue
            running = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.RUNNING
                       and len(t.intermediate_values) >= 1]
            workers = [p for p in psutil.Process(raylet).children() if is_trial_worker(p)]
            if running and workers:
                try:
                    os.kill(workers[0].pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                killed.update(trial=running[0].number, params=running[0].params, pid=workers[0].pid)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_worker_mid_trial, daemon=True)
    killer.start()
    out = optimize(ctx, n_trials=3, resume=False)
    killer.join(5)
    study = optuna.load_study(study_name="warm-kill", storage=storage)
    assert killed, "no worker was killed"
    assert len(finished(study)) == 3 and out["counts"]["failed"] == 1
    failed = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.FAIL]
    retried = [t for t in finished(study) if t.user_attrs.get("retry_of") == failed[0].number]
    assert len(retried) == 1 and retried[0].params == failed[0].params
    # where each ran is written by the driver: at the start, or at the tell for a fresh worker still starting then
    assert all({"node_id", "worker_pid"} <= set(t.user_attrs) for t in finished(study))
    assert retried[0].user_attrs["worker_pid"] != killed["pid"]


def test_kept_workers_serve_the_next_sweep_and_hold_no_cpu_between(engines, home, monkeypatch):
    """On a Ray the user keeps (cluster up), workers outlive a sweep (tasks/sweep/warm.py): the next sweep gets
    the same processes, their CPUs are the sweep's placement group's (gone with the sweep), and a worker
    claimed by a live sweep is not handed to another."""
    import ray

    from tasks.sweep import warm
    from tasks.sweep.optimize import optimize

    monkeypatch.setattr(warm, "persistent", lambda: True)
    spec = {**SPEC, "train": {**SPEC["train"], "epochs": 1}}
    pids = []
    try:
        for study_name in ("kept-1", "kept-2"):
            ctx = context(home, study_name, spec)
            out = optimize(ctx, n_trials=2, resume=False)
            assert out["counts"]["complete"] + out["counts"]["pruned"] == 2
            study = optuna.load_study(study_name=study_name, storage=make_storage(ctx.storage_url, heartbeat=False))
            pids.append({t.user_attrs["worker_pid"] for t in study.trials})
            deadline = time.monotonic() + 15  # the placement group goes asynchronously
            while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"] and time.monotonic() < deadline:
                time.sleep(0.2)
            assert ray.available_resources().get("CPU", 0) == ray.cluster_resources()["CPU"]  # nothing held
        assert pids[1] <= pids[0]  # the second sweep ran on the first one's workers
        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == warm.NAMESPACE]
        assert len(names) == 2 and all(n.startswith(f"trial-{warm.code_version()}-") for n in names)
        # the first worker idle at a sweep's end warmed up for drawing the plots while the other ran the last trial
        roles = [ray.get(ray.get_actor(n, namespace=warm.NAMESPACE).roles.remote()) for n in names]
        assert (True, False, True) in [tuple(r) for r in roles], roles  # and its imports are done
        worker = ray.get_actor(names[0], namespace=warm.NAMESPACE)
        me = warm.owner()
        assert ray.get(worker.claim.remote(me))  # free after its sweep: claimed by this (live) job now
        assert not ray.get(worker.claim.remote("ffffff01"))  # another sweep cannot take it while this one lives
        ray.get(worker.release.remote(me))
        assert ray.get(worker.claim.remote("ffffff01"))  # free again; and a dead job's claim does not hold it:
        assert ray.get(worker.claim.remote(me))
    finally:
        for a in ray.util.list_named_actors(all_namespaces=True):
            if a["namespace"] == warm.NAMESPACE:
                ray.kill(ray.get_actor(a["name"], namespace=warm.NAMESPACE), no_restart=True)


def test_the_study_plots_drawn_by_another_worker_move_into_the_run(engines, home):
    """Registration takes Optuna's plots drawn by a second warm worker (a staged folder, moved into the run
    directory) with the baselines it scored; when that worker fails, the registering one draws them (and, having
    none, scores the baselines itself: tasks/sweep/best.py), and the staged folder goes."""
    import importlib

    import ray

    from tasks.sweep.plots import PLOTS, SKLEARN_PLOTS, study_plots

    best = importlib.import_module("tasks.sweep.best")
    url = f"sqlite:///{home / 'optuna.db'}"
    study = optuna.create_study(study_name="drawn", storage=make_storage(url, heartbeat=False), direction="maximize")
    study.optimize(lambda t: t.suggest_float("lr", 1e-4, 1e-1, log=True) + t.suggest_float("p", 0, 1), n_trials=6)

    @ray.remote
    def draw(folder: str, fail: bool, only=None) -> dict:
        if fail:
            raise RuntimeError("the drawing worker failed")
        drawn = study_plots(optuna.load_study(study_name="drawn", storage=url), Path(folder), as_name="sweep",
                            only=only)
        return {**drawn, "baselines": {"baseline/majority/accuracy": 0.1}}

    # the drawer draws all; or (a cold sweep's drawer, still importing scikit-learn) only the importance plot,
    # the registering worker the others meanwhile: the run gets the same four plots, in the same order
    mine = tuple(p for p in PLOTS if p not in SKLEARN_PLOTS)
    for fail, split in ((False, False), (True, False), (False, True), (True, True)):
        folder, run = home / "x" / f".tmp-plots-{os.getpid()}-{int(fail)}{int(split)}", home / f"run{int(fail)}{int(split)}"
        run.mkdir()
        ref = draw.remote(str(folder), fail, SKLEARN_PLOTS if split else None)
        plots = best._plots(study, run / "sweep", (str(folder), ref, mine if split else ()))
        assert not folder.exists()
        assert sorted(p.name for p in (run / "sweep").glob("*.png")) == sorted(f"{p}.png" for p in PLOTS)
        assert plots["png"] == [f"sweep/{p}.png" for p in PLOTS]
        assert [plots["html"].index(f"sweep/{p}.html") for p in PLOTS] == sorted(plots["html"].index(f"sweep/{p}.html")
                                                                               for p in PLOTS)
        assert (run / "sweep" / "plotly.min.js").is_file()
        assert plots.get("baselines") == (None if fail else {"baseline/majority/accuracy": 0.1})


def test_the_drawing_worker_scores_the_baselines_beside_the_plots(home):
    """On the embedded Dask a warm sweep's baselines come from the worker that draws the study's plots
    (TrialWorker.study_plots, here called in this process): the same metrics as scoring them directly."""
    from tasks.evaluate import score_baselines
    from tasks.sweep.worker import TrialWorker

    ctx = context(home, "scored")
    study = optuna.create_study(study_name="scored", storage=make_storage(ctx.storage_url, heartbeat=False),
                                direction="maximize")
    study.optimize(lambda t: t.suggest_float("lr", 1e-4, 1e-1, log=True), n_trials=3)
    worker = TrialWorker(str(home), {"mode": "disabled"})
    drawn = worker.study_plots("scored", ctx.storage_url, str(home / "scored-plots"), (ctx.prepared, ctx.spec))
    assert (home / "scored-plots" / "optimization_history.png").is_file()
    assert drawn["baselines"] == score_baselines(ctx.prepared, ctx.prepared.preprocessor, ctx.spec)
    assert 0.0 < drawn["baselines"]["baseline/majority/accuracy"] < drawn["baselines"]["baseline/logistic/accuracy"]
    assert "baselines" not in worker.study_plots("scored", ctx.storage_url, str(home / "scored-plots-2"))


def test_roles_go_to_the_workers_that_loaded_what_they_import(engines, home):
    """Kept or warmed-up workers keep their roles: the one that drew the plots (scikit-learn and matplotlib
    loaded) draws again, the one that registered registers; one that warmed up for both draws; a fresh pair
    takes them in order; a lone worker registers alone."""
    import ray

    from tasks.sweep.plots import PLOTS, SKLEARN_PLOTS, draw_on

    @ray.remote(num_cpus=0)
    class Worker:
        def __init__(self, drew: bool, registered: bool, imported: bool = False):
            self.loaded = (drew, registered, imported)

        def roles(self) -> tuple:
            return self.loaded

        def study_plots(self, study: str, url: str, folder: str, baselines_of=None, only=None) -> dict:
            return {"drew before": self.loaded[0], "only": only}

    fresh, drew, other = Worker.remote(False, False), Worker.remote(True, False), Worker.remote(False, False)
    for pair in ([drew, fresh], [fresh, drew]):
        registrar, (folder, ref, mine) = draw_on(pair, "x", "s", "sqlite://", str(home))
        assert registrar is fresh and ray.get(ref)["drew before"] is True
        assert Path(folder).parent == home / "x" and Path(folder).name.startswith(".tmp-plots-")
    registrar, (_, ref, _) = draw_on([fresh, other], "x", "s", "sqlite://", str(home))
    assert registrar is fresh and ray.get(ref)["drew before"] is False
    # the registrar of the last sweep warmed up for drawing while the last trial ran: the drawer draws again
    registered, both = Worker.remote(False, True), Worker.remote(True, True)
    for pair in ([drew, both], [both, drew]):
        registrar, (_, ref, _) = draw_on(pair, "x", "s", "sqlite://", str(home))
        assert registrar is both and ray.get(ref)["drew before"] is True
    for pair in ([registered, drew], [drew, registered], [fresh, drew]):  # a cold sweep's pair, one warmed up
        registrar, (_, ref, _) = draw_on(pair, "x", "s", "sqlite://", str(home))
        assert registrar is pair[pair.index(drew) - 1] and ray.get(ref)["drew before"] is True
    assert draw_on([fresh], "x", "s", "sqlite://", str(home)) == (fresh, None)
    # a drawer whose imports are done draws every plot; one still importing (or none) only scikit-learn's, and the
    # registrar the rest
    ready, importing = Worker.remote(True, False, True), Worker.remote(True, False, False)
    registrar, (_, ref, mine) = draw_on([fresh, ready], "x", "s", "sqlite://", str(home))
    assert registrar is fresh and mine == () and ray.get(ref)["only"] is None
    registrar, (_, ref, mine) = draw_on([importing, fresh], "x", "s", "sqlite://", str(home))
    assert registrar is fresh and ray.get(ref)["only"] == SKLEARN_PLOTS
    assert set(mine) | set(SKLEARN_PLOTS) == set(PLOTS) and not set(mine) & set(SKLEARN_PLOTS)
