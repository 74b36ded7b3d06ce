"""Where a training run stands (Progress: saved with every checkpoint as progress.json) and what a diverged run
tells its user. No torch here: a run's driver reads a finished run's progress without loading it (~1.5-3 s)."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint so a restarted worker carries on."""

    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    best: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped: str = ""  # "", "early", "pruned", "done", "diverged"
    diverged: str = ""  # what went non-finite, e.g. "train/loss nan at epoch 3"
    wandb_id: str = ""  # unused since the driver keeps the W&B run; kept so older progress.json files load
    samples: int = 0
    train_seconds: float = 0.0

    def __post_init__(self):
        if self.best is None:  # written as null: JSON has no infinity
            self.best = math.inf

    def to_dict(self) -> dict:
        return asdict(self)


def read_progress(directory: Path) -> Progress:
    return Progress(**json.loads((Path(directory) / "progress.json").read_text()))


def diverged_message(progress: Progress, lr: float) -> str:
    return (f"train.lr: training diverged ({progress.diverged}); lower train.lr (now {lr:g}), e.g. "
            f"--set train.lr={lr / 10:g}, or scale the data (data.preprocessing.scale)")
