"""Training: the plain loop (loop.py), the typed job that crosses to workers, and Ray Train around it.
Attributes load on first use (tasks/lazy.py): the loop imports torch, the plan and the job do not."""
from ..lazy import lazy

_WHERE = {"local_batches": ".batches", "whole_split": ".batches", "to_tensors": ".batches",
          "tensor_batches": ".batches", "table_share": ".batches", "Tracking": ".job", "Trained": ".job", "TrainJob": ".job", "LossModule": ".loop", "Progress": ".state", "fit": ".loop",
          "MIN_CPU_PER_WORKER": ".plan", "fit_parallel": ".plan", "plan_workers": ".plan"}
__getattr__ = lazy(__name__, _WHERE)
__all__ = sorted(_WHERE)
