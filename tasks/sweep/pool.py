"""Warm trials, the driver's side: K long-lived TrialWorker actors, started early (prestart), readied with the
sweep's splits and study, replaced when one dies, and given back when the sweep ends. The loop that feeds them
trials with Optuna's ask/tell is tasks/sweep/trials.py.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from ..spec import Spec
from . import warm
from .objective import SweepContext


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
        self.t0, self.ctx, self.group = time.monotonic(), None, None
        self.answers: dict = {}  # actor id -> its ready() call, then its answer: where it runs (where())
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
        self.answers[actor._actor_id] = actor.ready.remote(str(ctx.prepared.dir), ctx.storage_url, ctx.study,
                                                ctx.spec.sweep.model_dump(mode="json"), ctx.spec.train.epochs,
                                                self.home, self.wandb)

    def where(self, actor) -> dict | None:
        """{"node_id", "pid"} of a worker that has answered ready(); None for a fresh one still starting."""
        import ray

        answer = self.answers.get(actor._actor_id)
        if isinstance(answer, ray.ObjectRef):
            if not ray.wait([answer], timeout=0)[0]:
                return None
            answer = self.answers[actor._actor_id] = ray.get(answer)
        return answer

    def wait_ready(self, timeout: float = 300) -> float:
        """Seconds from the pool's creation until every worker has torch, the splits and the study."""
        import ray

        answers = ray.get(list(self.answers.values()), timeout=timeout)
        self.answers = dict(zip(self.answers, answers, strict=True))
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

        spec, prepared = args[:2]
        registrar, drawn = draw_on(self.actors, spec.name, *args[2:5],
                                   baselines_of=(prepared, spec) if baselines is None else None)
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
