"""What preprocessing hands on: a light module (no Dask), so a sweep's driver can hold one without importing
the preprocessing steps (tasks.sweep.objective imported dask.dataframe for this class: 0.4 s of a start)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .preprocessor import Preprocessor


@dataclass
class Prepared:
    """A finished preprocessing output: where its Parquet splits are, and the fitted preprocessor."""

    dir: Path
    preprocessor: Preprocessor
    cached: bool = False
    seconds: float = 0.0

    def path(self, split: str) -> str:
        return str(self.dir / split)

    @classmethod
    def load(cls, directory: Path) -> Prepared:
        return cls(Path(directory), Preprocessor.load(directory), cached=True)
