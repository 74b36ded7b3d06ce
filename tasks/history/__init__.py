"""Run history: registered runs listed, shown and compared from their directories, a rerun checked against
its original, offline W&B runs synced. Reads files only; nothing heavy is imported here."""
from .listing import RunInfo, list_runs, resolve_run

__all__ = ["RunInfo", "list_runs", "resolve_run"]
