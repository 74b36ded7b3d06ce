"""Sweeps: the Optuna storage and its pieces, the search space, the objective, pruning from rank 0,
the loop to exactly N trials, and the best trial registered as a run with Optuna's plots."""
from ..lazy import defer

defer("redis")  # before Optuna, which imports it for a journal backend conductor never uses (tasks/lazy.py)

from .space import check_space, suggest, trial_spec  # noqa: E402
from .storage import counts, existing_trials, fail_stale, make_pruner, make_sampler, make_storage  # noqa: E402

__all__ = ["check_space", "counts", "existing_trials", "fail_stale", "make_pruner", "make_sampler", "make_storage",
           "suggest", "trial_spec"]
