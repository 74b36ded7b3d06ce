"""What a Ray Train worker does around the plain loop: report each epoch (metrics, a checkpoint,
W&B and the console from rank 0, the sweep's pruning hook), and finish with the test evaluation."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from models import describe

from .. import progress as progress_file
from .. import tracking
from ..finite import dumps as finite_json
from .checkpoint import save_checkpoint
from .job import TrainJob
from .loop import Progress


class EpochReporter:
    """Called by `fit` after every epoch on every worker; `ray.train.report` is a barrier, so all call it."""

    def __init__(self, job: TrainJob, rank: int, model: torch.nn.Module, epochs: int, progress: Progress):
        self.job, self.rank, self.model, self.epochs = job, rank, model, epochs
        t = job.tracking
        self.run = None
        if rank == 0:
            # a worker restarted from a checkpoint continues the W&B run it names (resume="allow")
            self.run = tracking.start(t.project, t.mode, Path(job.home), name=t.name, group=t.group,
                                      config={**job.spec_json, **t.config_extra}, job_type=t.job_type, entity=t.entity,
                                      run_id=progress.wandb_id or None, requirements=t.job_type != "trial")
            if self.run is not None:
                if progress.wandb_id and t.mode == "offline":
                    progress_file.append(job.progress_path, {"kind": "note", "text": (
                        f"W&B offline cannot continue run {progress.wandb_id} in place: the restarted worker logs "
                        "to a second offline directory with the same run id and name; `wandb sync` uploads both")})
                progress.wandb_id = self.run.id
        self.hook = job.hook.open(rank) if job.hook is not None else None

    def __call__(self, row: dict, progress: Progress, extra: dict, best: dict) -> bool:
        import ray.train

        stop = self.hook.should_stop(row, progress) if self.hook is not None else False
        if self.rank == 0:
            if self.run is not None:
                self.run.log(row, step=row["epoch"])
            progress_file.append(self.job.progress_path, {"kind": "epoch", "row": row, "epochs": self.epochs})
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if self.rank == 0:
                save_checkpoint(Path(tmp), self.model.state_dict(), best, extra.get("optimizer", {}), progress)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(dict(row), checkpoint=checkpoint)
        return stop

    def finish(self, best: dict, progress: Progress, test_batches, world: int, device) -> None:
        """Rank 0: best weights, test evaluation (runs only; a trial never looks at test) and the W&B
        summary go into the final checkpoint; the other ranks report nothing but the barrier."""
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
        final, plots, baselines = {}, [], {}
        if self.job.evaluate and progress.stopped != "diverged":  # nothing to register: the run is refused
            result = evaluate(self.model, test_batches(), self.job.preprocessor, progress.history, out,
                              device=device, seed=self.job.spec.train.seed)
            final, plots, baselines = result["metrics"], result["plots"], self.job.baselines
        torch.save({k: v.cpu() for k, v in best.items()}, out / "model.pt")
        # model.json's core, here where the model is: the run's driver never loads torch (tasks/runs/register.py)
        (out / "model.json").write_text(json.dumps(describe(self.model, self.job.spec.model.name)))
        (out / "progress.json").write_text(finite_json(progress.to_dict()))
        (out / "world.json").write_text(json.dumps({"workers": world, "device": str(device)}))
        if self.run is not None:
            import wandb

            self.run.summary.update({**final, **baselines, "best_epoch": progress.best_epoch,
                                     "stopped": progress.stopped})
            if self.hook is not None:
                self.run.summary["trial_state"] = "pruned" if progress.stopped == "pruned" else "complete"
            if plots:
                self.run.log({f"plots/{Path(p).stem}": wandb.Image(str(out / p)) for p in plots}, step=progress.epoch)
            (out / "wandb.json").write_text(json.dumps({"mode": self.job.tracking.mode,
                                                        "run_dir": tracking.run_dir(self.run), "id": self.run.id}))
        return final

    def close(self, progress: Progress) -> None:
        if self.run is not None:
            self.run.finish(exit_code=0 if progress.stopped in ("done", "early", "pruned") else 1)
