"""Engines started side by side before a flow runs: Prefect's ephemeral API server (when no
PREFECT_API_URL is set) starts in a thread while Ray, and for a sweep its warm workers, start in the
calling thread, so torch loads in the workers while the API server starts. Measured on 2 cores: the
server's start and Ray's were ~3-5 s each, one after the other before.

Ray must start in the main thread: it ties its GCS and raylet to the thread that spawns them
(parent-death signal), and they died when a helper thread that started them ended."""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from cluster.connect import ensure_ray, quiet_env
from cluster.settings import Settings


class EarlyStart:
    def __init__(self, settings: Settings, then: Callable[[], None] | None = None):
        quiet_env()  # before prefect or ray is imported
        self.timings: dict[str, float] = {}
        self.errors: list[BaseException] = []
        self.thread = None
        if not os.environ.get("PREFECT_API_URL"):
            self.thread = threading.Thread(target=self._prefect, daemon=True, name="prefect-api-start")
            self.thread.start()
        self.timings.update(ensure_ray(settings))
        if then is not None:
            t0 = time.perf_counter()
            then()
            self.timings["prestart_s"] = time.perf_counter() - t0

    def _prefect(self) -> None:
        t0 = time.perf_counter()
        try:
            from prefect.server.api.server import SubprocessASGIServer

            SubprocessASGIServer().start()  # the instance every Prefect client of this process then uses
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread by wait()
            self.errors.append(e)
        self.timings["prefect_start_s"] = time.perf_counter() - t0

    def wait(self) -> dict[str, float]:
        """Join the server's start (one still coming up must not be handed to the flow); re-raise a failure."""
        if self.thread is not None:
            self.thread.join()
        if self.errors:
            raise self.errors[0]
        return self.timings
