"""The Ray Serve application: one deployment whose replicas load the run and batch requests."""
from __future__ import annotations

import os
from dataclasses import asdict

from ray import serve

from .config import Limits

APP = "conductor"


@serve.deployment(name="model", health_check_period_s=2, health_check_timeout_s=10,
                  graceful_shutdown_timeout_s=5, graceful_shutdown_wait_loop_s=0.5, max_ongoing_requests=64)
@serve.ingress()
class ModelServer:
    """Loads the run once; `__serve_build_asgi_app__` builds the FastAPI app around its batcher."""

    def __init__(self, run_dir: str, token_digest: str | None, limits: dict):
        import torch

        torch.set_num_threads(1)  # a replica holds a fraction of a CPU
        from .scoring import Scorer

        self.scorer = Scorer(run_dir)
        self.limits = Limits(**limits)
        self.token_digest = token_digest
        self.sizes: dict[int, int] = {}
        self.batched.set_max_batch_size(self.limits.max_batch_size)
        self.batched.set_batch_wait_timeout_s(self.limits.batch_wait_ms / 1000)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def batched(self, items: list[tuple]) -> list:
        self.sizes[len(items)] = self.sizes.get(len(items), 0) + 1
        return self.scorer.score_many(items)

    async def _score(self, pdf, id_column):
        out = await self.batched((pdf, id_column))
        if isinstance(out, Exception):
            raise out
        return out

    def __serve_build_asgi_app__(self):
        from .api import build_api

        s, lim = self.scorer, self.limits
        return build_api(s.info, s.schema, s.columns, self._score, self.token_digest, lim.max_body_bytes,
                         lim.max_rows, health=lambda: {"replica": serve.get_replica_context().replica_tag
                                                       if hasattr(serve.get_replica_context(), "replica_tag")
                                                       else os.getpid(),
                                                       "max_batch_size": lim.max_batch_size,
                                                       "batch_wait_ms": lim.batch_wait_ms, "batches": dict(self.sizes)})


def application(run_dir: str, token_digest: str | None, limits: Limits, replicas: int = 1,
                autoscale_max: int | None = None, cpus_per_replica: float = 0.25):
    """The bound app: `replicas` fixed, or autoscaling between 1 and `autoscale_max`."""
    opts: dict = {"ray_actor_options": {"num_cpus": cpus_per_replica}}
    if autoscale_max:
        opts["autoscaling_config"] = {"min_replicas": 1, "initial_replicas": replicas,
                                      "max_replicas": autoscale_max, "target_ongoing_requests": 8}
    else:
        opts["num_replicas"] = replicas
    return ModelServer.options(**opts).bind(run_dir, token_digest, asdict(limits))
