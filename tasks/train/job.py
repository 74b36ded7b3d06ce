"""What crosses the process boundary to a training worker, and what comes back: typed, not dicts."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..data import Preprocessor
from ..spec import Spec, validate

if TYPE_CHECKING:  # the loop imports torch: a driver that only builds a job does not need it
    from .loop import Progress


class EpochHook(Protocol):
    """Called on every worker after each epoch (a sweep's pruning); True asks every worker to stop."""

    def should_stop(self, row: dict, progress: Progress) -> bool: ...


class HookFactory(Protocol):
    def open(self, rank: int) -> EpochHook: ...


@dataclass
class Tracking:
    """The run's W&B run (opened by the driver, tasks/train/wandb_run.py): offline/online/disabled, named and
    grouped."""

    project: str
    mode: str
    name: str
    group: str
    entity: str | None = None
    job_type: str = "train"
    config_extra: dict = field(default_factory=dict)


@dataclass
class TrainJob:
    """One training run as its workers see it: the spec (as JSON, re-validated on the worker), the fitted
    preprocessor, which splits it scores, where rank 0 appends its epochs, an optional per-epoch hook (a sweep
    trial's pruner). W&B is the driver's (tasks/train/wandb_run.py)."""

    spec_json: dict
    preprocessor: Preprocessor
    has_val: bool
    evaluate: bool = True
    threads: int = 1
    progress_path: str | None = None
    hook: HookFactory | None = None
    tables: dict = field(default_factory=dict)  # split -> ObjectRef of its Arrow table: the splits small enough
    # that each worker holds its share as tensors (the others stream from Ray Data)

    @property
    def spec(self) -> Spec:
        return validate(self.spec_json)


@dataclass
class Trained:
    """What a finished training run leaves: the final checkpoint's files, copied out."""

    dir: Path
    metrics: dict
    progress: Progress
    wandb: dict = field(default_factory=dict)
    workers: int = 0
    seconds: float = 0.0
    note: str = ""
    eval_seconds: float = 0.0
