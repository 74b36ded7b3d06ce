"""The sweep's progress line, printed by the driver as trials finish (and every 15 s while none does)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Live:
    """The sweep's progress line: trials done of N, best so far, elapsed, and an estimate of what is left."""

    n_trials: int
    direction: str
    t0: float = field(default_factory=time.monotonic)
    best: float | None = None
    done: int = 0
    shown: float = 0.0

    def finished(self, value: float | None) -> None:
        self.done += 1
        if value is not None and (self.best is None or (value > self.best) == (self.direction == "maximize")):
            self.best = value

    def line(self, c: dict) -> str:
        self.shown = time.monotonic()
        elapsed = self.shown - self.t0
        left = self.n_trials - c["complete"] - c["pruned"]
        eta = f"~{elapsed / self.done * left:.0f}s left" if self.done else "estimating"
        best = f"{self.best:.4f}" if self.best is not None else "-"
        return (f"trials {c['complete'] + c['pruned']}/{self.n_trials}: {c['complete']} complete, {c['pruned']} "
                f"pruned, {c['failed']} failed, {c['running']} running · best {best} · {elapsed:.0f}s, {eta}")
