"""Deployment entrypoints. Prefect imports this file by its path, as a top-level module; the flows
come from their packages, so that the Dask scheduler and workers can unpickle their tasks by name."""
from flows.pipeline import pipeline
from flows.sweep import sweep_flow

__all__ = ["pipeline", "sweep_flow"]
