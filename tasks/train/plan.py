"""How many Ray Train workers and trials fit the cluster, with what each gets, and why."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import UserError

MIN_CPU_PER_WORKER = 0.25


@dataclass
class Plan:
    """How many Ray Train workers, with what each, and why (said when it differs from the spec)."""

    workers: int
    cpu: float
    gpu: float
    note: str = ""


def plan_workers(requested: int, use_gpu, cpus: float, gpus: float, share: int = 1) -> Plan:
    """Fit `requested` workers into 1/share of the cluster, leaving one CPU for Ray Data to read with.

    On 2 CPUs, two workers at 1 CPU each starve the Parquet read (it gets 0 CPU and never moves):
    each worker gets a fraction instead. `share` is the number of runs side by side (a sweep's
    parallel trials), so K runs x workers never ask for more than the cluster has.
    """
    want_gpu = gpus > 0 if use_gpu == "auto" else bool(use_gpu)
    if want_gpu and gpus <= 0:
        raise UserError("train.use_gpu: true but the Ray cluster has no GPU; use auto or false")
    budget = max((cpus - (1 if cpus >= 2 else 0)) / share, MIN_CPU_PER_WORKER)
    limit = int(budget / MIN_CPU_PER_WORKER + 1e-9)
    gpu = 0.0
    if want_gpu:
        gpu_budget = gpus / share
        limit = min(limit, max(1, int(gpu_budget)))
        gpu = 1.0 if gpu_budget >= 1 else gpu_budget
    workers = max(1, min(requested, limit))
    cpu = budget / workers
    cpu = float(int(cpu)) if cpu >= 1 else math.floor(cpu * 100 + 1e-9) / 100
    note = ""
    if workers < requested:
        where = f"{gpus:g} GPU(s)" if want_gpu else f"{cpus:g} CPUs"
        note = f"train.workers: {requested} asked, room for {workers} per run on {where}; using {workers}"
    return Plan(workers, cpu, gpu, note)




def fit_parallel(parallel: int, cpus: float) -> tuple[int, str]:
    """At least a quarter CPU per worker: fewer trials side by side when the cluster is small, said aloud."""
    budget = max(cpus - (1 if cpus >= 2 else 0), MIN_CPU_PER_WORKER)
    fits = max(1, int(budget / MIN_CPU_PER_WORKER + 1e-9))  # single-worker trials that fit at once
    if parallel > fits:
        return fits, f"sweep.parallel {parallel} trials do not fit on {cpus:g} CPUs; running {fits} at a time"
    return parallel, ""
