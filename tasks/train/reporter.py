"""What a Ray Train worker does around the plain loop: report each epoch (metrics, a checkpoint, the progress
file's row from rank 0 — the console's and W&B's, both written by the driver — the sweep's pruning hook), and
finish with the test evaluation."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from models import describe

from .. import progress as progress_file
from ..finite import dumps as finite_json
from .checkpoint import save_checkpoint
from .job import TrainJob
from .loop import Progress


class EpochReporter:
    """Called by `fit` after every epoch on every worker; `ray.train.report` is a barrier, so all call it."""

    def __init__(self, job: TrainJob, rank: int, model: torch.nn.Module, epochs: int, progress: Progress):
        self.job, self.rank, self.model, self.epochs = job, rank, model, epochs
        self.hook = job.hook.open(rank) if job.hook is not None else None

    def __call__(self, row: dict, progress: Progress, extra: dict, best: dict) -> bool:
        import ray.train

        stop = self.hook.should_stop(row, progress) if self.hook is not None else False
        if self.rank == 0:
            progress_file.append(self.job.progress_path, {"kind": "epoch", "row": row, "epochs": self.epochs})
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if self.rank == 0:
                save_checkpoint(Path(tmp), self.model.state_dict(), best, extra.get("optimizer", {}), progress)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(dict(row), checkpoint=checkpoint)
        return stop

    def finish(self, best: dict, progress: Progress, test_batches, world: int, device) -> None:
        """Rank 0: best weights and the test evaluation (runs only; a trial never looks at test) go into the final
        checkpoint; the other ranks report nothing but the barrier."""
        import ray.train

        with tempfile.TemporaryDirectory() as tmp:
            checkpoint, final = None, {}
            if self.rank == 0:
                final = self._final_files(Path(tmp), best, progress, test_batches, world, device)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report({"final": 1, **final}, checkpoint=checkpoint)

    def _final_files(self, out: Path, best: dict, progress: Progress, test_batches, world: int, device) -> dict:
        from ..evaluate import evaluate

        self.model.load_state_dict(best)
        final = {}
        if self.job.evaluate and progress.stopped != "diverged":  # nothing to register: the run is refused
            final = evaluate(self.model, test_batches(), self.job.preprocessor, progress.history, out,
                             device=device, seed=self.job.spec.train.seed)["metrics"]
        torch.save({k: v.cpu() for k, v in best.items()}, out / "model.pt")
        # model.json's core, here where the model is: the run's driver never loads torch (tasks/runs/register.py)
        (out / "model.json").write_text(json.dumps(describe(self.model, self.job.spec.model.name)))
        (out / "progress.json").write_text(finite_json(progress.to_dict()))
        (out / "world.json").write_text(json.dumps({"workers": world, "device": str(device)}))
        return final
