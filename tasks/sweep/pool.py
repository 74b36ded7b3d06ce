"""Warm trials, the driver's side: K long-lived TrialWorker actors fed by Optuna's ask/tell, the way Ray
Tune's reuse_actors runs trials, with Optuna's storage as the one source of truth.

Heartbeats only run inside `study.optimize`, so the driver records them for every running trial; a
killed driver stops them, and `--resume` fails the stale trials and retries them with the same params.
A dead actor fails only its own trial, which is re-queued, and a fresh actor takes its place.
"""
from __future__ import annotations

import os
import sys
import threading
import time
import warnings
from pathlib import Path

import optuna

from ..progress import say
from ..spec import Spec
from . import warm
from .job import TrialJob
from .live import Live
from .objective import SweepContext
from .space import suggest, trial_spec
from .storage import DONE, HEARTBEAT_S, Heartbeats, counts, fail_stale

MAX_RETRY = 3


class WarmPool:
    """K TrialWorker actors; each gets its share of Ray's CPUs and one torch thread per whole CPU.

    The actors can start (and import torch) before the sweep's data is ready: `prestart` runs while the
    CLI waits for Prefect's API, and `prepare` then hands them the splits and the study."""

    def __init__(self, spec: Spec, study: str, size: int, cpus: float, home: Path, wandb_mode: str):
        import ray

        from .worker import TrialWorker

        w = spec.tracking.wandb
        self.key, self.size, self.home = (study, str(home)), size, str(home)
        self.cpu = max(0.25, int(cpus / size * 100) / 100)
        # one torch thread per whole CPU; CONDUCTOR_TRIAL_THREADS pins it (benchmarks compare parallel 1 and
        # 2 with the same threads per trial)
        self.threads = int(os.environ.get("CONDUCTOR_TRIAL_THREADS", 0)) or max(1, int(self.cpu))
        self.wandb = {"project": w.project, "mode": wandb_mode, "group": study, "entity": w.entity}
        # calls run in order; claim/release (tasks/sweep/warm.py) in a group of their own, answered mid-trial
        self.cls = ray.remote(num_cpus=self.cpu, max_restarts=0, concurrency_groups={"control": 1})(TrialWorker)
        self.t0, self.readying, self.ctx, self.group = time.monotonic(), [], None, None
        self.persistent = warm.persistent()
        if self.persistent:  # cluster up: workers kept from earlier sweeps, this sweep's CPUs reserved apart
            self.group = warm.reserve(self.cpu, size)
            self.actors = warm.claim_workers(self.cls, size, self.home, self.wandb)
        else:
            self.actors = [self.cls.remote(self.home, self.wandb) for _ in range(size)]

    def prepare(self, ctx: SweepContext) -> WarmPool:
        self.ctx = ctx
        for actor in self.actors:
            self._ready(actor)
        return self

    def _ready(self, actor) -> None:
        ctx = self.ctx  # queued ahead of the actor's first trial: actor calls run in order
        self.readying.append(actor.ready.remote(str(ctx.prepared.dir), ctx.storage_url, ctx.study,
                                                ctx.spec.sweep.model_dump(mode="json"), ctx.spec.train.epochs,
                                                self.home, self.wandb))

    def wait_ready(self, timeout: float = 300) -> float:
        """Seconds from the pool's creation until every worker has torch, the splits and the study."""
        import ray

        answers = ray.get(self.readying, timeout=timeout)
        self.ready_s = max(a["seconds"] for a in answers)  # the slowest worker's ready() itself
        if self.persistent:
            warm.record([a["pid"] for a in answers])
        return time.monotonic() - self.t0

    def replace(self, actor):
        import ray

        ray.kill(actor, no_restart=True)
        fresh = (warm.claim_workers(self.cls, 1, self.home, self.wandb)[0] if self.persistent
                 else self.cls.remote(self.home, self.wandb))
        self._ready(fresh)
        self.actors = [fresh if a is actor else a for a in self.actors]
        return fresh

    def register_best(self, *args, baselines: dict | None = None, timeout: float = 600):
        """tasks.sweep.best.register_best on one of the warm workers: torch, the model code and W&B are loaded
        there, while this driver never imports torch (~3-4 s of a sweep's start-up and end on 2 cores)."""
        import ray

        from .plots import draw_on

        registrar, drawn = draw_on(self.actors, args[0].name, *args[2:5])
        return ray.get(registrar.register_best.remote(*args, drawn, baselines), timeout=timeout)

    def close(self) -> list[str]:
        """Wait for the W&B runs being written, then give the CPUs back (and kept workers to the next sweep)."""
        import ray

        errors = []
        for actor in self.actors:
            try:
                errors += ray.get(actor.drain.remote(), timeout=90)
            except Exception:  # noqa: BLE001 - a dead actor has nothing left to write
                pass
            if not self.persistent:
                ray.kill(actor, no_restart=True)
        if self.persistent:
            warm.release(self.actors, self.group)
        return errors


_PRESTARTED: list[WarmPool] = []
_KEPT: list[WarmPool] = []  # a sweep's pool after its trials, until the best trial is registered


def keep(pool: WarmPool) -> None:
    _KEPT.append(pool)


def kept() -> WarmPool | None:
    return _KEPT[-1] if _KEPT else None


def close_pool(pool: WarmPool) -> float:
    """Give the workers' CPUs back once their W&B runs are written; returns the seconds it took."""
    t0 = time.perf_counter()
    for error in pool.close():
        print(f"warning: W&B: {error}", file=sys.stderr)
    return time.perf_counter() - t0


def close_kept() -> float:
    """Close the pools kept for registration (the flow's `finally`); returns the seconds it took."""
    seconds = 0.0
    while _KEPT:
        seconds += close_pool(_KEPT.pop())
    return seconds


def is_warm(spec: Spec, parallel: int) -> tuple[bool, float]:
    """One-worker CPU trials run on warm workers (the sweep's own pool); bigger ones keep Ray Train."""
    from cluster.connect import ray_resources

    from ..train import plan_workers

    cpus, gpus = ray_resources()
    plan = plan_workers(spec.train.workers, spec.train.use_gpu, cpus, gpus, share=parallel)
    return plan.workers == 1 and plan.gpu == 0, cpus


def prestart(spec: Spec, study: str, parallel: int, home: Path, wandb_mode: str) -> None:
    """Start the sweep's workers now (in this process's Ray), so torch loads while other engines start."""
    from cluster.connect import ray_resources

    from ..train import fit_parallel

    parallel = fit_parallel(parallel, ray_resources()[0])[0]
    warm, cpus = is_warm(spec, parallel)
    if warm:
        _PRESTARTED.append(WarmPool(spec, study, parallel, cpus, home, wandb_mode))


def warm_pool(ctx: SweepContext, cpus: float) -> WarmPool:
    """The prestarted pool of this sweep if there is one, else a new one; ready for ctx's trials."""
    for pool in list(_PRESTARTED):
        _PRESTARTED.remove(pool)
        if pool.key == (ctx.study, str(ctx.home)) and pool.size == ctx.parallel:
            return pool.prepare(ctx)
        pool.close()
    return WarmPool(ctx.spec, ctx.study, ctx.parallel, cpus, ctx.home, ctx.wandb_mode).prepare(ctx)


def run_warm(ctx: SweepContext, study: optuna.Study, n_trials: int, stop: threading.Event, pool: WarmPool) -> None:
    """Ask, run on an idle warm worker, tell — until exactly n_trials are COMPLETE or PRUNED, or `stop`."""
    with warnings.catch_warnings():  # "heartbeats are meant for study.optimize": here the driver records them
        warnings.simplefilter("ignore", UserWarning)
        _ask_run_tell(ctx, study, n_trials, stop, pool)


def _ask_run_tell(ctx: SweepContext, study: optuna.Study, n_trials: int, stop: threading.Event, pool: WarmPool) -> None:
    import ray

    sweep, raw = ctx.spec.sweep, ctx.spec.model_dump(mode="json")
    live, idle, inflight, in_a_row = Live(n_trials, sweep.direction), list(pool.actors), {}, []
    warmed = False  # the first worker idle at the end loads what drawing the study's plots imports
    if counts(study)["complete"]:
        live.best = study.best_value  # a resumed study: the best so far includes earlier trials
    with Heartbeats(study._storage) as beats:
        while True:
            c = counts(study)
            others = max(0, c["running"] - len(inflight))  # another `conductor sweep` on the same study
            need = n_trials - c["complete"] - c["pruned"] - len(inflight) - others
            while idle and need > 0 and not stop.is_set():
                trial = study.ask()  # a WAITING trial (a retry of a failed one) comes first
                if surplus(study, trial, n_trials):
                    break
                params = suggest(trial, sweep.space)
                job = TrialJob(trial._trial_id, trial.number, params, trial_spec(raw, params).model_dump(mode="json"),
                               str(ctx.prepared.dir), str(ctx.trial_dir(trial.number)), sweep.metric, pool.threads)
                beats.add(trial._trial_id)
                actor = idle.pop()
                ref = actor.run_trial.remote(job, ctx.storage_url, ctx.study, sweep.model_dump(mode="json"))
                inflight[ref] = (actor, trial, params)
                need -= 1
            if need <= 0 and idle and inflight and not warmed:  # the sweep's tail: a core is free
                warmed = True  # once, and only while no worker has drawn: a warmed registrar would only be late
                if not any(drew for drew, _ in ray.get([a.roles.remote() for a in pool.actors], timeout=60)):
                    idle[0].warm_up.remote()
            if not inflight:
                if not others or stop.is_set():
                    return
                time.sleep(HEARTBEAT_S)  # wait for the other process's trials: a failed one is run again here
                fail_stale(study, 0)  # a dead process's trials: failed and re-queued once stale
                continue
            done, _ = ray.wait(list(inflight), num_returns=1, timeout=HEARTBEAT_S)
            for ref in done:
                actor, trial, params = inflight.pop(ref)
                beats.discard(trial._trial_id)
                actor, failure = _settle(ref, actor, trial, params, ctx, study, pool, live)
                idle.append(actor)
                in_a_row = in_a_row + [failure] if failure else []
            if len(in_a_row) >= max(3, 2 * pool.size):  # the trials' own code fails: more of them will not help
                stop.set()
                if not inflight:
                    raise RuntimeError(f"{len(in_a_row)} trials failed in a row; the last one: {in_a_row[-1]}")
            if done or time.monotonic() - live.shown > 15:
                say(live.line(counts(study)))


def surplus(study: optuna.Study, trial: optuna.trial.Trial, n_trials: int) -> bool:
    """Two processes that ask at the same moment could both take the last slot: the trial with the higher
    number gives way (failed as surplus, never run), so the study ends with exactly n_trials finished."""
    ahead = sum(1 for t in study.get_trials(deepcopy=False)
                if t.state in DONE or t.state == optuna.trial.TrialState.RUNNING and t.number < trial.number)
    if ahead < n_trials:
        return False
    study._storage.set_trial_system_attr(trial._trial_id, "fail_reason", f"surplus: {n_trials} trials were taken")
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return True


def _settle(ref, actor, trial, params: dict, ctx: SweepContext, study: optuna.Study, pool: WarmPool, live: Live):
    """Tell Optuna how a trial ended; returns the actor that is idle now (a fresh one if it died) and,
    for a trial whose own code failed, the reason."""
    import ray

    try:
        res = ray.get(ref)
    except ray.exceptions.RayError as e:
        # the worker died (its subclasses included: ActorDiedError, ActorUnavailableError), not the trial's code
        lost = isinstance(e, ray.exceptions.RayActorError | ray.exceptions.WorkerCrashedError
                          | ray.exceptions.OutOfMemoryError)
        reason = f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:300]}"
        study._storage.set_trial_system_attr(trial._trial_id, "fail_reason", reason)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        retries = int(trial.user_attrs.get("retries", 0))
        if lost and retries < MAX_RETRY:  # the worker died, not the trial's code: run it again elsewhere
            study.enqueue_trial(params, user_attrs={"retries": retries + 1, "retry_of": trial.number})
        say(f"[t{trial.number}] failed ({reason})" + ("; re-queued on a fresh worker" if lost else ""))
        return (pool.replace(actor), None) if lost else (actor, reason)
    prog = res["progress"]
    trial.set_user_attr("epochs", prog["epoch"])
    trial.set_user_attr("best_epoch", prog["best_epoch"])
    trial.set_user_attr("wandb_run_dir", res["wandb_run_dir"])
    if res["state"] == "pruned":
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        why = f"diverged ({prog['diverged']})" if prog.get("diverged") else f"pruned after {prog['epoch']} epochs"
        say(f"[t{trial.number}] {why}")
    else:
        study.tell(trial, res["value"])
        say(f"[t{trial.number}] {ctx.spec.sweep.metric} {res['value']:.4f}  {params}")
    live.finished(res["value"])
    return actor, None
