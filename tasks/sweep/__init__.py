"""Sweeps: the Optuna storage and its pieces, the search space, the objective, pruning from rank 0,
the loop to exactly N trials, and the best trial registered as a run with Optuna's plots."""
from .space import check_space, suggest, trial_spec
from .storage import counts, existing_trials, fail_stale, make_pruner, make_sampler, make_storage

__all__ = ["check_space", "counts", "existing_trials", "fail_stale", "make_pruner", "make_sampler", "make_storage",
           "suggest", "trial_spec"]
