"""A training checkpoint: last and best weights, optimizer and progress; read back with weights_only."""
from __future__ import annotations

from pathlib import Path

import torch

from ..finite import dumps as finite_json
from .state import Progress, read_progress  # noqa: F401 - read_progress's old home


def save_checkpoint(directory: Path, last: dict, best: dict, optimizer: dict, progress: Progress) -> None:
    directory = Path(directory)
    torch.save(last, directory / "last.pt")
    torch.save(best, directory / "model.pt")
    torch.save(optimizer, directory / "optimizer.pt")
    (directory / "progress.json").write_text(finite_json(progress.to_dict()))


def load_checkpoint(directory: Path) -> tuple[dict, dict, dict, Progress]:
    """(last weights, best weights, optimizer state, progress) of a checkpoint directory."""
    directory = Path(directory)
    last = torch.load(directory / "last.pt", weights_only=True)
    best = torch.load(directory / "model.pt", weights_only=True)
    optimizer = torch.load(directory / "optimizer.pt", weights_only=True)
    return last, best, optimizer, read_progress(directory)
