"""Start a Dask cluster on Slurm (dask-jobqueue) from dask-slurm.yaml and print its address.

    pip install dask-jobqueue
    python cluster/configs/dask_slurm.py --jobs 4            # fixed size
    python cluster/configs/dask_slurm.py --adapt 1:16        # scale with the load
    python cluster/configs/dask_slurm.py --dry-run           # print the sbatch script, submit nothing

It prints `export CONDUCTOR_DASK_ADDRESS=tcp://...` and keeps running: the scheduler lives in this
process, so the cluster (and its Slurm jobs) ends when the script is stopped (Ctrl-C / SIGTERM).
dask_jobqueue is imported inside main(), so this file imports without it.
"""
from __future__ import annotations

import argparse
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
    args = parser.parse_args(argv)

    try:
        import dask.config
        from dask_jobqueue import SLURMCluster
    except ImportError:
        print("error: dask-jobqueue is not installed (pip install dask-jobqueue)", file=sys.stderr)
        return 2

    # Merged over dask-jobqueue's defaults (and ~/.config/dask/jobqueue.yaml, if any).
    dask.config.update(dask.config.config, load_config(args.config), priority="new")

    cluster = SLURMCluster()
    try:
        if args.dry_run:
            print(cluster.job_script())
            return 0
        if args.adapt:
            lo, _, hi = args.adapt.partition(":")
            cluster.adapt(minimum_jobs=int(lo), maximum_jobs=int(hi or lo))
        else:
            cluster.scale(jobs=args.jobs)
        print(f"export CONDUCTOR_DASK_ADDRESS={cluster.scheduler_address}", flush=True)
        print(f"# dashboard: {cluster.dashboard_link}  (Ctrl-C stops the cluster and its jobs)",
              file=sys.stderr, flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        cluster.close()


if __name__ == "__main__":
    sys.exit(main())
