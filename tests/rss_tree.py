"""The summed RSS of a process and every descendant, sampled in a thread; its peak (the out-of-core test
and benchmarks/preprocess_scale.py)."""
from __future__ import annotations

import os
import threading
import time

import psutil


class TreeRSS:
    """`with TreeRSS() as rss: ...` samples every `every` seconds; then rss.peak (bytes, all processes
    together) and rss.peak_at (seconds after the start), rss.peak_of (pid: its own peak), rss.names (pid:
    its command line at its peak, shortened), rss.samples and rss.gap (the longest time between two samples:
    a peak can hide in it). With pss=True also rss.peak_pss: a sum of RSS counts the memory that processes
    share (Ray's object store) in each of them."""

    def __init__(self, pid: int | None = None, every: float = 0.2, pss: bool = False):
        self.root, self.every, self.pss = psutil.Process(pid or os.getpid()), every, pss
        self.peak = self.peak_pss = self.samples = 0
        self.peak_of, self.names, self.gap, self.peak_at, self._last = {}, {}, 0.0, 0.0, None
        self._start = time.monotonic()  # again on entering
        self._stop, self._thread = threading.Event(), threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        total = shared = 0
        try:
            tree = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:  # the root is gone (a subprocess that ended)
            tree = []
        for p in tree:
            try:
                rss = p.memory_info().rss
                shared += p.memory_full_info().pss if self.pss else 0
                if rss > self.peak_of.get(p.pid, 0):  # Ray's workers rename themselves (ray::RayTrainWorker...)
                    self.peak_of[p.pid], self.names[p.pid] = rss, " ".join(p.cmdline())[:60]
            except (psutil.NoSuchProcess, psutil.AccessDenied):  # gone between the listing and the read
                continue
            total += rss
        now = time.monotonic()
        self.gap = max(self.gap, now - (self._last or now))
        if total > self.peak:
            self.peak, self.peak_at = total, now - self._start
        self.peak_pss = max(self.peak_pss, shared)
        self.samples, self._last = self.samples + 1, now
        return total

    def top(self, n: int = 3) -> list[tuple[str, int]]:
        """The n processes of the highest peaks: (command line, peak RSS)."""
        return [(self.names.get(pid, str(pid)), rss) for pid, rss in
                sorted(self.peak_of.items(), key=lambda kv: -kv[1])[:n]]

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every)

    def __enter__(self) -> TreeRSS:
        self._start = time.monotonic()
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
