"""A warm trial worker: a Ray actor that imports torch and the model code once, keeps the prepared
splits in memory, and runs one trial after another. Each trial's W&B run is written by a thread of
the actor, off the trial's critical path."""
from __future__ import annotations

import gc
import os
import queue
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import ray

from .. import tracking
from .job import TrialJob
from .storage import make_pruner, make_storage

if TYPE_CHECKING:
    from .trial import TrialData


class TrialTracker:
    """One W&B run per trial (name `<study>-t<n>`, group = the study), opened, fed and finished by a
    thread: opening a run costs ~1 s the first time in a process and ~0.2 s after."""

    def __init__(self, settings: dict, name: str, config: dict, home: Path):
        self.q: queue.Queue = queue.Queue()
        self.run_dir: str | None = None
        self.error: str | None = None
        self.opened = threading.Event()
        self.thread = threading.Thread(target=self._work, args=(settings, name, config, home), daemon=True)
        self.thread.start()

    def _work(self, s: dict, name: str, config: dict, home: Path) -> None:
        try:
            run = tracking.start(s["project"], s["mode"], home, name=name, group=s["group"], config=config,
                                 job_type="trial", entity=s.get("entity"), requirements=False)
            self.run_dir = tracking.run_dir(run)
            self.opened.set()
            while True:
                kind, payload = self.q.get(timeout=3600)
                if kind == "log":
                    run.log(payload, step=payload["epoch"])
                    continue
                run.summary.update(payload)
                run.finish(exit_code=0)
                return
        except Exception as e:  # noqa: BLE001 - tracking never fails a trial; the error is reported back
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self.opened.set()

    def log(self, row: dict) -> None:
        self.q.put(("log", dict(row)))

    def close(self, summary: dict) -> str | None:
        self.q.put(("summary", summary))
        self.opened.wait(60)
        return self.run_dir


class TrialWorker:
    """The actor. `ready` warms it for a sweep; `run_trial` runs one trial; `drain` waits for W&B."""

    def __init__(self, home: str, wandb: dict, owner: str | None = None):
        import torch  # noqa: F401 - imported once per worker, not once per trial (never torch._dynamo: optim.py)

        import models.registry  # noqa: F401 - every family module

        from . import trial  # noqa: F401 - the loop and its evaluation, before the first trial asks for them

        if wandb["mode"] != "disabled":
            tracking.warm_imports(wandb["mode"])  # not in the first trial's tracker thread, beside its epochs
        gc.freeze()  # the modules stay for the worker's life: no collection walks them again (~0.2 s each)
        self.home, self.wandb = Path(home), wandb
        self.data: dict[str, TrialData] = {}
        self.studies: dict[tuple, optuna.Study] = {}
        self.trackers: list[TrialTracker] = []
        self.owner, self.lock = owner, threading.Lock()  # the sweep (Ray job) it works for: tasks/sweep/warm.py
        # what it has loaded: for drawing a study's plots, for registering a best trial (plots.draw_on gives roles)
        self.drew = self.registered = False
        self.plotting_loaded = False  # what drawing imports is loaded (not only being imported by warm_up)
        self.trials_run = 0

    @ray.method(concurrency_group="control")  # answered while a trial runs
    def claim(self, job: str) -> bool:
        """Take this worker for the sweep of Ray job `job`: True when it was free or its sweep's driver is gone."""
        from .warm import job_alive

        with self.lock:
            if self.owner not in (None, job) and job_alive(self.owner):
                return False
            self.owner = job
            return True

    @ray.method(concurrency_group="control")
    def release(self, job: str) -> None:
        with self.lock:
            if self.owner == job:
                self.owner = None

    def ready(self, prepared_dir: str, storage_url: str, study: str, sweep: dict, epochs: int,
              home: str | None = None, wandb: dict | None = None) -> dict:
        """Before the first trial: the splits in memory and the study opened; then gc.freeze(), so the
        collection after each trial walks only what that trial allocated. A worker kept from an earlier sweep
        (tasks/sweep/warm.py) drops that sweep's splits and study first, and takes this one's home and W&B; the
        whole heap was collected after that sweep (`tidy`), so the collection here walks only what it loads."""
        t0 = time.perf_counter()
        self.data = {k: v for k, v in self.data.items() if k == prepared_dir}
        self.studies = {k: v for k, v in self.studies.items() if k == (storage_url, study)}
        if home is not None:
            self.home, self.wandb = Path(home), wandb
        self._data(prepared_dir)
        self._study(storage_url, study, sweep, epochs)
        gc.collect()
        gc.freeze()
        return {"seconds": time.perf_counter() - t0, "rss_mb": rss_mb(), **where()}

    def tidy(self) -> None:
        """After its sweep (tasks/sweep/warm.py release), idle: the sweep's studies go and the whole heap is
        collected, frozen objects too (a cycle that held the last splits or study), then frozen again: here, not
        in the next sweep's ready(), where this full collection of a heap holding torch took ~0.45 s."""
        self.studies = {}
        gc.unfreeze()
        gc.collect()
        gc.freeze()

    def _data(self, prepared_dir: str) -> TrialData:
        from .trial import TrialData  # torch: in the actor, never in the driver that defines it

        if prepared_dir not in self.data:
            self.data[prepared_dir] = TrialData(prepared_dir)
        return self.data[prepared_dir]

    def _study(self, url: str, name: str, sweep: dict, epochs: int) -> optuna.Study:
        from ..spec import Sweep

        key = (url, name)
        if key not in self.studies:  # heartbeats are the driver's; pruners are not stored, so rebuilt here
            self.studies[key] = optuna.load_study(study_name=name, storage=make_storage(url, heartbeat=False),
                                                  pruner=make_pruner(Sweep.model_validate(sweep), epochs))
        return self.studies[key]

    def run_trial(self, job: TrialJob, storage_url: str, study: str, sweep: dict) -> dict:
        """Run one trial; returns its state ("complete" | "pruned"), value, progress and W&B run directory. Where
        it ran (node_id, worker_pid) the driver writes to the trial (tasks/sweep/trials.py), not this worker:
        two storage writes less on the trial's path."""
        t0 = time.perf_counter()
        trial = optuna.trial.Trial(self._study(storage_url, study, sweep, job.spec_json["train"]["epochs"]),
                                   job.trial_id)
        tracker = self._tracker(job)
        state, value, progress = "complete", None, None
        from .trial import run_trial

        try:
            progress, _ = run_trial(trial, job, self._data(job.prepared_dir), tracker.log if tracker else None)
            value = next(r for r in progress.history if r["epoch"] == progress.best_epoch)[job.metric]
        except optuna.TrialPruned:
            from ..train.checkpoint import read_progress

            state, progress = "pruned", read_progress(Path(job.out_dir))
        run_dir = tracker.close({"best_epoch": progress.best_epoch, "stopped": progress.stopped,
                                 "trial_state": state}) if tracker else None
        gc.collect()
        self.trials_run += 1
        if self.trials_run == 1:
            # what the first trial loaded for good (W&B, imported by its tracker; torch's lazily loaded parts) is
            # frozen too: every later collection walked it again, ~80 ms of each trial
            gc.freeze()
        return {"state": state, "value": value, "progress": progress.to_dict(), "wandb_run_dir": run_dir,
                "seconds": time.perf_counter() - t0, "rss_mb": rss_mb(), **where()}

    def _tracker(self, job: TrialJob) -> TrialTracker | None:
        self.trackers = [t for t in self.trackers if t.thread.is_alive()]
        if self.wandb["mode"] == "disabled":
            return None
        tracker = TrialTracker(self.wandb, f"{self.wandb['group']}-t{job.number}",
                               {**job.spec_json, "trial": job.params}, self.home)
        self.trackers.append(tracker)
        return tracker

    def register_best(self, spec, prepared, study: str, storage_url: str, home: str, wandb_mode: str,
                      run_id: str | None, drawn: tuple | None = None, baselines: dict | None = None) -> dict:
        """The best trial's weights scored on test and registered as a run directory, here (see WarmPool);
        `drawn`: (folder, ref, the plots to draw here) of the study's plots another worker draws meanwhile
        (plots.draw_on)."""
        from .best import register_best

        self.registered = True
        return register_best(spec, prepared, study, storage_url, Path(home), wandb_mode, run_id, drawn, baselines)

    def study_plots(self, study: str, storage_url: str, out_dir: str, baselines_of: tuple | None = None,
                    only: tuple | None = None) -> dict:
        """Optuna's plots of the study (or those named in `only`) into out_dir, drawn here while another worker
        scores the best trial on test; `baselines_of` (prepared, spec): then also the baselines' test metrics
        ("baselines"), scored here because drawing has scikit-learn loaded (Optuna's importance plot) and the
        sweep's own process never imports it."""
        from .plots import study_plots

        loaded = optuna.load_study(study_name=study, storage=make_storage(storage_url, heartbeat=False))
        self.drew = True
        drawn = study_plots(loaded, Path(out_dir), as_name="sweep", only=only)
        self.plotting_loaded = True
        if baselines_of is not None:
            from ..evaluate import score_baselines

            prepared, spec = baselines_of
            try:
                drawn["baselines"] = score_baselines(prepared, prepared.preprocessor, spec)
            except Exception:  # noqa: BLE001 - the plots stand; the registering worker scores them, raising there
                pass
        return drawn

    def warm_up(self) -> None:
        """Called on the first worker left idle at a sweep's end while no worker has drawn a study's plots yet,
        as another runs the last trial: it imports what drawing them loads the first time in a process
        (scikit-learn for Optuna's importance plot ~1 s, matplotlib and plotly ~0.3 s) on the core that is free
        now, not after the trials, and is then the one to draw (plots.draw_on): from the start, as a drawing
        asked for meanwhile waits for this call."""
        from .plots import plotting

        self.drew = True
        plotting()
        self.plotting_loaded = True

    @ray.method(concurrency_group="control")
    def roles(self) -> tuple[bool, bool, bool]:
        """Whether it has loaded what drawing a study's plots imports (it drew, or warms up), whether it
        registered a best trial (torch's evaluation, W&B's summary run: their first time in a process), and
        whether drawing's imports are done (not still under way in warm_up)."""
        return self.drew, self.registered, self.plotting_loaded

    def drain(self, timeout: float = 60.0) -> list[str]:
        """Wait for the W&B runs still being written; returns their errors (call before killing the actor)."""
        deadline = time.monotonic() + timeout
        for t in self.trackers:
            t.thread.join(max(0.0, deadline - time.monotonic()))
        return [t.error for t in self.trackers if t.error]


def where() -> dict:
    """This worker's node and process: the trial's user attrs node_id and worker_pid."""
    return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")
