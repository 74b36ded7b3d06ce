"""Registered runs read back from their directories: listed newest first, found by path, id or NAME/ID.

Only files are read (JSON and YAML, nothing heavy is imported), so `conductor runs` answers at once.
A run registered before repro.json existed (no commit, no duration) or before baselines were scored
still lists, shows and compares: what it lacks is shown as "-".
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import yaml

from ..errors import UserError
from ..names import NAME
from ..spec import HIGHER_IS_BETTER, MAIN_METRIC

# the task's headline metric, as in tasks/evaluate/plots.py (not imported: it loads torch and matplotlib)
NOT_EXPERIMENTS = {"cluster", "wandb", "compare"}  # CONDUCTOR_HOME's own folders; dot-folders are skipped too
NOT_RUNS = {"sweeps"}  # runs/<name>/sweeps/<study>/ holds a sweep's trials


def _json(path: Path, default=None):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


@dataclass
class RunInfo:
    """One run directory: its files as read, and what the tables show of them."""

    dir: Path
    metrics: dict
    spec: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    repro: dict | None = None

    @classmethod
    def read(cls, run_dir: Path) -> RunInfo:
        run_dir = Path(run_dir)
        metrics = _json(run_dir / "metrics.json")
        if not isinstance(metrics, dict):
            raise UserError(f"RUN: {str(run_dir)!r} is not a run directory (no readable metrics.json)")
        try:
            spec = yaml.safe_load((run_dir / "spec.yaml").read_text()) or {}
        except (OSError, yaml.YAMLError):
            spec = {}
        return cls(run_dir, metrics, spec if isinstance(spec, dict) else {}, _json(run_dir / "model.json", {}),
                   _json(run_dir / "repro.json"))

    @property
    def run_id(self) -> str:
        return self.dir.name

    @property
    def name(self) -> str:
        return self.spec.get("name") or self.dir.parent.name

    @property
    def task(self) -> str | None:
        return (self.spec.get("data") or {}).get("task") or self.model.get("task")

    @property
    def model_name(self) -> str | None:
        return self.model.get("name") or (self.spec.get("model") or {}).get("name")

    @property
    def time(self) -> datetime:
        """From the run id (`%Y%m%d-%H%M%S-xxxx`, the start), else when metrics.json was written."""
        try:
            return datetime.strptime(self.run_id[:15], "%Y%m%d-%H%M%S")
        except ValueError:
            return datetime.fromtimestamp((self.dir / "metrics.json").stat().st_mtime)

    @property
    def main_metric(self) -> str | None:
        return f"test/{MAIN_METRIC[self.task]}" if self.task in MAIN_METRIC else None

    def best_baseline(self) -> tuple[str, float] | None:
        """The best `baseline/<name>/<main metric>` in metrics.json (higher or lower is better by the metric)."""
        main = MAIN_METRIC.get(self.task or "")
        scores = {k.split("/")[1]: v for k, v in self.metrics.items()
                  if k.startswith("baseline/") and k.count("/") == 2 and k.split("/")[2] == main
                  and isinstance(v, int | float)}
        if not scores:
            return None
        best = (max if main in HIGHER_IS_BETTER else min)(scores, key=scores.get)
        return best, scores[best]

    def commit(self) -> tuple[str | None, bool | None]:
        """The spec repository's commit and dirty flag (conductor's, when the spec was outside a repository)."""
        git = (self.repro or {}).get("git") or {}
        for side in ("spec", "conductor"):
            if (git.get(side) or {}).get("commit"):
                return git[side]["commit"], git[side].get("dirty")
        return None, None

    def row(self) -> dict:
        """What `conductor runs --json` holds for this run."""
        commit, dirty = self.commit()
        baseline = self.best_baseline()
        return {"run_id": self.run_id, "name": self.name, "time": self.time.isoformat(timespec="seconds"),
                "run_dir": str(self.dir), "model": self.model_name, "task": self.task, "metric": self.main_metric,
                "value": self.metrics.get(self.main_metric) if self.main_metric else None,
                "baseline": {"name": baseline[0], "value": baseline[1]} if baseline else None,
                "epochs": self.metrics.get("epochs"), "duration_s": (self.repro or {}).get("duration_s"),
                "commit": commit, "dirty": dirty}


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and not path.name.startswith(".") and (path / "metrics.json").is_file()


def experiment_dirs(home: Path) -> list[Path]:
    home = Path(home)
    if not home.is_dir():
        return []
    return sorted(p for p in home.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in NOT_EXPERIMENTS)


def list_runs(home: Path, name: str | None = None) -> list[RunInfo]:
    """Every registered run under `home` (or of experiment `name`), newest first; staged, cache, sweep
    trial and other folders that are no run directory are skipped, and so is one whose files are unreadable."""
    home = Path(home)
    if name is not None:
        if not NAME.fullmatch(name) or not (home / name).is_dir() or name in NOT_EXPERIMENTS:
            known = [p.name for p in experiment_dirs(home)]
            raise UserError(f"NAME: no runs of {name!r} under {home}; names with runs: {known or 'none yet'}")
        folders = [home / name]
    else:
        folders = experiment_dirs(home)
    runs = []
    for folder in folders:
        for path in folder.iterdir():
            if path.name not in NOT_RUNS and is_run_dir(path):
                try:
                    runs.append(RunInfo.read(path))
                except UserError:
                    continue
    return sorted(runs, key=lambda r: (r.time, r.run_id), reverse=True)


def resolve_run(text: str, home: Path, key: str = "RUN") -> Path:
    """A run directory from a path, a run id, or NAME/ID; anything else is the user's error."""
    home, given = Path(home), Path(os.path.expanduser(text))
    if is_run_dir(given):
        return given
    parts = text.strip("/").split("/")
    if len(parts) <= 2 and all(NAME.fullmatch(p) for p in parts):
        if len(parts) == 2 and is_run_dir(home / parts[0] / parts[1]):
            return home / parts[0] / parts[1]
        if len(parts) == 1:
            found = [f / text for f in experiment_dirs(home) if is_run_dir(f / text)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise UserError(f"{key}: run id {text!r} is in {len(found)} experiments; write NAME/ID: "
                                f"{', '.join(f'{p.parent.name}/{p.name}' for p in found)}")
    raise UserError(f"{key}: {text!r} is no run directory, run id or NAME/ID under {home}; "
                    "`conductor runs` lists them")


def fmt_duration(seconds) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    return f"{seconds:.1f}s" if seconds < 120 else time.strftime("%H:%M:%S", time.gmtime(seconds)).lstrip("0:") or "0s"


def fmt_value(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return "-" if v is None else str(v)
