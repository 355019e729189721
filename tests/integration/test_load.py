"""Load on the HTTP API, on loopback and bounded in time: concurrent readers streaming a
station's readings as Parquet keep to the API's share of the connection budget
(``STATIONMANAGER_API_POOL_SIZE``) and all get their data; none fails for lack of a
connection. (With two workers importing and browser sessions at once: ``tests/e2e/test_load.py``.)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from core import api_tokens, db, demo, ingest
from core.settings import Settings
from tests.integration.api_server import env_for, start_api
from tests.load import ConnectionSampler, Outcomes, in_threads, read_readings

pytestmark = [pytest.mark.integration, pytest.mark.load]

MAST = "Ballymore Hill"
DAYS = 10


@pytest.fixture(scope="module")
def mast(pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """(database URL, its name, home): a database with the last days of one demo mast imported."""
    name = f"sm_load_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template_db)))
    url = db.with_dbname(pg_admin_url, name)
    home = tmp_path_factory.mktemp("load-home")
    settings = Settings(home=home, database_url=url)
    files = [p for p in demo.generate(home / "demo", start=datetime.now(UTC).date() - timedelta(days=DAYS), days=DAYS)
             if p.parent.name == "ballymore-hill"]
    with db.connect(url) as conn, conn.transaction():
        ids = [ingest.receive(conn, p, station=MAST, origin="test", actor="test", settings=settings).id for p in files]
    for i in ids:
        ingest.import_file(i, url, settings)
    db.close_pools()  # the test's own connections are not the API's
    try:
        yield url, name, home
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_concurrent_readers_share_the_api_pool_and_all_get_their_data(
        mast: tuple[str, str, Path], pg_admin_url: str, tmp_path: Path) -> None:
    url, name, home = mast
    readers, pool = 8, 2
    with db.connect(url, autocommit=True) as conn:
        tokens = [api_tokens.add(conn, f"reader-{i}", "viewer", "test")[0] for i in range(readers)]
    api = start_api(env_for(url, home, api_pool_size=str(pool), pool_size="4", pool_wait_s="60"), tmp_path / "api.log")
    outcomes = Outcomes()
    try:
        with ConnectionSampler(pg_admin_url, name, every_s=0.1) as sampler:
            for t in in_threads(read_readings, [(api.url, tok, MAST, outcomes, 2) for tok in tokens]):
                t.join(timeout=180)
    finally:
        api.stop()
    assert not outcomes.errors, outcomes.errors[:3]
    assert len(outcomes.seconds) == 2 * readers
    assert 1 <= sampler.peak <= pool, (sampler.peak, api.output())
