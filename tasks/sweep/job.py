"""What the driver hands a warm worker for one trial: plain data, no torch (the driver never imports it)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrialJob:
    """What a warm worker needs to run one Optuna trial of a sweep."""

    trial_id: int
    number: int
    params: dict
    spec_json: dict  # the trial's spec (the sweep's spec with params applied), re-validated on the worker
    prepared_dir: str
    out_dir: str
    metric: str
    threads: int = 1
