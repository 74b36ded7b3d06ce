"""A registered run read back: the model (weights only) and its fitted preprocessor."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the annotation only: reading a run's files needs no torch until its model loads
    from torch import nn

from ..data import Preprocessor
from ..errors import UserError

RUN_FILES = ("model.pt", "model.json", "preprocessor.json")
_CACHE: dict[str, LoadedRun] = {}


@dataclass
class LoadedRun:
    dir: Path
    model: nn.Module
    preprocessor: Preprocessor

    @property
    def run_id(self) -> str:
        return self.dir.name


def load_run(run_dir: str | Path) -> LoadedRun:
    """The model (`weights_only=True`) and preprocessor of a run directory, loaded once per process.
    A model.pt that is not plain tensors (a pickle that would run code) is the user's error: refused."""
    from models import load_model
    from models.registry import WeightsError

    run_dir = Path(run_dir)
    missing = [f for f in RUN_FILES if not (run_dir / f).is_file()]
    if missing:
        raise UserError(f"RUN_DIR: {str(run_dir)!r} is not a run directory (missing {missing})")
    key = str(run_dir.resolve())
    if key not in _CACHE:
        try:
            model = load_model(run_dir)
        except WeightsError as e:
            raise UserError(str(e)) from None
        _CACHE[key] = LoadedRun(run_dir, model, Preprocessor.load(run_dir))
    return _CACHE[key]
