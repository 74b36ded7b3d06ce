"""Warm workers that outlive a sweep, on the Ray of `conductor cluster up`.

On the embedded Ray a sweep's workers die with it (its Ray does). On a cluster the user started, they stay:
detached actors in the namespace `conductor-warm`, named by the version of conductor's code they hold
(`trial-<version>-<id>`), so the next sweep finds torch, the model code and W&B already loaded and its first
trial starts at once. A sweep claims idle ones (a worker belongs to one sweep at a time: claimed by the
sweep's Ray job, free again when that job releases it or dies) and creates what is missing. Idle workers
hold no CPU (num_cpus=0): while a sweep runs, its CPUs are reserved by a placement group of its own, which
goes with the sweep, so a later run's Ray Data is never starved. Workers of older code are stopped when a
sweep finds them idle; `cluster down` stops Ray and every worker with it; `cluster status` counts them.
"""
from __future__ import annotations

import hashlib
import secrets
import sys
from pathlib import Path

NAMESPACE = "conductor-warm"
CLAIM_TIMEOUT_S = 10.0
ROOT = Path(__file__).resolve().parents[2]


def code_version() -> str:
    """A digest of conductor's sources (tasks, models, cluster): a worker that holds other code is not reused."""
    digest = hashlib.blake2b(digest_size=6)
    for pkg in ("tasks", "models", "cluster"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            digest.update(path.relative_to(ROOT).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def persistent() -> bool:
    """Workers outlive the sweep only on a Ray the user started and keeps (`cluster up`, CONDUCTOR_RAY_ADDRESS)."""
    from cluster.settings import load_settings

    return bool(load_settings().ray_address)


def job_alive(job_hex: str) -> bool:
    """Whether the Ray job (a sweep's driver) is still connected; a killed driver's job is marked dead by Ray."""
    from ray._private.state import jobs  # the GCS job table: no dashboard needed

    return any(j["JobID"] == job_hex and not j["IsDead"] for j in jobs())


def owner() -> str:
    import ray

    return ray.get_runtime_context().get_job_id()


def claim_workers(cls, size: int, home: str, wandb: dict) -> list:
    """`size` workers of this code version for this sweep: idle ones first, then new ones."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    me, prefix = owner(), f"trial-{code_version()}-"
    named = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == NAMESPACE]
    got = []
    for name in sorted(named):
        try:
            actor = ray.get_actor(name, namespace=NAMESPACE)
            # by keyword: the handle of a worker of older code (other methods than this code's TrialWorker)
            # takes no positional argument ("too many positional arguments" ended every sweep after an upgrade)
            free = ray.get(actor.claim.remote(job=me), timeout=CLAIM_TIMEOUT_S)
        except (ValueError, ray.exceptions.RayError):  # gone meanwhile, or busy past the timeout
            continue
        if not free:
            continue
        if not name.startswith(prefix) or len(got) == size:  # older code, or more idle workers than needed
            if not name.startswith(prefix):
                ray.kill(actor, no_restart=True)
            else:
                actor.release.remote(job=me)
            continue
        got.append(actor)
    nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0)
    while len(got) < size:  # round the nodes: an actor that asks for no CPU is otherwise packed onto one
        where = NodeAffinitySchedulingStrategy(nodes[len(got) % len(nodes)], soft=False) if nodes else "SPREAD"
        got.append(cls.options(name=prefix + secrets.token_hex(4), namespace=NAMESPACE, lifetime="detached",
                               num_cpus=0, scheduling_strategy=where).remote(home, wandb, owner=me))
    return got


def reserve(cpus: float, size: int, timeout: float = 60.0):
    """A placement group of the sweep's CPUs (the workers themselves hold none); None if Ray cannot give them
    within `timeout` (the sweep then runs unreserved, and says so)."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    group = placement_group([{"CPU": cpus}] * size, strategy="SPREAD")
    try:
        ray.get(group.ready(), timeout=timeout)
        return group
    except ray.exceptions.GetTimeoutError:
        remove_placement_group(group)
        print(f"warning: Ray could not reserve {size} x {cpus} CPU for the sweep's workers within {timeout:.0f}s; "
              "they run unreserved", file=sys.stderr)
        return None


def release(actors: list, group) -> None:
    """The sweep ends: its workers are free for the next one, its CPUs go back."""
    import ray
    from ray.util.placement_group import remove_placement_group

    me = owner()
    for actor in actors:
        try:
            ray.get(actor.release.remote(job=me), timeout=CLAIM_TIMEOUT_S)
            actor.tidy.remote()  # its full collection runs now, between sweeps, not waited for
        except ray.exceptions.RayError:
            pass
    if group is not None:
        remove_placement_group(group)


RECORD = "warm-workers.json"


def record(pids: list[int]) -> None:
    """Note the workers' pids beside the cluster's own (runs/cluster/), for `cluster status`."""
    import json

    from cluster.processes import cluster_dir

    path = cluster_dir() / RECORD
    if path.parent.is_dir():
        path.write_text(json.dumps(sorted(set(recorded()) | set(pids))))


def recorded() -> list[int]:
    """The pids of warm workers still alive (this host's; a worker on another host is not seen here)."""
    import json

    import psutil

    from cluster.processes import cluster_dir

    try:
        pids = json.loads((cluster_dir() / RECORD).read_text())
    except (OSError, ValueError):
        return []
    return [p for p in pids if isinstance(p, int) and psutil.pid_exists(p)]
