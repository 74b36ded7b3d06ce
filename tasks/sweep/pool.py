"""Warm trials, the driver's side: K long-lived TrialWorker actors fed by Optuna's ask/tell, the way Ray
Tune's reuse_actors runs trials, with Optuna's storage as the one source of truth.

Heartbeats only run inside `study.optimize`, so the driver records them for every running trial; a
killed driver stops them, and `--resume` fails the stale trials and retries them with the same params.
A dead actor fails only its own trial, which is re-queued, and a fresh actor takes its place.
"""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field

import optuna

from .objective import SweepContext
from .space import suggest, trial_spec
from .storage import HEARTBEAT_S, counts
from .trial import TrialJob

LOST = ("RayActorError", "WorkerCrashedError", "ActorDiedError", "OutOfMemoryError", "ActorUnavailableError")
MAX_RETRY = 3


class Heartbeats:
    """One thread that records a heartbeat for every running trial every HEARTBEAT_S seconds."""

    def __init__(self, storage):
        self.storage, self.ids, self.lock = storage, set(), threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name="optuna-heartbeats")

    def add(self, trial_id: int) -> None:
        self.storage.record_heartbeat(trial_id)
        with self.lock:
            self.ids.add(trial_id)

    def discard(self, trial_id: int) -> None:
        with self.lock:
            self.ids.discard(trial_id)

    def _beat(self) -> None:
        while not self.stop.wait(HEARTBEAT_S):
            with self.lock:
                ids = list(self.ids)
            for trial_id in ids:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as e:  # noqa: BLE001 - a transient database error must not end the beats
                    print(f"warning: heartbeat of trial {trial_id}: {e}", file=sys.stderr)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)


class WarmPool:
    """K TrialWorker actors; each gets its share of Ray's CPUs and one torch thread per whole CPU."""

    def __init__(self, ctx: SweepContext, size: int, cpus: float):
        import ray

        from .worker import TrialWorker

        w = ctx.spec.tracking.wandb
        self.ctx, self.size = ctx, size
        self.cpu = max(0.25, int(cpus / size * 100) / 100)
        self.threads = max(1, int(self.cpu))
        self.wandb = {"project": w.project, "mode": ctx.wandb_mode, "group": ctx.study, "entity": w.entity}
        self.cls = ray.remote(num_cpus=self.cpu, max_restarts=0)(TrialWorker)  # calls run in order
        self.actors = [self._new() for _ in range(size)]

    def _new(self):
        ctx = self.ctx
        actor = self.cls.remote(str(ctx.home), self.wandb)
        actor.ready.remote(str(ctx.prepared.dir), ctx.storage_url, ctx.study, ctx.spec.sweep.model_dump(mode="json"),
                           ctx.spec.train.epochs)  # queued ahead of its first trial: actor calls run in order
        return actor

    def replace(self, actor):
        import ray

        ray.kill(actor, no_restart=True)
        fresh = self._new()
        self.actors = [fresh if a is actor else a for a in self.actors]
        return fresh

    def close(self) -> list[str]:
        """Wait for the W&B runs being written, then give the CPUs back."""
        import ray

        errors = []
        for actor in self.actors:
            try:
                errors += ray.get(actor.drain.remote(), timeout=90)
            except Exception:  # noqa: BLE001 - a dead actor has nothing left to write
                pass
            ray.kill(actor, no_restart=True)
        return errors


@dataclass
class Live:
    """The sweep's progress line: trials done of N, best so far, elapsed, and an estimate of what is left."""

    n_trials: int
    direction: str
    t0: float = field(default_factory=time.monotonic)
    best: float | None = None
    done: int = 0
    shown: float = 0.0

    def finished(self, value: float | None) -> None:
        self.done += 1
        if value is not None and (self.best is None or (value > self.best) == (self.direction == "maximize")):
            self.best = value

    def line(self, c: dict) -> str:
        self.shown = time.monotonic()
        elapsed = self.shown - self.t0
        left = self.n_trials - c["complete"] - c["pruned"]
        eta = f"~{elapsed / self.done * left:.0f}s left" if self.done else "estimating"
        best = f"{self.best:.4f}" if self.best is not None else "-"
        return (f"trials {c['complete'] + c['pruned']}/{self.n_trials}: {c['complete']} complete, {c['pruned']} "
                f"pruned, {c['failed']} failed, {c['running']} running · best {best} · {elapsed:.0f}s, {eta}")


def run_warm(ctx: SweepContext, study: optuna.Study, n_trials: int, stop: threading.Event, pool: WarmPool) -> None:
    """Ask, run on an idle warm worker, tell — until exactly n_trials are COMPLETE or PRUNED, or `stop`."""
    import ray

    sweep, raw = ctx.spec.sweep, ctx.spec.model_dump(mode="json")
    live, idle, inflight, in_a_row = Live(n_trials, sweep.direction), list(pool.actors), {}, []
    if counts(study)["complete"]:
        live.best = study.best_value  # a resumed study: the best so far includes earlier trials
    with Heartbeats(study._storage) as beats:
        while True:
            c = counts(study)
            need = n_trials - c["complete"] - c["pruned"] - len(inflight)
            while idle and need > 0 and not stop.is_set():
                trial = study.ask()  # a WAITING trial (a retry of a failed one) comes first
                params = suggest(trial, sweep.space)
                job = TrialJob(trial._trial_id, trial.number, params, trial_spec(raw, params).model_dump(mode="json"),
                               str(ctx.prepared.dir), str(ctx.trial_dir(trial.number)), sweep.metric, pool.threads)
                beats.add(trial._trial_id)
                actor = idle.pop()
                ref = actor.run_trial.remote(job, ctx.storage_url, ctx.study, sweep.model_dump(mode="json"))
                inflight[ref] = (actor, trial, params)
                need -= 1
            if not inflight:
                return
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
                print(live.line(counts(study)), file=sys.stderr, flush=True)


def _settle(ref, actor, trial, params: dict, ctx: SweepContext, study: optuna.Study, pool: WarmPool, live: Live):
    """Tell Optuna how a trial ended; returns the actor that is idle now (a fresh one if it died) and,
    for a trial whose own code failed, the reason."""
    import ray

    try:
        res = ray.get(ref)
    except ray.exceptions.RayError as e:
        lost = type(e).__name__ in LOST
        reason = f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:300]}"
        study._storage.set_trial_system_attr(trial._trial_id, "fail_reason", reason)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        retries = int(trial.user_attrs.get("retries", 0))
        if lost and retries < MAX_RETRY:  # the worker died, not the trial's code: run it again elsewhere
            study.enqueue_trial(params, user_attrs={"retries": retries + 1, "retry_of": trial.number})
        print(f"[t{trial.number}] failed ({reason})" + ("; re-queued on a fresh worker" if lost else ""),
              file=sys.stderr, flush=True)
        return (pool.replace(actor), None) if lost else (actor, reason)
    prog = res["progress"]
    trial.set_user_attr("epochs", prog["epoch"])
    trial.set_user_attr("best_epoch", prog["best_epoch"])
    trial.set_user_attr("wandb_run_dir", res["wandb_run_dir"])
    if res["state"] == "pruned":
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        print(f"[t{trial.number}] pruned after {prog['epoch']} epochs", file=sys.stderr, flush=True)
    else:
        study.tell(trial, res["value"])
        print(f"[t{trial.number}] {ctx.spec.sweep.metric} {res['value']:.4f}  {params}", file=sys.stderr, flush=True)
    live.finished(res["value"])
    return actor, None
