"""cluster/prefect_db.py: a new PREFECT_HOME's database copied from a template, never over a database that
exists, and a template only from a database that holds nothing but schema and block types (SQLite files here;
tests/e2e/test_embedded_prefect.py starts Prefect's server on a copy)."""
import sqlite3
from pathlib import Path

import pytest

from cluster import prefect_db


def fresh_db(path: Path, flow_runs: int = 0) -> Path:
    """A stand-in for the database Prefect's server made: its head revision, block types, maybe flow runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA journal_mode=WAL")  # as Prefect keeps it
        c.execute("CREATE TABLE alembic_version (version_num TEXT)")
        c.execute("INSERT INTO alembic_version VALUES ('27d8f4e1a6c9')")
        c.execute("CREATE TABLE block_type (id TEXT, name TEXT)")
        c.execute("INSERT INTO block_type VALUES ('1', 'secret')")
        c.execute("CREATE TABLE flow_run (id TEXT, parameters TEXT)")
        c.executemany("INSERT INTO flow_run VALUES (?, ?)", [(str(i), "{}") for i in range(flow_runs)])
    return path


def rows(path: Path, table: str) -> list:
    with sqlite3.connect(path) as c:
        return c.execute(f"SELECT * FROM {table}").fetchall()


@pytest.fixture
def templates(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "templates"
    monkeypatch.setenv("CONDUCTOR_PREFECT_TEMPLATES", str(folder))
    for var in prefect_db.DB_VARS:
        monkeypatch.delenv(var, raising=False)
    return folder


def test_the_first_new_database_becomes_the_template_and_the_next_home_starts_from_it(templates, tmp_path):
    first = tmp_path / "a" / "prefect.db"
    assert prefect_db.seed(first) is True and not first.exists()  # no template yet: the server creates it
    fresh_db(first)
    assert prefect_db.keep(first) is True
    tpl = prefect_db.template()
    assert tpl == templates / f"prefect-{prefect_db.prefect_version()}.db" and tpl.is_file()
    assert not list(templates.glob(".*"))  # nothing half-written left beside it
    second = tmp_path / "b" / "prefect.db"
    assert prefect_db.seed(second) is False  # copied: nothing to keep after this server starts
    assert rows(second, "alembic_version") == [("27d8f4e1a6c9",)] and rows(second, "block_type") == [("1", "secret")]
    assert sorted(p.name for p in second.parent.iterdir()) == ["prefect.db"]


def test_a_database_that_holds_a_flow_run_is_no_template(templates, tmp_path):
    used = fresh_db(tmp_path / "a" / "prefect.db", flow_runs=1)  # another command wrote there meanwhile
    assert prefect_db.keep(used) is False and not prefect_db.template().exists()
    assert not templates.exists() or not list(templates.iterdir())


def test_an_existing_database_is_never_replaced(templates, tmp_path):
    fresh_db(tmp_path / "a" / "prefect.db")
    assert prefect_db.keep(tmp_path / "a" / "prefect.db")
    mine = fresh_db(tmp_path / "b" / "prefect.db", flow_runs=3)
    before = mine.read_bytes()
    assert prefect_db.seed(mine) is False and mine.read_bytes() == before and len(rows(mine, "flow_run")) == 3


def test_no_template_for_a_configured_database_or_where_turned_off(templates, tmp_path, monkeypatch):
    assert prefect_db.database({"PREFECT_HOME": str(tmp_path)}) == tmp_path / "prefect.db"
    url = {"PREFECT_HOME": str(tmp_path), "PREFECT_SERVER_DATABASE_CONNECTION_URL": "postgresql+asyncpg://x/y"}
    driver = {"PREFECT_HOME": str(tmp_path), "PREFECT_SERVER_DATABASE_DRIVER": "postgresql+asyncpg"}
    assert prefect_db.database(url) is None and prefect_db.database(driver) is None
    assert prefect_db.seed(None) is False and prefect_db.keep(None) is False
    monkeypatch.setenv("CONDUCTOR_PREFECT_TEMPLATES", "")
    assert prefect_db.template() is None and prefect_db.seed(tmp_path / "c" / "prefect.db") is False


def test_an_unreadable_template_or_a_stray_journal_leaves_the_database_to_prefect(templates, tmp_path):
    fresh_db(tmp_path / "a" / "prefect.db")
    assert prefect_db.keep(tmp_path / "a" / "prefect.db")
    stray = tmp_path / "b" / "prefect.db"
    stray.parent.mkdir()
    stray.with_name("prefect.db-wal").write_bytes(b"a journal of a database that is gone")
    assert prefect_db.seed(stray) is False and not stray.exists()
    prefect_db.template().write_bytes(b"SQLite format 3\x00 and then nothing")  # cut short
    assert prefect_db.seed(tmp_path / "c" / "prefect.db") is False and not (tmp_path / "c" / "prefect.db").exists()
    assert not list((tmp_path / "c").glob(".*"))


def test_only_a_database_at_the_templates_revision_with_block_types_skips_prefects_start_checks(templates, tmp_path):
    assert prefect_db.at_head(fresh_db(tmp_path / "x" / "prefect.db")) is False  # no template: unsure
    fresh_db(tmp_path / "a" / "prefect.db")
    assert prefect_db.keep(tmp_path / "a" / "prefect.db")
    copy = tmp_path / "b" / "prefect.db"
    prefect_db.seed(copy)
    assert prefect_db.at_head(copy) is True
    assert prefect_db.at_head(fresh_db(tmp_path / "c" / "prefect.db", flow_runs=2)) is True  # a home used before
    older = fresh_db(tmp_path / "d" / "prefect.db")
    with sqlite3.connect(older) as c:
        c.execute("UPDATE alembic_version SET version_num = 'an-older-one'")
    no_blocks = fresh_db(tmp_path / "e" / "prefect.db")
    with sqlite3.connect(no_blocks) as c:
        c.execute("DELETE FROM block_type")
    broken = tmp_path / "f" / "prefect.db"
    broken.parent.mkdir()
    broken.write_bytes(b"not a database")
    assert not any(prefect_db.at_head(p) for p in (older, no_blocks, broken, tmp_path / "g" / "prefect.db", None))
