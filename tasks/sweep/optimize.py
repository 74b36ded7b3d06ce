"""Running a study to exactly N finished trials: failed trials are retried, Ctrl-C is handled twice."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

import optuna

from .objective import SweepContext, objective
from .storage import (
    GRACE_S,
    HEARTBEAT_S,
    counts,
    existing_trials,
    fail_stale,
    make_pruner,
    make_sampler,
    make_storage,
)


class Interrupts:
    """First Ctrl-C: finish the running trials, then stop (the study stays resumable). Second: abort now;
    the running trials' heartbeats stop, and `--resume` fails and retries them."""

    def __init__(self):
        self.stop = threading.Event()
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, *_):
        if self.stop.is_set():
            print("\naborted: running trials will be failed and retried by --resume", file=sys.stderr, flush=True)
            os._exit(130)
        self.stop.set()
        print("\nstopping after the running trials (Ctrl-C again to abort now)", file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def open_study(ctx: SweepContext, n_trials: int, resume: bool) -> optuna.Study:
    sweep, train = ctx.spec.sweep, ctx.spec.train
    before = existing_trials(ctx.storage_url, ctx.study) if resume else 0
    study = optuna.create_study(study_name=ctx.study, storage=make_storage(ctx.storage_url),
                                direction=sweep.direction, sampler=make_sampler(sweep, train.seed, before),
                                pruner=make_pruner(sweep, train.epochs), load_if_exists=True)
    study.set_user_attr("spec", ctx.spec.model_dump(mode="json"))
    study.set_user_attr("n_trials", n_trials)
    if resume:
        fail_stale(study, GRACE_S + 2 * HEARTBEAT_S)
    return study


def optimize(ctx: SweepContext, n_trials: int, resume: bool, keep_pool: bool = False) -> dict:
    """Run trials until exactly n_trials are COMPLETE or PRUNED (failed ones are retried). `keep_pool`: the warm
    workers stay up for the best trial's registration (pool.kept()), until pool.close_kept(); else they close here."""
    t0 = time.perf_counter()
    study = open_study(ctx, n_trials, resume)
    from .pool import is_warm

    warm, cpus = is_warm(ctx.spec, ctx.parallel)
    timings = {"warm": warm}
    with Interrupts() as interrupts:
        if warm:
            from .pool import close_pool, keep, warm_pool
            from .trials import run_warm

            pool = warm_pool(ctx, cpus)
            try:
                t1 = time.perf_counter()
                timings["pool_start_s"] = pool.wait_ready()  # since the workers were created
                timings["pool_wait_s"] = time.perf_counter() - t1  # of it, what the sweep still waited
                timings["pool_ready_s"] = pool.ready_s  # of that, the workers' ready() (splits, study)
                run_warm(ctx, study, n_trials, interrupts.stop, pool)
            except BaseException:
                close_pool(pool)
                raise
            if keep_pool:
                keep(pool)  # the best trial registers on a warm worker (torch is loaded there)
            else:
                timings["pool_close_s"] = close_pool(pool)
        else:
            _optimize_on_ray_train(ctx, study, n_trials, interrupts)
    timings["optimize_s"] = time.perf_counter() - t0
    return {"counts": counts(study), "interrupted": interrupts.stop.is_set(), "timings": timings}


def _optimize_on_ray_train(ctx: SweepContext, study: optuna.Study, n_trials: int, interrupts: Interrupts) -> None:
    """Multi-worker trials: each one a Ray Train run, `parallel` of them in threads of study.optimize."""
    stalled = 0
    stop_when_asked = lambda st, _t: st.stop() if interrupts.stop.is_set() else None  # noqa: E731
    while not interrupts.stop.is_set():
        before = counts(study)
        left = n_trials - before["complete"] - before["pruned"]
        if left <= 0:
            break
        study.optimize(lambda trial: objective(trial, ctx), n_trials=left, n_jobs=min(ctx.parallel, left),
                       catch=(Exception,), callbacks=[stop_when_asked], gc_after_trial=False)
        after = counts(study)
        stalled = stalled + 1 if after["complete"] + after["pruned"] == before["complete"] + before["pruned"] else 0
        if stalled >= 2:
            last = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.FAIL]
            reason = last[-1].system_attrs.get("fail_reason", "see the logs") if last else "unknown"
            raise RuntimeError(f"every trial fails; the last one: {reason}")
