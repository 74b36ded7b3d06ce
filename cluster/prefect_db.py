"""A new PREFECT_HOME's database copied from a template instead of built by Prefect's migrations.

Prefect's API server creates its SQLite database on its first start by running every Alembic migration, one
after the other: measured here on a slow day, a server start on a new PREFECT_HOME took ~21 s of CPU against
~9 s on an existing database, and a cold `conductor sweep` in a new CONDUCTOR_HOME spent 23.2 s before its
flow could start against 12.3 s in a home used before. Every first command in a new home (and the first
`cluster up`) paid it on its critical path.

So the first server that creates a database leaves a copy of it, taken the moment the server answers (Prefect's
schema at its head revision and the block types it registers at start), as the template for this Prefect
version; a later server whose PREFECT_HOME has no database starts from a copy, and Prefect's migration check at
start finds it at head. The template lives in the Python environment (`<venv>/share/conductor`), beside the
Prefect it was made by, and is only written inside a virtual environment (CONDUCTOR_PREFECT_TEMPLATES names
another folder, or none when empty); `make install` makes it (flows/engines.py build_template). A copy that
holds anything but the schema and block types (a flow run another command wrote meanwhile, an event) is not
kept. Only for Prefect's default database (no connection URL set); whatever fails, Prefect creates the
database as before.
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

DB_NAME = "prefect.db"  # Prefect's default: sqlite+aiosqlite:///${PREFECT_HOME}/prefect.db
# settings that put the server's database elsewhere (a URL, or Prefect's driver/host/name parts of one)
DB_VARS = tuple(f"PREFECT_{scope}_DATABASE_{part}" for scope in ("API", "SERVER")
                for part in ("CONNECTION_URL", "DRIVER", "HOST", "PORT", "USER", "NAME", "PASSWORD"))
# the tables a new database holds rows in once its server answers; any other row makes the copy no template
SEEDED = {"alembic_version", "block_type", "block_schema", "block_schema_reference"}


def template_dir() -> Path | None:
    """Where templates are kept: CONDUCTOR_PREFECT_TEMPLATES (empty: nowhere, Prefect migrates every new
    database), else inside a virtual environment only (ours to write, removed with it)."""
    chosen = os.environ.get("CONDUCTOR_PREFECT_TEMPLATES")
    if chosen is not None:
        return Path(chosen).expanduser() if chosen else None
    return Path(sys.prefix) / "share" / "conductor" if sys.prefix != sys.base_prefix else None


def prefect_version() -> str | None:
    """The installed Prefect's version, from its dist-info folder's name (~2 ms; importlib.metadata's lookup
    took ~65 ms here, on every command's path to its server), else from importlib.metadata."""
    import importlib.util

    spec = importlib.util.find_spec("prefect")
    if spec is not None and spec.origin:
        found = list(Path(spec.origin).parent.parent.glob("prefect-*.dist-info"))
        if len(found) == 1:
            return found[0].name.removeprefix("prefect-").removesuffix(".dist-info")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("prefect")
    except PackageNotFoundError:
        return None


def template() -> Path | None:
    """This Prefect version's template (which may not exist yet), or None where none is kept."""
    folder = template_dir()
    found = prefect_version() if folder is not None else None
    return folder / f"prefect-{found}.db" if found else None


def database(env: dict[str, str] | None = None) -> Path | None:
    """The server's default SQLite database under PREFECT_HOME, or None where the environment puts it elsewhere
    (a database named in a Prefect profile or a prefect.toml instead: its server ignores the copy)."""
    env = os.environ if env is None else env
    if any(env.get(k) for k in DB_VARS):
        return None
    return Path(env.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser() / DB_NAME


def seed(db: Path | None) -> bool:
    """Before the server starts: a missing database becomes a copy of the template when there is one. True when
    the server will create the database itself and no template exists: `keep(db)` once it answers."""
    try:  # a home used before (every command but a new home's first) stops at its database, before template()
        if db is None or db.exists() or db.with_name(db.name + "-wal").exists():
            return False  # a journal left without its database is SQLite's to replay, not ours to pair with a copy
        if (tpl := template()) is None or not tpl.is_file():
            return tpl is not None
    except OSError:
        return False  # an unreadable home: the server says so, as without a template
    import shutil
    import sqlite3

    tmp = db.with_name(f".{db.name}.{os.getpid()}.seed")
    try:
        db.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copyfile(tpl, tmp)
        with contextlib.closing(sqlite3.connect(f"{tmp.resolve().as_uri()}?mode=ro", uri=True)) as c:
            c.execute("SELECT version_num FROM alembic_version").fetchone()  # a readable database at a revision
        os.link(tmp, db)  # only where no database exists now: never over one another server has open
    except (OSError, sqlite3.Error):
        pass  # the server creates it, as without a template
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return False


def at_head(db: Path | None) -> bool:
    """Whether `db` is a database Prefect's server needs neither to migrate nor to register block types in: it has
    this Prefect version's template's revision and block types. Its server is then started without both checks
    (~1 s of CPU on every command's start-up here: Alembic's revision check, and the block registry's hash, which
    imports every installed Prefect collection, prefect-dask's distributed with it). Anything unsure: False."""
    tpl = template()
    if db is None or tpl is None or not tpl.is_file() or not db.is_file():
        return False
    import sqlite3

    def head(path: Path) -> tuple | None:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)) as c:
            blocks = c.execute("SELECT count(*) FROM block_type").fetchone()[0]
            return (c.execute("SELECT version_num FROM alembic_version").fetchall(), blocks) if blocks else None

    try:
        mine, theirs = head(db), head(tpl)
        return mine is not None and mine[0] == theirs[0] and mine[1] >= theirs[1]
    except (OSError, sqlite3.Error, TypeError):
        return False


def keep(db: Path | None) -> bool:
    """Once the server that created `db` answers: a consistent copy of it (SQLite's backup, while the server has
    it open) becomes this Prefect version's template, when it holds nothing but schema and block types."""
    tpl = template()
    if db is None or tpl is None or not db.is_file():
        return False
    import sqlite3

    tmp = tpl.with_name(f".{tpl.name}.{os.getpid()}.tmp")
    try:
        tpl.parent.mkdir(parents=True, exist_ok=True)
        src = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            tables = [t for (t,) in dst.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            filled = {t for t in tables if t not in SEEDED and dst.execute(f'SELECT 1 FROM "{t}" LIMIT 1').fetchone()}
        finally:
            src.close()
            dst.close()
        if filled or "alembic_version" not in tables:
            return False
        with open(tmp, "rb") as f:  # on disk before it is the template: a crash leaves the old one or none
            os.fsync(f.fileno())
        tmp.replace(tpl)
        return True
    except (OSError, sqlite3.Error):
        return False
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
