"""The demo's sources on a real database: the demo logger's files are fetched by the live
folder source and imported, so Ballymore Hill is syncing; the telemetry source of Curlew
Point fails, and the Overview says why (core.demo, core.sources, core.sync_health)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from core import demo, ingest, sources, sync_health

pytestmark = pytest.mark.integration


def _import(file_ids: list[int], settings) -> None:
    for file_id in file_ids:
        assert ingest.import_file(file_id, settings=settings)["status"] == "imported"


def _last_reading(conn, station: str, now: datetime) -> datetime | None:
    return sync_health.stations(conn, now)[_station_id(conn, station)].last_reading


def _station_id(conn, name: str) -> int:
    return conn.execute("SELECT id FROM station WHERE name = %s", (name,)).fetchone()["id"]


def test_the_demo_shows_a_station_syncing_through_its_live_source_and_one_failing(conn, settings, db_url):
    # what `up --demo` does: load the site, add its sources (twice: nothing is added again)
    result = demo.load_demo(days=2)
    _import(result["file_ids"], settings)
    before = _last_reading(conn, "Ballymore Hill", result["end"] + timedelta(minutes=1))
    assert before == result["end"] - timedelta(minutes=10)
    assert demo.ensure_demo_sources() == [demo.LIVE_SOURCE, demo.FAILING_SOURCE]
    assert demo.ensure_demo_sources() == []
    folder = settings.home.resolve() / demo.LOGGER_FOLDER
    src = sources.get_source(conn, demo.LIVE_SOURCE)
    assert (src["kind"], src["url"], src["station"]) == ("folder", str(folder), "Ballymore Hill")

    # the logger writes the next record; the source's run fetches it once it has settled
    end = result["end"] + timedelta(minutes=10)
    path = demo.write_logger_file(folder, result["start"], result["end"], end)
    assert path is not None
    run = sources.sync(demo.LIVE_SOURCE, settings=settings, now=datetime.now(UTC) + timedelta(minutes=5))
    assert (run["status"], run["n_fetched"], len(run["queue"])) == ("ok", 1, 1)
    _import(run["queue"], settings)
    # the series goes on by one 10-minute reading (stored at the start of its period)
    assert _last_reading(conn, "Ballymore Hill", end + timedelta(minutes=1)) == before + timedelta(minutes=10)

    # the failing source, with the default settings: refused at once, so its run ends after
    # the retry pauses (2 s + 4 s) and holds a worker no longer
    started = time.monotonic()
    failed = sources.sync(demo.FAILING_SOURCE, settings=settings)
    assert time.monotonic() - started < 30
    assert (failed["status"], failed["error_class"]) == ("failed", "host unreachable")

    now = end + timedelta(minutes=1)  # the overview a minute after that record's period ended
    health = {s.name: s for s in sync_health.stations(conn, now).values()}
    assert health["Ballymore Hill"].state == "syncing", health["Ballymore Hill"].reason
    curlew = health["Curlew Point"]
    assert curlew.state == "failing"
    assert curlew.reason == (f"source Curlew Point telemetry failing since "
                             f"{sync_health.when(failed['started_at'], now)}: host unreachable")
    assert health["Kestrel Ridge"].state == "syncing"  # no source: its files came with the site

