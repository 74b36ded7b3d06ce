"""`conductor`: one spec, one command. Each command lives in its own module; importing them registers
them on the one Typer app. Every user error is one `error: ...` line and exit code 2."""
from . import cluster, history, predict, rerun, run, serve  # noqa: F401 - registers the commands
from .app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
