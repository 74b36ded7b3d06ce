"""A Ray Train run's W&B run, kept by the driver that started Ray Train rather than by rank 0.

Rank 0 is on the path to the first epoch; the driver only waits while Ray Train's controller and workers start.
Opened in rank 0, W&B's import and init took ~0.9 s of that worker's CPU before its first epoch (timed with
cluster up: train function entered 7.9 s after the command started, W&B open 8.9 s, first epoch line 10.4 s).
Here the run opens in a thread beside Ray Train's start-up, logs each epoch row as rank 0 appends it to the
progress file (the same rows the console shows), and at the end takes the test metrics, baselines and plots
from the final checkpoint's files. A worker restarted from a checkpoint changes nothing here: the run never
left this process, so it stays one offline directory with one id (rank 0 restarted had to open a second one).
An epoch redone after a restart keeps the row W&B logged first (W&B's steps only go forward); history.json
holds the redone one. W&B failing (an online run that cannot reach its server) is a warning, not the run's
failure: the run's results are in its directory either way.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from pathlib import Path

from .. import tracking
from ..progress import read_new, say
from .job import Tracking, Trained

CLOSE_WAIT_S = 30.0  # fit() raised while W&B still opens its run (online, unreachable): do not wait longer
NICE = 10  # how far the W&B thread steps back (_yield_cpu)
POLL_S = 0.1  # as tasks/progress.Follower: an epoch row reaches W&B at most this late


class DriverRun:
    """`with DriverRun(...) as wb:` around `trainer.fit()`; `wb.finish(trained, ...)` once the run is collected.
    Leaving the block without `finish` (fit raised) closes the W&B run as failed."""

    def __init__(self, t: Tracking, config: dict, home: Path, progress_path: str | None):
        self.t, self.config, self.home = t, config, Path(home)
        self.path = Path(progress_path) if progress_path else None
        self.run = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._pos, self._step = 0, 0
        self._thread = threading.Thread(target=self._work, daemon=True, name="wandb-run")

    def __enter__(self) -> DriverRun:
        if self.t.mode != "disabled":
            tracking.env_defaults(self.home)  # here, before the thread: see tracking.env_defaults
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._join(CLOSE_WAIT_S) and self.run is not None:  # not finished: fit raised
            self.run.finish(exit_code=1)
            self.run = None

    def _work(self) -> None:
        t = self.t
        try:
            _yield_cpu()
            self.run = tracking.start(t.project, t.mode, self.home, name=t.name, group=t.group,
                                      config={**self.config, **t.config_extra}, job_type=t.job_type,
                                      entity=t.entity, requirements=t.job_type != "trial")
            while not self._stop.wait(POLL_S):
                self._log_new()
            self._log_new()
        except Exception as e:  # noqa: BLE001 - W&B never stops the training it tracks; finish() warns
            self.error = e

    def _log_new(self) -> None:
        """Each complete epoch row appended since the last look, in order; an epoch at or below the last logged
        (redone after a worker restart) is skipped."""
        if self.path is None:
            return
        records, self._pos = read_new(self.path, self._pos)
        for record in records:
            row = record.get("row") if record.get("kind") == "epoch" else None
            if row and row["epoch"] > self._step:
                self.run.log(row, step=row["epoch"])
                self._step = row["epoch"]

    def _join(self, timeout: float | None = None) -> bool:
        """Stop following the progress file; False when the thread is still busy after `timeout`."""
        self._stop.set()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def finish(self, trained: Trained, baselines: dict | None = None, trial: bool = False) -> dict:
        """The summary (test metrics, baselines, best epoch, why it stopped; a trial's state), the plots the
        evaluation drew, wandb.json beside the run's files; the run closed. Returns what wandb.json holds."""
        self._join()
        if self.error is not None:
            say(f"warning: W&B: {type(self.error).__name__}: {self.error}; run {self.t.name} is not tracked "
                f"(its metrics, plots and history are in its directory)")
            if self.run is not None:
                with contextlib.suppress(Exception):
                    self.run.finish(exit_code=1)
            self.run = None
            return {"mode": self.t.mode, "run_dir": None}
        if self.run is None:
            return {"mode": "disabled", "run_dir": None}
        run, progress = self.run, trained.progress
        run.summary.update({**trained.metrics, **(baselines or {}), "best_epoch": progress.best_epoch,
                            "stopped": progress.stopped})
        if trial:
            run.summary["trial_state"] = "pruned" if progress.stopped == "pruned" else "complete"
        plots = _plots(trained.dir)
        if plots:
            import wandb

            run.log({f"plots/{Path(p).stem}": wandb.Image(str(trained.dir / p)) for p in plots}, step=progress.epoch)
        info = {"mode": self.t.mode, "run_dir": tracking.run_dir(run), "id": run.id}
        (trained.dir / "wandb.json").write_text(json.dumps(info))
        self.run = None
        run.finish(exit_code=0 if progress.stopped in ("done", "early", "pruned") else 1)
        return info


def _yield_cpu() -> None:
    """Linux: lower this thread's priority (nice +10; the wandb-core process it starts inherits it) so that W&B's
    start gives way to Ray Train's controller and workers starting on the same cores. Measured with cluster up on
    2 cores, at normal priority the workers started ~0.9 s later than without W&B in the driver."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)


def _plots(out: Path) -> list[str]:
    evald = out / "eval.json"
    return json.loads(evald.read_text()).get("plots", []) if evald.exists() else []
