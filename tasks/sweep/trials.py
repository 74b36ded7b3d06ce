"""The sweep's loop on warm workers: ask Optuna for a trial, run it on an idle TrialWorker, tell Optuna how it
ended — until exactly n trials are complete or pruned. The way Ray Tune's reuse_actors runs trials, with Optuna's
storage as the one source of truth.

Heartbeats only run inside `study.optimize`, so the driver records them for every running trial; a killed driver
stops them, and `--resume` fails the stale trials and retries them with the same params. A dead actor fails only its
own trial, which is re-queued, and a fresh actor takes its place (WarmPool.replace).
"""
from __future__ import annotations

import threading
import time
import warnings
from typing import TYPE_CHECKING

import optuna

from ..progress import say
from .job import TrialJob
from .live import Live
from .objective import SweepContext
from .space import suggest, trial_spec
from .storage import HEARTBEAT_S, Heartbeats, counts, fail_stale, set_user_attrs, taken

if TYPE_CHECKING:
    from .pool import WarmPool

MAX_RETRY = 3


def run_warm(ctx: SweepContext, study: optuna.Study, n_trials: int, stop: threading.Event, pool: WarmPool) -> None:
    """Ask, run on an idle warm worker, tell — until exactly n_trials are COMPLETE or PRUNED, or `stop`."""
    with warnings.catch_warnings():  # "heartbeats are meant for study.optimize": here the driver records them
        warnings.simplefilter("ignore", UserWarning)
        _ask_run_tell(ctx, study, n_trials, stop, pool)


def _ask_run_tell(ctx: SweepContext, study: optuna.Study, n_trials: int, stop: threading.Event, pool: WarmPool) -> None:
    import ray

    live, idle, inflight, in_a_row = Live(n_trials, ctx.spec.sweep.direction), list(pool.actors), {}, []
    # the spec and its sweep section as JSON, once per sweep, not once per dispatch
    raw = {"spec": ctx.spec.model_dump(mode="json"), "sweep": ctx.spec.sweep.model_dump(mode="json")}
    # trials done on their worker, told to Optuna only once the freed workers have their next trial: the tell's
    # storage writes (~30 ms on SQLite here) are no longer a gap between two trials of a worker
    told: list = []
    placed: set[int] = set()  # trials whose node_id and worker_pid were written when they started
    warmed, due = False, False  # warmed: the first worker idle at the end loads what drawing the plots imports
    if counts(study)["complete"]:
        live.best = study.best_value  # a resumed study: the best so far includes earlier trials
    with Heartbeats(study._storage) as beats:
        try:
            while True:
                c = counts(study)
                # another `conductor sweep` on the same study (the trials done here but not told are RUNNING too)
                others = max(0, c["running"] - len(inflight) - len(told))
                need = n_trials - c["complete"] - c["pruned"] - len(inflight) - len(told) - others
                need, started = _dispatch(ctx, raw, study, n_trials, pool, idle, inflight, beats, need, stop)
                for actor, trial in started:  # where each runs, written here: two writes less on its worker
                    if spot := pool.where(actor):
                        placed.add(trial._trial_id)
                        _place(trial, spot)
                while told:
                    _tell(*told.pop(0), ctx, study, live, placed)
                if due or time.monotonic() - live.shown > 15:
                    due = False
                    say(live.line(counts(study)))
                if need <= 0 and idle and inflight and not warmed:  # the sweep's tail: a core is free
                    warmed = True  # once, and only while no worker has drawn: a warmed registrar would only be late
                    if not any(drew for drew, *_ in ray.get([a.roles.remote() for a in pool.actors], timeout=60)):
                        idle[0].warm_up.remote()
                if not inflight:
                    if not others or stop.is_set():
                        return
                    time.sleep(HEARTBEAT_S)  # wait for the other process's trials: a failed one is run again here
                    fail_stale(study, 0)  # a dead process's trials: failed and re-queued once stale
                    continue
                done, _ = ray.wait(list(inflight), num_returns=1, timeout=HEARTBEAT_S)
                for ref in done:
                    failure = _returned(ref, inflight, beats, study, pool, idle, told)
                    due, in_a_row = True, in_a_row + [failure] if failure else []
                if len(in_a_row) >= max(3, 2 * pool.size):  # the trials' own code fails: more of them will not help
                    stop.set()
                    if not inflight:
                        raise RuntimeError(f"{len(in_a_row)} trials failed in a row; the last one: {in_a_row[-1]}")
        finally:  # a trial its worker finished is never lost, whatever stops the loop (a second Ctrl-C too)
            for res, trial, params in told:
                _tell(res, trial, params, ctx, study, live, placed)


def _dispatch(ctx: SweepContext, raw: dict, study: optuna.Study, n_trials: int, pool: WarmPool, idle: list,
              inflight: dict, beats: Heartbeats, need: int, stop: threading.Event) -> tuple[int, list]:
    """Ask a trial for every idle worker while trials are needed and send it there; returns what is still needed
    and the (actor, trial) pairs started."""
    started: list = []
    if not idle or need <= 0:
        return need, started
    sweep = ctx.spec.sweep
    while idle and need > 0 and not stop.is_set():
        trial = study.ask()  # a WAITING trial (a retry of a failed one) comes first
        if surplus(study, trial, n_trials):
            break
        params = suggest(trial, sweep.space)
        job = TrialJob(trial._trial_id, trial.number, params, trial_spec(raw["spec"], params).model_dump(mode="json"),
                       str(ctx.prepared.dir), str(ctx.trial_dir(trial.number)), sweep.metric, pool.threads)
        beats.add(trial._trial_id)
        actor = idle.pop()
        ref = actor.run_trial.remote(job, ctx.storage_url, ctx.study, raw["sweep"])
        inflight[ref] = (actor, trial, params)
        started.append((actor, trial))
        need -= 1
    return need, started


def _place(trial, spot: dict) -> None:  # worker_pid: a warm worker kept across sweeps shows up again
    set_user_attrs(trial, {"node_id": spot["node_id"], "worker_pid": spot["pid"]})


def surplus(study: optuna.Study, trial: optuna.trial.Trial, n_trials: int) -> bool:
    """Two processes that ask at the same moment could both take the last slot: the trial with the higher
    number gives way (failed as surplus, never run), so the study ends with exactly n_trials finished."""
    if taken(study, trial.number) < n_trials:
        return False
    study._storage.set_trial_system_attr(trial._trial_id, "fail_reason", f"surplus: {n_trials} trials were taken")
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return True


def _returned(ref, inflight: dict, beats: Heartbeats, study: optuna.Study, pool: WarmPool, idle: list,
              told: list) -> str | None:
    """A trial's call came back: its worker is idle again (a fresh one if it died); a finished trial waits in
    `told`, a failed one is failed now. Returns the reason of a trial whose own code failed."""
    import ray

    actor, trial, params = inflight.pop(ref)
    beats.discard(trial._trial_id)
    failure = None
    try:
        told.append((ray.get(ref), trial, params))
    except ray.exceptions.RayError as e:
        actor, failure = _failed(e, actor, trial, params, study, pool)
    idle.append(actor)
    return failure


def _failed(e: Exception, actor, trial, params: dict, study: optuna.Study, pool: WarmPool):
    """A trial whose worker raised: failed in Optuna; returns the actor that is idle now (a fresh one if it
    died, and the trial re-queued) and, for a trial whose own code failed, the reason."""
    import ray

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


def _tell(res: dict, trial, params: dict, ctx: SweepContext, study: optuna.Study, live: Live, placed: set) -> None:
    """Tell Optuna how a trial its worker finished ended: complete with its value, or pruned (and where it ran, if
    its worker was still starting when it was sent)."""
    if trial._trial_id not in placed:
        _place(trial, res)
    placed.discard(trial._trial_id)
    prog = res["progress"]
    set_user_attrs(trial, {"epochs": prog["epoch"], "best_epoch": prog["best_epoch"],
                           "wandb_run_dir": res["wandb_run_dir"]})
    if res["state"] == "pruned":
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        why = f"diverged ({prog['diverged']})" if prog.get("diverged") else f"pruned after {prog['epoch']} epochs"
        say(f"[t{trial.number}] {why}")
    else:
        study.tell(trial, res["value"])
        say(f"[t{trial.number}] {ctx.spec.sweep.metric} {res['value']:.4f}  {params}")
    live.finished(res["value"])
