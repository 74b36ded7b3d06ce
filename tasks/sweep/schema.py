"""Optuna's RDB storage opened without importing Alembic where its database is at this Optuna's schema head.

Every process's first `RDBStorage(url)` imports Alembic (~0.2 s of CPU here, ~0.4 s on a slow day), even on a
database made by the same Optuna: `_VersionManager._init_alembic` asks Alembic's MigrationContext whether the
database has a revision, and the compatibility check reads Optuna's migration scripts with Alembic's
ScriptDirectory to compare that revision with their head. A cold sweep opens the storage in three processes (the
command and its two trial workers), a warm one in the command, on its way to the first trial.

Here the head is read from the scripts' own `revision = "..."` / `down_revision = "..."` lines (the one revision
no script names as its down revision), and the database's revision with one plain query. Where they are equal
the storage is opened with the schema check and table creation skipped (the database has both: Optuna stamps the
head after creating the tables) and `_init_alembic` answers from the same query that it already has a revision.
Anything else — a new database, another revision, a script this parse does not understand, an Optuna whose
internals moved, a query that fails — opens it as Optuna does, with its check and its error message.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import optuna

_ASSIGN = re.compile(r"^(down_revision|revision)\s*(?::[^=\n]*)?=\s*(None|\"[^\"\n]*\"|'[^'\n]*')\s*$", re.M)


@functools.cache
def schema_head() -> str | None:
    """This Optuna's schema head revision, from its migration scripts; None where they do not form one chain."""
    folder = Path(optuna.storages._rdb.__file__).parent / "alembic" / "versions"
    revisions, downs = set(), set()
    try:
        scripts = sorted(folder.glob("*.py"))
        for script in scripts:
            found = dict(_ASSIGN.findall(script.read_text(encoding="utf-8")))
            if set(found) != {"revision", "down_revision"} or found["revision"] == "None":
                return None
            revisions.add(found["revision"][1:-1])
            downs.add(None if found["down_revision"] == "None" else found["down_revision"][1:-1])
    except (OSError, UnicodeDecodeError):
        return None
    heads = revisions - downs
    if len(scripts) != len(revisions) or len(heads) != 1 or not downs <= revisions | {None}:
        return None
    return heads.pop()


def _revisions(connection) -> list[str] | None:
    import sqlalchemy

    try:
        return [row[0] for row in connection.execute(sqlalchemy.text("SELECT version_num FROM alembic_version"))]
    except sqlalchemy.exc.SQLAlchemyError:
        return None


_AT_HEAD: set[str] = set()  # URLs this process found at the head: a command opens its storage ~6 times


def at_head(url: str, engine_kwargs: dict[str, Any]) -> bool:
    """Whether the database at `url` has exactly this Optuna's head revision (one query, no Alembic; asked once per
    URL and process once the answer is yes: nothing downgrades a database's schema under a running command)."""
    head = schema_head()
    if head is None or not _lean_init_installed():
        return False
    if url in _AT_HEAD:
        return True
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url, **engine_kwargs)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, TypeError, ValueError):
        return False  # Optuna's own path reports a bad URL or driver
    try:
        with engine.connect() as connection:
            found = _revisions(connection) == [head]
    except sqlalchemy.exc.SQLAlchemyError:
        return False
    finally:
        engine.dispose()
    if found:
        _AT_HEAD.add(url)
    return found


@functools.cache
def _lean_init_installed() -> bool:
    """`_VersionManager._init_alembic` answers a database that has a revision without Alembic, as Alembic would
    (it returns when MigrationContext finds one); a database without one still goes to Optuna's own method."""
    try:
        from optuna.storages._rdb.storage import _VersionManager
    except ImportError:
        return False
    original = _VersionManager.__dict__.get("_init_alembic")
    if original is None:
        return False

    @functools.wraps(original)
    def _init_alembic(self) -> None:
        with self.engine.connect() as connection:
            if _revisions(connection):
                return
        original(self)

    _VersionManager._init_alembic = _init_alembic
    return True


def open_rdb(url: str, **kwargs: Any) -> optuna.storages.RDBStorage:
    """optuna.storages.RDBStorage(url, **kwargs), without Alembic where the database is at the schema head."""
    if at_head(url, kwargs.get("engine_kwargs") or {}):
        return optuna.storages.RDBStorage(url, skip_compatibility_check=True, skip_table_creation=True, **kwargs)
    return optuna.storages.RDBStorage(url, **kwargs)
