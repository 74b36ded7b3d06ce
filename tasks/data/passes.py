"""Preprocessing's passes over its source, one Dask computation each, and the lines that say how far a long
one is: "preprocess: pass 2/3 scale statistics: 40% of 96 partitions, ~25 s left", through the `log` that
preprocess gets, at most every PROGRESS_EVERY_S and only once preprocessing has run that long (the builtin
sets take under a second: no line). On a distributed Client (the flow's DaskTaskRunner, a benchmark's Client)
the share of tasks done comes from distributed's Progress plugin on the scheduler, else from a
dask.callbacks.Callback of the local scheduler. Progress is an aside: should it fail, the computation goes on.
"""
from __future__ import annotations

import asyncio
import threading
import time
import uuid
from contextlib import contextmanager

import dask
from dask.base import unpack_collections
from dask.callbacks import Callback

PROGRESS_EVERY_S = 5.0


class Passes:
    """Runs the passes of one preprocess call, counting them ("pass 2/3"), and says how far a long one is."""

    def __init__(self, log, partitions: int, total: int, every: float | None = None, start: float | None = None):
        self.log, self.partitions, self.total, self.done = log, partitions, total, 0
        self.every = PROGRESS_EVERY_S if every is None else every
        self.said = time.perf_counter() if start is None else start  # the first line comes `every` after this

    def compute(self, what: str, todo):
        """dask.compute(todo)[0], as pass `what`: `todo` nests dask collections in dicts, lists and tuples."""
        self.done += 1
        label = f"pass {self.done}/{self.total} {what}"
        leaves, repack = unpack_collections(todo)
        client = _client()
        if client is None:
            with _LocalWatch() as watch, self._ticking(label, watch.fraction):
                return repack(dask.compute(*leaves))[0]
        futures = client.compute(list(leaves))
        watch = _RemoteWatch(client, futures)
        try:
            with self._ticking(label, watch.fraction):
                return repack(client.gather(futures))[0]
        finally:
            watch.stop()

    @contextmanager
    def _ticking(self, label: str, fraction):
        began, stop = time.perf_counter(), threading.Event()

        def tick():
            while not stop.wait(0.2):
                now = time.perf_counter()
                if now - self.said >= self.every:
                    self.said = now
                    try:
                        self.log(self.line(label, fraction(), now - began))
                    except Exception:  # noqa: BLE001 - progress is an aside
                        pass

        thread = threading.Thread(target=tick, daemon=True, name="preprocess-progress")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def line(self, label: str, fraction: float | None, seconds: float) -> str:
        if fraction is None:
            return f"preprocess: {label}: {self.partitions} partitions, {seconds:.0f} s so far"
        left = f", ~{seconds * (1 - fraction) / fraction:.0f} s left" if fraction >= 0.02 else ""
        return f"preprocess: {label}: {int(100 * fraction)}% of {self.partitions} partitions{left}"


def _client():
    """The distributed Client dask.compute would use now, or None (a local scheduler)."""
    try:
        from distributed import Client

        scheduler = dask.base.get_scheduler()
    except Exception:  # noqa: BLE001 - no distributed, or no scheduler to be found
        return None
    client = scheduler if isinstance(scheduler, Client) else getattr(scheduler, "__self__", None)
    return client if isinstance(client, Client) and not client.asynchronous else None


class _LocalWatch(Callback):
    """The share of tasks the local scheduler finished."""

    def __init__(self):
        super().__init__()
        self.state = None

    def _start_state(self, dsk, state):
        self.state = state

    def fraction(self) -> float:
        s = self.state
        done = len(s["finished"]) if s else 0
        total = done + len(s["ready"]) + len(s["running"]) + len(s["waiting"]) if s else 0
        return done / total if total else 0.0


class _RemoteWatch:
    """The share of a distributed computation's tasks done, from distributed's Progress plugin on the scheduler,
    asked only when a line is due. What runs on the scheduler is closures (pickled by value): a scheduler need
    not import conductor."""

    def __init__(self, client, futures):
        self.client, self.name, self.ok = client, f"conductor-preprocess-{uuid.uuid4().hex}", False
        keys, name = [f.key for f in futures], self.name

        async def start(dask_scheduler):
            from distributed.diagnostics.progress import Progress

            for _ in range(200):  # the graph reaches the scheduler within moments of client.compute
                if all(k in dask_scheduler.tasks for k in keys):
                    await Progress(keys, dask_scheduler, complete=True, name=name).setup()
                    return True
                await asyncio.sleep(0.05)
            return False

        try:
            self.ok = bool(client.run_on_scheduler(start))
        except Exception:  # noqa: BLE001 - a scheduler that refuses pickled functions: lines without a share
            pass

    def fraction(self) -> float | None:
        name = self.name

        def share(dask_scheduler):
            p = dask_scheduler.plugins.get(name)  # it removes itself once every key is done
            return 1.0 if p is None else 1 - len(p.keys) / len(p.all_keys) if p.all_keys else 0.0

        return self.client.run_on_scheduler(share) if self.ok else None

    def stop(self) -> None:
        name = self.name

        def remove(dask_scheduler):
            if name in dask_scheduler.plugins:
                dask_scheduler.remove_plugin(name=name)

        try:
            if self.ok:
                self.client.run_on_scheduler(remove)
        except Exception:  # noqa: BLE001
            pass
