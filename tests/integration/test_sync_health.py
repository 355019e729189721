"""Sync health on a real database: each station's state and reason from constructed source
runs, received files and imported readings (core.sync_health)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from core import demo, ingest, sources, sync_health

pytestmark = pytest.mark.integration

MAST = "Mast A"
# the demo files below hold readings from 2025-03-01 00:00 to 2025-03-02 23:50
LAST_READING = datetime(2025, 3, 2, 23, 50, tzinfo=UTC)
NOW = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def day_files(tmp_path_factory) -> list:
    out = tmp_path_factory.mktemp("days")
    return [p for p in demo.generate(out, start=date(2025, 3, 1), days=2) if p.parent.name == "ballymore-hill"]


@pytest.fixture
def mast(conn, settings, day_files) -> int:
    """A station with two days of readings, its files received on 2025-03-03 at 00:30."""
    for p in day_files:
        with conn.transaction():
            rec = ingest.receive(conn, p, station=MAST, origin="test", settings=settings)
        ingest.import_file(rec.id, settings=settings)
    conn.execute("UPDATE source_file SET received_at = %s", (datetime(2025, 3, 3, 0, 30, tzinfo=UTC),))
    return conn.execute("SELECT id FROM station WHERE name = %s", (MAST,)).fetchone()["id"]


def source(conn, name: str = "provider", station: str | None = MAST, every: int = 60, **kw) -> int:
    with conn.transaction():
        row = sources.add_source(conn, "admin", name=name, kind="sftp", url="sftp://met@127.0.0.1:1/",
                                 station=station, every_minutes=every, **kw)
    conn.execute("UPDATE source SET created_at = %s WHERE id = %s", (NOW - timedelta(days=2), row["id"]))
    return row["id"]


def run(conn, source_id: int, at: datetime, status: str = "ok", error_class: str | None = None, fetched: int = 0):
    conn.execute(
        "INSERT INTO source_run (source_id, trigger, status, started_at, finished_at, n_fetched, error_class, error)"
        " VALUES (%s, 'schedule', %s, %s, %s, %s, %s, %s)",
        (source_id, status, at, at + timedelta(seconds=3), fetched, error_class,
         f"{error_class}: details" if error_class else None))


def state(conn, station_id: int, now: datetime = NOW) -> tuple[str, str]:
    s = sync_health.station(conn, station_id, now)
    assert s is not None
    return s.state, s.reason


def test_a_failing_source_beats_old_readings_and_says_since_when_and_why(conn, mast):
    src = source(conn)
    run(conn, src, datetime(2025, 3, 3, 5, 10, tzinfo=UTC), fetched=1)
    run(conn, src, datetime(2025, 3, 3, 6, 10, tzinfo=UTC), "failed", "host unreachable")
    run(conn, src, datetime(2025, 3, 3, 7, 10, tzinfo=UTC), "interrupted")
    run(conn, src, datetime(2025, 3, 3, 8, 10, tzinfo=UTC), "failed", "authentication failed")
    assert state(conn, mast) == ("failing", "source provider failing since 06:10: authentication failed")
    row = {r["name"]: r for r in sync_health.sources(conn, NOW)}["provider"]
    # a run cut short by a stopped worker says nothing of the source (as for alerts)
    assert (row["failed_runs"], row["failing_since"]) == (2, datetime(2025, 3, 3, 6, 10, tzinfo=UTC))
    # as of before the failures began, the same source was fine
    assert state(conn, mast, datetime(2025, 3, 3, 6, 0, tzinfo=UTC))[0] == "no file"
    # an ok run ends the streak
    run(conn, src, datetime(2025, 3, 3, 8, 40, tzinfo=UTC))
    assert state(conn, mast) == ("no file", "no file from the logger since 00:30")
    # a killed worker's interrupted run after it does not make the source failing
    run(conn, src, datetime(2025, 3, 3, 8, 50, tzinfo=UTC), "interrupted")
    assert state(conn, mast, NOW + timedelta(minutes=1)) == ("no file", "no file from the logger since 00:30")


def test_a_failing_source_is_named_even_when_readings_are_fresh(conn, mast):
    src = source(conn)
    run(conn, src, datetime(2025, 3, 3, 0, 5, tzinfo=UTC), "failed", "host key unknown")
    assert state(conn, mast, LAST_READING + timedelta(minutes=30)) == (
        "failing", "source provider failing since 00:05: host key unknown")


def test_a_source_that_has_not_run_for_two_intervals_asks_for_a_worker(conn, mast):
    src = source(conn, every=60)
    run(conn, src, datetime(2025, 3, 3, 7, 0, tzinfo=UTC), fetched=0)
    assert state(conn, mast, NOW + timedelta(minutes=10))[0] == "no file"  # two intervals and the grace
    assert state(conn, mast, NOW + timedelta(minutes=10, seconds=1)) == (
        "not running", "source provider has not run since 07:00 (is a worker running?)")
    # a disabled source is expected not to run
    with conn.transaction():
        sources.edit_source(conn, "provider", "admin", enabled=False)
    assert state(conn, mast, NOW + timedelta(hours=1)) == (
        "no file", "no file from the logger since 00:30 (source provider is disabled)")


def test_a_source_never_run_since_it_was_added(conn, mast):
    source(conn)
    assert state(conn, mast) == (
        "not running", "source provider has not run since it was added at 2025-03-01 09:00 (is a worker running?)")


def test_files_that_arrive_without_new_readings(conn, mast, settings, day_files):
    # the same days again, received at 08:00: no new reading in them
    conn.execute("UPDATE source_file SET received_at = %s WHERE id = (SELECT max(id) FROM source_file)",
                 (datetime(2025, 3, 3, 8, 0, tzinfo=UTC),))
    assert state(conn, mast) == ("no new readings", "files arrive but hold no new readings since 2025-03-02 23:50")


def test_syncing_no_file_and_no_data(conn, mast):
    assert state(conn, mast, LAST_READING + timedelta(minutes=40)) == ("syncing", "syncing: newest reading 40 min ago")
    assert state(conn, mast) == ("no file", "no file from the logger since 00:30")
    with conn.transaction():
        ingest.ensure_station(conn, "Empty", "test")
    empty = conn.execute("SELECT id FROM station WHERE name = 'Empty'").fetchone()["id"]
    assert state(conn, empty) == ("no data", "no file received yet")


def test_a_source_without_a_station_serves_the_stations_of_the_files_it_fetched(conn, mast):
    src = source(conn, name="shared", station=None)
    run(conn, src, datetime(2025, 3, 3, 8, 30, tzinfo=UTC), "failed", "timeout")
    assert state(conn, mast)[0] == "no file"  # it fetched nothing for this station yet
    conn.execute(
        "INSERT INTO source_remote_file (source_id, path, fetched_at, source_file_id)"
        " SELECT %s, 'Mast A/d.dat', %s, min(id) FROM source_file", (src, datetime(2025, 3, 3, 0, 30, tzinfo=UTC)))
    assert state(conn, mast) == ("failing", "source shared failing since 08:30: timeout")
    assert sync_health.station(conn, mast, NOW).sources == ["shared"]


def test_a_source_renamed_on_the_command_line(conn):
    from core import cli

    source(conn, name="old name")
    assert cli.main(["source", "edit", "old name", "--rename", "new name", "--every", "30"]) == 0
    assert [(s["name"], s["every_minutes"]) for s in sources.list_sources(conn)] == [("new name", 30)]
