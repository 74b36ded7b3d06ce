"""Live progress from a Ray worker to the console: rank 0 appends JSON lines, the driver follows them.

Ray's own log forwarding carries every INFO line of Ray Train and Ray Data with it; a file of our
own carries only what a user wants to see while training runs.

Every line meant for the user goes through `say`: stderr, and whatever sink a flow adds with `echo_to`
(the Prefect run logger, so a flow run's Logs tab tells the same story as the terminal).
"""
from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

_SINKS: list[Callable[[str], None]] = []


def say(text: str, out=None) -> None:
    """One line for the user: on stderr (or `out`), and to every sink added by `echo_to`."""
    print(text, file=out or sys.stderr, flush=True)
    for sink in list(_SINKS):
        try:
            sink(text)
        except Exception:  # noqa: BLE001 - a log sink never stops the work it reports on
            pass


@contextlib.contextmanager
def echo_to(sink: Callable[[str], None]):
    """While inside, every `say` line also goes to `sink` (from any thread of this process)."""
    _SINKS.append(sink)
    try:
        yield
    finally:
        _SINKS.remove(sink)


def append(path: str | Path | None, record: dict) -> None:
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


def format_row(prefix: str, row: dict, epochs: int) -> str:
    keys = [k for k in row if k not in ("epoch", "epoch_seconds") and isinstance(row[k], float)]
    shown = "  ".join(f"{k} {row[k]:.4f}" for k in keys)
    return f"{prefix} epoch {row['epoch']:>3}/{epochs}  {shown}  ({row.get('epoch_seconds', 0):.1f}s)"


def read_new(path: Path, pos: int) -> tuple[list[dict], int]:
    """The complete records appended to a progress file after byte `pos`, and where the next read starts (a line
    still being written waits for the next read); none while the file is missing."""
    records = []
    try:
        with open(path) as f:
            f.seek(pos)
            while (line := f.readline()).endswith("\n"):
                pos = f.tell()
                records.append(json.loads(line))
    except FileNotFoundError:
        pass
    return records, pos


class Follower:
    """Prints each new record of a progress file on stderr until stopped."""

    def __init__(self, path: Path, render, out=None, interval: float = 0.1):
        self.path, self.render, self.out, self.interval = Path(path), render, out or sys.stderr, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._pos = 0

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)
        self._drain()
        self.path.unlink(missing_ok=True)

    def _drain(self):
        records, self._pos = read_new(self.path, self._pos)
        for record in records:
            text = f"note: {record['text']}" if record.get("kind") == "note" else self.render(record)
            if text:
                say(text, self.out)

    def _run(self):
        while not self._stop.is_set():
            self._drain()
            time.sleep(self.interval)
