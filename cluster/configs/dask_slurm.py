"""Start a Dask cluster on Slurm (dask-jobqueue) from dask-slurm.yaml and print its address.

    pip install dask-jobqueue
    python cluster/configs/dask_slurm.py --jobs 4            # fixed size
    python cluster/configs/dask_slurm.py --adapt 1:16        # scale with the load
    python cluster/configs/dask_slurm.py --dry-run           # print the sbatch script, submit nothing

It prints `export CONDUCTOR_DASK_ADDRESS=tls://... CONDUCTOR_DASK_TLS=...` and keeps running: the
scheduler lives in this process, so the cluster (and its Slurm jobs) ends when the script is stopped
(Ctrl-C / SIGTERM), and its TLS files are removed then. Scheduler, workers and clients use mutual TLS
with a CA made at start (cluster/tls.py; 0600 files on shared storage, which the jobs read as you).
dask_jobqueue is imported inside main(), so this file imports without it.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).with_name("dask-slurm.yaml")


def load_config(path: Path) -> dict:
    """The YAML file as a dict with a `jobqueue: slurm:` section (checked)."""
    import yaml

    config = yaml.safe_load(path.read_text()) or {}
    if not isinstance(config.get("jobqueue", {}).get("slurm"), dict):
        raise SystemExit(f"error: {path}: no `jobqueue: slurm:` section")
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="dask-jobqueue YAML (default: dask-slurm.yaml beside this script)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--jobs", type=int, default=1, help="Slurm jobs to start (default 1)")
    size.add_argument("--adapt", metavar="MIN:MAX", help="adaptive scaling between MIN and MAX jobs")
    parser.add_argument("--dry-run", action="store_true", help="print the job script and exit")
    parser.add_argument("--tls-dir", type=Path, default=None,
                        help="where the TLS files go, on storage every node sees "
                             "(default: $CONDUCTOR_HOME/cluster/slurm-tls)")
    args = parser.parse_args(argv)

    try:
        import dask.config
        from dask_jobqueue import SLURMCluster
    except ImportError:
        print("error: dask-jobqueue is not installed (pip install dask-jobqueue)", file=sys.stderr)
        return 2

    from cluster.tls import make_tls, remove_tls, security

    # Merged over dask-jobqueue's defaults (and ~/.config/dask/jobqueue.yaml, if any).
    dask.config.update(dask.config.config, load_config(args.config), priority="new")
    dask.config.set({"distributed.scheduler.http.routes": []})  # no /info pages, logs or proxy on the login node
    tls_dir = args.tls_dir or Path(os.environ.get("CONDUCTOR_HOME", "runs")).absolute() / "cluster" / "slurm-tls"
    make_tls(tls_dir)
    try:  # the job script gets --tls-ca-file/--tls-cert/--tls-key of the worker role, the scheduler this Security
        cluster = SLURMCluster(security=security(tls_dir))
    except BaseException:
        remove_tls(tls_dir)
        raise
    try:
        if args.dry_run:
            print(cluster.job_script())
            return 0
        if args.adapt:
            lo, _, hi = args.adapt.partition(":")
            cluster.adapt(minimum_jobs=int(lo), maximum_jobs=int(hi or lo))
        else:
            cluster.scale(jobs=args.jobs)
        print(f"export CONDUCTOR_DASK_ADDRESS={cluster.scheduler_address} CONDUCTOR_DASK_TLS={tls_dir}", flush=True)
        print("# Ctrl-C stops the cluster and its jobs", file=sys.stderr, flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        cluster.close()
        remove_tls(tls_dir)


if __name__ == "__main__":
    sys.exit(main())
