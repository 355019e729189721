"""Load on loopback, bounded in time, everything at once: 20 API readers streaming a
station's readings as Parquet (each with its own token), two workers importing new daily
files, and 5 browser sessions signed in at once as one user (its sign-ins take turns:
``core.signin``) and opening the Station page from the Overview. Nothing fails for
lack of a connection (every answer 200, every import done, no page shows an error), and
the server's connections to the database stay within the connection budget
(``core.budget``) of this installation.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from core import api_tokens, budget, db, demo, ingest, jobs
from core.settings import Settings
from tests.e2e.conftest import MAST, App, _start, _wait_imported, serve, station_id
from tests.load import ConnectionSampler, Outcomes, browse, in_threads, read_readings

pytestmark = [pytest.mark.e2e, pytest.mark.load]

DAYS = 3
READERS = 20
SESSIONS = 5
TIMES = 2  # reads of the station by each reader (a few seconds in all: the machine has 2 cores)
#: ms a session waits for a page step (half of it for its sign-in cookie): generous, as 5
#: Chromium sessions at once on a loaded 2-core machine took over 30 s to sign in
WAIT_MS = 180_000
#: settings of every process of the stack (the budget counts two workers)
STACK = {"STATIONMANAGER_WORKERS": "2"}


@pytest.fixture(scope="module")
def app(pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """The last days of one demo mast, imported by a real worker; the web app and the API."""
    def files(home: Path) -> dict[Path, str]:
        first_day = datetime.now(UTC).date() - timedelta(days=DAYS)
        return {p: MAST for p in demo.generate(home / "demo", start=first_day, days=DAYS)
                if p.parent.name == "ballymore-hill"}

    with serve(pg_admin_url, template_db, tmp_path_factory.mktemp("e2e-load"), files, app_env=STACK, api=True) as served:
        yield served


def test_readers_workers_and_browsers_at_once_get_no_connection_errors_within_the_budget(
        app: App, pg_admin_url: str) -> None:
    settings = Settings(home=app.home, database_url=app.database_url, workers=2)
    by_slug = {s.slug: s.name for s in demo.STATIONS}
    new = [p for p in demo.generate(app.home / "new", start=datetime.now(UTC).date() - timedelta(days=12), days=6)
           if p.parent.name != "ballymore-hill"]  # daily files of the two other masts
    with db.connect(app.database_url) as conn:
        with conn.transaction():
            ids = [ingest.receive(conn, p, station=by_slug[p.parent.name], origin="test", actor="test",
                                  settings=settings).id for p in new]
        tokens = [api_tokens.add(conn, f"reader-{i}", "viewer", "test")[0] for i in range(READERS)]
        allowed = budget.measure(conn, settings)
    assert allowed.ok, allowed.problems()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATIONMANAGER_")}
    env.update(STATIONMANAGER_DATABASE_URL=app.database_url, STATIONMANAGER_HOME=str(app.home), PYTHONUNBUFFERED="1",
               **STACK)
    second = _start("worker 2", [sys.executable, "-m", "ingest_worker"], env, app.home / "worker2.log")
    app.servers.append(second)
    api_url = f"http://127.0.0.1:{env_port(app)}"
    readings = Outcomes()
    datname = psycopg.conninfo.conninfo_to_dict(app.database_url)["dbname"]
    readers: list[threading.Thread] = []

    def load() -> None:  # once the browser sessions have signed in, as they load the Station page
        jobs.queue_imports(app.database_url, ids)
        readers.extend(in_threads(read_readings, [(api_url, token, MAST, readings, TIMES) for token in tokens]))

    with ConnectionSampler(pg_admin_url, datname, every_s=0.25) as sampler:
        seen = browse(app.url, [app.users["viewer"]], {MAST: station_id(app)}, sessions=SESSIONS, loads=1,
                      overview=False, signed_in=load, timeout_ms=WAIT_MS)
        for t in readers:
            t.join(timeout=180)
        counts = _wait_imported(app.database_url, ids, second)
    print(f"first loads {sorted(seen.first.seconds)} s; station page {sorted(seen.station_first.seconds)} s; {len(readings.seconds)} readings answers; "
          f"connections peak {sampler.peak} of a budget of {allowed.needed} (server allows {allowed.allowed})")
    assert not readings.errors, readings.errors[:3]
    assert len(readings.seconds) == READERS * TIMES
    assert counts == {"imported": len(ids)}, (counts, app.output())
    assert not seen.errors, seen.errors[:5]
    assert len(seen.first.seconds) == SESSIONS  # every session signed in
    assert len(seen.station_first.seconds) == SESSIONS  # … and drew the chart of its station
    assert sampler.peak <= allowed.needed, (sampler.peak, allowed.as_dict())


def env_port(app: App) -> str:
    """The API's port, as ``serve`` gave it to the processes."""
    api = next(s for s in app.servers if s.name == "API")
    return api.proc.args[api.proc.args.index("--port") + 1]
