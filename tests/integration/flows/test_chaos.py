"""Chaos, one case of each (benchmarks/chaos.py loops them): a Ray Train worker killed with SIGKILL mid-run.
The run completes from its last checkpoint, redoes at most the epoch in flight, keeps one W&B run
(the driver's) with every epoch across the restart and registers one clean history."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
from wandb_files import read_run

from tasks.spec import validate

pytestmark = pytest.mark.integration
EPOCHS = 4


def ray_train_workers() -> list[psutil.Process]:
    import ray

    raylet = ray._private.worker._global_node.all_processes["raylet"][0].process.pid
    found = []
    for p in psutil.Process(raylet).children():
        try:
            if "RayTrainWorker" in " ".join(p.cmdline() or []):
                found.append(p)
        except psutil.Error:
            continue
    return found


class EpochWatcher(threading.Thread):
    """Follows the run's progress file (as the console does): every epoch row seen, and a SIGKILL to one
    Ray Train worker once epoch `kill_after` is reported."""

    def __init__(self, home: Path, kill_after: int):
        super().__init__(daemon=True)
        self.home, self.kill_after = home, kill_after
        self.epochs, self.killed, self.stop = [], None, threading.Event()

    def run(self):
        seen: dict[Path, int] = {}
        while not self.stop.is_set():
            for path in (self.home / ".progress").glob("*.jsonl"):
                with open(path) as f:
                    f.seek(seen.get(path, 0))
                    while (line := f.readline()).endswith("\n"):
                        seen[path] = f.tell()
                        rec = json.loads(line)
                        if rec.get("kind") == "epoch":
                            self.epochs.append(rec["row"]["epoch"])
            # killed once Ray Train has registered a checkpoint (its controller writes the snapshot when it
            # does, polling every 0.2 s): an epoch reported but not yet registered is redone, as in Ray
            if self.killed is None and self.epochs and self.epochs[-1] >= self.kill_after and \
                    any((self.home / ".ray_storage").rglob("checkpoint_manager_snapshot.json")):
                workers = ray_train_workers()
                if workers:
                    self.killed = workers[-1].pid
                    os.kill(self.killed, signal.SIGKILL)
            time.sleep(0.05)


def test_a_killed_ray_train_worker_costs_at_most_one_epoch_and_keeps_one_wandb_run(engines, home, smoke_spec):
    from flows.pipeline import run_pipeline

    # epochs of ~1 s: the smoke table's took 0.05 s once each worker held its share as tensors, so the kill
    # came after several epochs reported within one of the controller's polls
    spec = {**smoke_spec, "name": "chaos-worker",
            "data": {"source": "builtin:synthetic", "target": "label",
                     "synthetic": {"rows": 15_000, "features": 16, "classes": 2, "seed": 0}},
            "train": {**smoke_spec["train"], "epochs": EPOCHS, "max_failures": 2, "batch_size": 32},
            "tracking": {"wandb": {"mode": "offline"}}}
    watcher = EpochWatcher(home, kill_after=2)  # epoch 1's checkpoint is persisted by then
    watcher.start()
    try:
        summary = run_pipeline(validate(spec))
    finally:
        watcher.stop.set()
        watcher.join(5)
    assert watcher.killed, f"no Ray Train worker was killed; epochs seen {watcher.epochs}"
    redone = len(watcher.epochs) - len(set(watcher.epochs))
    assert redone <= 1 and sorted(set(watcher.epochs)) == list(range(1, EPOCHS + 1)), watcher.epochs
    run_dir = Path(summary["run_dir"])
    history = json.loads((run_dir / "history.json").read_text())
    assert [r["epoch"] for r in history] == list(range(1, EPOCHS + 1))
    assert summary["metrics"]["test/accuracy"] > 0.7
    run_id = Path(summary["wandb"]["run_dir"]).name.rsplit("-", 1)[-1]  # offline-run-<time>-<id>
    pieces = sorted((home / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(pieces) == 1, [d.name for d in pieces]  # the driver keeps the run: the restart does not split it
    logged = read_run(pieces[0])
    assert [row["epoch"] for row in logged["history"] if "epoch" in row] == list(range(1, EPOCHS + 1))
    assert logged["state"] == "finished" and logged["summary"]["test/accuracy"] == pytest.approx(
        summary["metrics"]["test/accuracy"])
    assert not list((home / ".ray_storage").glob("chaos-worker*"))
