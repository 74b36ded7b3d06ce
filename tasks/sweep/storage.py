"""Optuna's side of a sweep: the storage (the one source of truth), sampler, pruner, trial counts.

Heartbeats: a trial whose process died stops beating; after GRACE_S it is failed and re-queued with
the same parameters by the retry callback, which is what `--resume` relies on.
"""
from __future__ import annotations

import sys
import threading
import time
import warnings
from typing import Any

import optuna

from cluster.settings import redact_url

from ..errors import UserError
from ..spec import Sweep
from .schema import open_rdb

HEARTBEAT_S = 2
GRACE_S = 8
DONE = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def make_storage(url: str, heartbeat: bool = True) -> optuna.storages.BaseStorage:
    """RDB storage (SQLite or PostgreSQL) with heartbeats: a trial whose process died is failed and retried."""
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    else:
        kwargs["engine_kwargs"] = {"pool_pre_ping": True}
    for attempt in range(3):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5 and warn every time
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                if heartbeat:
                    kwargs.update(heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                                  heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(3))
                storage = open_rdb(url, **kwargs)  # without Alembic's import where it is not needed
                if url.startswith("sqlite"):
                    write_ahead_log(storage)
                return storage
        except Exception as e:  # noqa: BLE001 - a wrong URL or an unreachable server is the user's
            # two processes creating the same new database race on its schema tables (alembic_version,
            # version_info, ...: "table ... already exists"): the loser retries, and then finds them made
            if ("alembic_version" in str(e) or "already exists" in str(e)) and attempt < 2:
                time.sleep(0.5)
                continue
            raise UserError(f"--storage: cannot open Optuna storage {redact_url(url)!r} ({type(e).__name__}: "
                            f"{str(e).splitlines()[0]})") from None
    raise AssertionError("unreachable")


def write_ahead_log(storage: optuna.storages.RDBStorage) -> None:
    """SQLite in write-ahead-log mode, synced at checkpoints: a commit no longer waits for the disk (fsync) and readers
    no longer block the writer (the sweep's driver and its workers share the file). A killed process loses nothing it
    committed; a power cut may lose the last commits, never the file's consistency (SQLite's own guarantee for WAL
    with synchronous=NORMAL). Every later connection of the engine gets both pragmas; WAL itself stays with the file."""
    from sqlalchemy import event

    @event.listens_for(storage.engine, "connect")
    def _pragmas(conn, _record) -> None:
        cursor = conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    storage.engine.dispose()  # the connection that created the schema goes; the next one is made with the pragmas


def make_sampler(sweep: Sweep, seed: int, trials_before: int = 0) -> optuna.samplers.BaseSampler:
    """A resumed study must not draw the parameters it drew before: the seed moves on by the trials the
    study already holds. QMC keeps its seed (its scrambling) and finds its place in the sequence itself."""
    if sweep.sampler != "qmc":
        seed = (seed + trials_before) % 2**32
    return {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, sweep.trials // 4))),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "qmc": lambda: optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False),
        "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False),
    }[sweep.sampler]()


def make_pruner(sweep: Sweep, epochs: int) -> optuna.pruners.BasePruner:
    """Successive halving from the first epoch, keeping a third at each rung, is the default: replaying
    the full learning curves of 30 random digits-CNN trials (9 epochs, 3 seeds) through each pruner,
    it trained 28% of the unpruned epochs and found the same best trial every time; Hyperband with the
    same settings trained 51% (its extra brackets start trials at later rungs), min_resource 2 or 3
    trained 44-58% and lost up to 1.2 points. Hyperband and the median rule stay available."""
    if sweep.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if sweep.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3)
    if sweep.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2)
    return optuna.pruners.NopPruner()


def counts(study: optuna.Study) -> dict:
    """Trials by state. On an RDB storage one GROUP BY query: `get_trials` rebuilt every running trial with its
    params, attributes and intermediate values (~28 ms a call here, in a sweep loop that asks once or twice per
    trial, on the core a trial needs)."""
    by = _state_counts(study)
    if by is None:
        trials = study.get_trials(deepcopy=False)
        by = {s: sum(t.state == s for t in trials) for s in optuna.trial.TrialState}
    state = optuna.trial.TrialState
    return {"complete": by.get(state.COMPLETE, 0), "pruned": by.get(state.PRUNED, 0), "failed": by.get(state.FAIL, 0),
            "running": by.get(state.RUNNING, 0), "waiting": by.get(state.WAITING, 0)}


def _rdb(storage) -> optuna.storages.RDBStorage | None:
    """The RDB storage under a study's (Optuna wraps it in a cache), if Optuna's internals used here are there;
    None: the public API's slower path."""
    backend = getattr(storage, "_backend", storage)
    if not isinstance(backend, optuna.storages.RDBStorage) or not hasattr(backend, "_set_trial_attr_without_commit"):
        return None
    try:
        from optuna.storages._rdb.models import TrialModel, TrialUserAttributeModel  # noqa: F401
        from optuna.storages._rdb.storage import _create_scoped_session  # noqa: F401
    except ImportError:
        return None
    return backend


def _session(rdb: optuna.storages.RDBStorage):
    """A session that commits at the end and rolls back on an error (raised), as Optuna's own storage calls do."""
    from optuna.storages._rdb.storage import _create_scoped_session

    return _create_scoped_session(rdb.scoped_session)


def _state_counts(study: optuna.Study) -> dict | None:
    """{state: count} of the study's trials, or None when the storage is not an RDB storage."""
    if (rdb := _rdb(study._storage)) is None:
        return None
    from optuna.storages._rdb.models import TrialModel
    from sqlalchemy import func

    with _session(rdb) as session:
        return dict(session.query(TrialModel.state, func.count(TrialModel.trial_id))
                    .filter(TrialModel.study_id == study._study_id).group_by(TrialModel.state).all())


def taken(study: optuna.Study, number: int) -> int:
    """The trials that count toward a sweep's n_trials ahead of trial `number`: every complete or pruned one, and the
    running ones numbered below it. One statement: two could count a trial another process finishes in between
    twice (running in one, finished in the other)."""
    state = optuna.trial.TrialState
    if (rdb := _rdb(study._storage)) is None:
        return sum(1 for t in study.get_trials(deepcopy=False)
                   if t.state in DONE or t.state == state.RUNNING and t.number < number)
    from optuna.storages._rdb.models import TrialModel
    from sqlalchemy import and_, func, or_

    with _session(rdb) as session:
        return session.query(func.count(TrialModel.trial_id)).filter(
            TrialModel.study_id == study._study_id,
            or_(TrialModel.state.in_(DONE), and_(TrialModel.state == state.RUNNING, TrialModel.number < number)),
        ).scalar()


def set_user_attrs(trial: optuna.trial.Trial, attrs: dict) -> None:
    """Several user attrs of a trial in one transaction on an RDB storage (one commit, not one per attr)."""
    if (rdb := _rdb(trial.storage)) is None:
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        return
    from optuna.storages._rdb.models import TrialUserAttributeModel

    with _session(rdb) as session:
        for key, value in attrs.items():
            rdb._set_trial_attr_without_commit(session, TrialUserAttributeModel, trial._trial_id, key, value)
    trial._cached_frozen_trial.user_attrs.update(attrs)


def fail_stale(study: optuna.Study, wait_s: float) -> int:
    """Resume: trials left RUNNING by a dead process are failed (and re-queued by the retry callback)
    once their heartbeat is older than the grace period."""
    deadline = time.monotonic() + wait_s
    while True:
        with warnings.catch_warnings():  # "experimental" in Optuna 5, and said every time
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        if counts(study)["running"] == 0 or time.monotonic() > deadline:
            return counts(study)["failed"]
        time.sleep(1.0)


def existing_trials(storage_url: str, study_name: str) -> int:
    storage = make_storage(storage_url, heartbeat=False)
    try:
        return len(optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False))
    except KeyError:
        return 0


IGNORED_ON_RESUME = ("sweep.trials", "sweep.parallel", "tracking.")


def spec_changes(storage_url: str, study_name: str, spec_json: dict) -> list[str]:
    """The dotted keys where a spec differs from the one the study last ran with; trials, parallel and
    tracking may change on --resume, anything else would mix two experiments in one study."""
    storage = make_storage(storage_url, heartbeat=False)
    try:
        old = optuna.load_study(study_name=study_name, storage=storage).user_attrs.get("spec")
    except KeyError:
        return []
    return [k for k in _diff(old, spec_json) if not k.startswith(IGNORED_ON_RESUME)] if old else []


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [k for key in sorted(set(a) | set(b)) for k in _diff(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [] if a == b else [prefix.rstrip(".")]


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
