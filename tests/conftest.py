"""Session-wide set-up: one CONDUCTOR_HOME, and (for integration tests) Ray, Dask and Prefect once."""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_HOME = Path(tempfile.mkdtemp(prefix="conductor-test-"))
# Set before anything imports prefect or wandb: every test and subprocess writes under this home.
os.environ.setdefault("CONDUCTOR_HOME", str(_HOME / "runs"))
os.environ.setdefault("PREFECT_HOME", str(_HOME / "prefect"))
os.environ.setdefault("WANDB_DIR", str(_HOME))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.pop("PREFECT_API_URL", None)
for var in ("CONDUCTOR_RAY_ADDRESS", "CONDUCTOR_DASK_ADDRESS", "CONDUCTOR_OPTUNA_STORAGE"):
    os.environ.pop(var, None)


@pytest.fixture(scope="session")
def home() -> Path:
    return Path(os.environ["CONDUCTOR_HOME"])


@contextlib.contextmanager
def seeded_harness():
    """Prefect's test harness builds its database in a new temporary folder by running every migration (~10 s of
    CPU here); its folder starts with a copy of the database template `make install` leaves instead, as a new
    PREFECT_HOME's does (cluster/prefect_db.py). Its server still checks the copy is at head. Where the harness
    names its file otherwise, or no template exists, nothing is copied and Prefect migrates as before."""
    import prefect.testing.utilities as harness

    from cluster import prefect_db

    made = harness.mkdtemp

    def mkdtemp(*args, **kwargs):  # once: the harness's own folder, made on entry; nothing else of the session
        harness.mkdtemp = made
        folder = made(*args, **kwargs)
        prefect_db.seed(Path(folder) / "prefect-test.db")
        return folder

    harness.mkdtemp = mkdtemp
    try:
        yield
    finally:
        harness.mkdtemp = made


@pytest.fixture(scope="session")
def engines(home):
    """Real Ray (2 CPUs, token auth as shipped), a Dask LocalCluster and a Prefect test server, once."""
    from cluster.connect import embedded_dask_unprofiled, ensure_ray, quiet_env

    quiet_env()
    embedded_dask_unprofiled()  # as a command's own Dask: no profiler in this process, for ~24 minutes
    from distributed import LocalCluster
    from prefect.testing.utilities import prefect_test_harness

    from cluster.settings import load_settings

    ensure_ray(load_settings(), num_cpus=2)
    dask_cluster = LocalCluster(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None)
    os.environ["CONDUCTOR_DASK_ADDRESS"] = dask_cluster.scheduler_address
    with seeded_harness(), prefect_test_harness(server_startup_timeout=120):
        from flows.common import quiet_prefect_console

        quiet_prefect_console()
        yield {"dask": dask_cluster.scheduler_address}
    os.environ.pop("CONDUCTOR_DASK_ADDRESS", None)
    dask_cluster.close()
    import ray

    ray.shutdown()


# ---------------------------------------------------------------- one real run, shared by the integration
# modules that check it (flows/), predict from it (predict/) and serve it

@pytest.fixture(scope="session")
def user_csv(tmp_path_factory) -> Path:
    from fixtures_data import customers

    path = tmp_path_factory.mktemp("user") / "customers.csv"
    customers().to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def smoke_spec(user_csv) -> dict:
    return {
        "name": "churn-smoke",
        "data": {"source": str(user_csv), "target": "churn", "drop": ["customer"],
                 "preprocessing": {"impute": "median", "categorical": "onehot", "clip_outliers": 4.0}},
        "model": {"name": "mlp", "params": {"hidden": [32], "dropout": 0.0}},
        "train": {"epochs": 3, "workers": 2, "batch_size": 64, "lr": 0.01, "early_stopping": None},
    }


@pytest.fixture(scope="session")
def smoke_run(engines, smoke_spec):
    """One `conductor run` flow of the CSV through Prefect, Dask and Ray Train (2 workers)."""
    from flows.pipeline import run_pipeline
    from tasks.spec import validate

    return run_pipeline(validate(smoke_spec))


def run_cli(*args, env: dict | None = None, timeout: int = 900, cwd: Path = ROOT):
    """`python -m flows ARGS` as a subprocess (the console script's code path)."""
    import subprocess

    full_env = {**os.environ, **(env or {})}
    full_env.pop("CONDUCTOR_DASK_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "flows", *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=cwd)


def require_postgres() -> None:
    """PostgreSQL on 127.0.0.1:5432 (trust auth, database test): a failure in CI, where it must be, else a skip."""
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test", connect_timeout=5).close()
    except psycopg2.OperationalError as e:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL on 127.0.0.1:5432 is needed in CI: {e}")
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432 ({e})")


def write_spec(path: Path, spec: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []
