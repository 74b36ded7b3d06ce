"""Run directories: registering one (staged, renamed), its report.html, and reading one back."""
from .load import LoadedRun, load_run
from .register import final_metrics, new_run, new_run_id, register

__all__ = ["LoadedRun", "final_metrics", "load_run", "new_run", "new_run_id", "register"]
