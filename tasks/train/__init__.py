"""Training: the plain loop (loop.py), the typed job that crosses to workers, and Ray Train around it."""
from .batches import local_batches, to_tensors
from .job import Tracking, Trained, TrainJob
from .loop import LossModule, Progress, fit
from .plan import MIN_CPU_PER_WORKER, fit_parallel, plan_workers

__all__ = ["MIN_CPU_PER_WORKER", "LossModule", "Progress", "Tracking", "TrainJob", "Trained", "fit",
           "fit_parallel", "local_batches", "plan_workers", "to_tensors"]
