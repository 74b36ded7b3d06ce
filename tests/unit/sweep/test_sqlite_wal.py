"""SQLite storage in write-ahead-log mode (tasks/sweep/storage.py write_ahead_log): every connection of conductor's
storage has WAL and synchronous=NORMAL, and a trial a process told Optuna is in the study after that process is
killed before it closed anything (the commit is in the -wal file, which the next reader finds)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import optuna

from tasks.sweep.storage import make_storage

ROOT = Path(__file__).resolve().parents[3]


def test_every_connection_has_wal_and_normal_sync(tmp_path):
    storage = make_storage(f"sqlite:///{tmp_path / 'o.db'}", heartbeat=False)
    optuna.create_study(storage=storage, study_name="s")
    with storage.engine.connect() as a, storage.engine.connect() as b:  # two pooled connections, both set
        for conn in (a, b):
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL


def test_a_told_trial_survives_its_process_killed(tmp_path):
    url = f"sqlite:///{tmp_path / 'o.db'}"
    code = textwrap.dedent(f"""
        import os, signal, optuna
        from tasks.sweep.storage import make_storage
        study = optuna.create_study(storage=make_storage({url!r}, heartbeat=False), study_name="s")
        trial = study.ask()
        trial.report(0.25, 1)
        study.tell(trial, 0.5)
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint, no atexit
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert (tmp_path / "o.db-wal").stat().st_size > 0  # the commits were still in the log, not yet in the file
    trials = optuna.load_study(study_name="s", storage=make_storage(url, heartbeat=False)).trials
    assert [(t.state, t.value, t.intermediate_values) for t in trials] == [(optuna.trial.TrialState.COMPLETE, 0.5,
                                                                          {1: 0.25})]
