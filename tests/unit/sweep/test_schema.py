"""Optuna's storage opened without Alembic where the database is at the schema head (tasks/sweep/schema.py), and
as Optuna opens it everywhere else: a new database, one at an older revision."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from tasks.errors import UserError
from tasks.sweep.schema import schema_head
from tasks.sweep.storage import make_storage

ROOT = Path(__file__).resolve().parents[3]

# in a fresh interpreter (this one has imported Alembic already): a database made before, then a new one
SCRIPT = """
import json, sys
import optuna
from tasks.sweep.storage import make_storage

old, new = sys.argv[1:3]
storage = make_storage(f"sqlite:///{old}", heartbeat=False)
study = optuna.load_study(study_name="s", storage=storage)
study.tell(study.ask(), 0.5)
after_old = "alembic" in sys.modules
values = [t.value for t in optuna.load_study(study_name="s", storage=storage).trials]
study = optuna.create_study(study_name="t", storage=make_storage(f"sqlite:///{new}", heartbeat=False))
study.tell(study.ask(), 0.25)
print(json.dumps({"alembic_after_old": after_old, "alembic_after_new": "alembic" in sys.modules,
                  "values": values}))
"""


def test_the_parsed_head_is_optunas_own(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o.db'}")
    assert schema_head() == storage.get_head_version() == storage.get_current_version()


def test_a_database_at_head_opens_without_alembic_and_a_new_one_as_optuna_makes_it(tmp_path):
    old, new = tmp_path / "old.db", tmp_path / "new.db"
    optuna.create_study(study_name="s", storage=make_storage(f"sqlite:///{old}", heartbeat=False))
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(old), str(new)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["alembic_after_old"] is False
    assert got["alembic_after_new"] is True  # a new database: Optuna creates and stamps it, with Alembic
    assert got["values"] == [0.5]
    fresh = optuna.storages.RDBStorage(f"sqlite:///{new}")  # as Optuna itself finds it: at head, one study
    assert fresh.get_current_version() == schema_head()
    assert [s.study_name for s in fresh.get_all_studies()] == ["t"]


def test_a_database_at_an_older_revision_gets_optunas_check_and_message(tmp_path):
    db = tmp_path / "o.db"
    make_storage(f"sqlite:///{db}", heartbeat=False)
    with sqlite3.connect(db) as c:
        older = c.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        assert older == schema_head()
        c.execute("UPDATE alembic_version SET version_num = 'v3.0.0.d'")
    with pytest.raises(UserError, match="no longer compatible"):
        make_storage(f"sqlite:///{db}", heartbeat=False)


def test_a_database_found_at_head_is_not_asked_again_in_the_process(tmp_path, monkeypatch):
    import sqlalchemy

    from tasks.sweep import schema

    url, older = f"sqlite:///{tmp_path / 'o.db'}", f"sqlite:///{tmp_path / 'old.db'}"
    make_storage(url, heartbeat=False)
    make_storage(older, heartbeat=False)
    with sqlite3.connect(tmp_path / "old.db") as c:
        c.execute("UPDATE alembic_version SET version_num = 'v3.0.0.d'")
    assert schema.at_head(url, {}) and not schema.at_head(older, {})
    asked = []
    real = sqlalchemy.create_engine
    monkeypatch.setattr(sqlalchemy, "create_engine", lambda *a, **k: asked.append(a[0]) or real(*a, **k))
    assert schema.at_head(url, {}) and not schema.at_head(older, {})
    assert asked == [older]  # the one at head answered from the process's memory; the other asked again
