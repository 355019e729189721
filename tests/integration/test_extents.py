"""Each channel's first and last reading (``channel_extent``, core.extents) on a real database:
after an import, a batch of files, an older file, a file imported again after its logger's
clock changed, a channel and a station deleted, and two imports of one station at once, the
table says what ``reading`` says, and the Overview, sync health and the Station page's time
range are what probing ``reading`` per channel gives (as they were computed before the
table), as of now and as of times in the past.

The demo files (two stations, 2025-03-01 .. 03-06) are imported in different spans per
station, and a file ends with a record where one channel has no value; the times in the
past fall before the first reading, between readings, on a reading and after the last.
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from psycopg import sql

from core import db, demo, extents, ingest, stations, sync_health
from core.settings import Settings
from tests.integration.test_workers import start_worker, stop, wait_until

pytestmark = pytest.mark.integration

#: The overview's per-channel figures as they were computed before channel_extent: two index
#: probes per channel into ``reading``. Put in place of the query's own ``chan`` to get the
#: reference answer.
PROBED_CHAN = """WITH chan AS (
    SELECT c.id, c.station_id, c.column_name, c.mapped,
           (SELECT r.time FROM reading r WHERE r.channel_id = c.id AND r.time < %(now)s
             ORDER BY r.time DESC LIMIT 1) AS last_time,
           (SELECT r.time FROM reading r WHERE r.channel_id = c.id AND r.time < %(now)s
             ORDER BY r.time LIMIT 1) AS first_time
    FROM channel c
), base AS ("""

PROBED_STATION = """
SELECT s.id,
       (SELECT max((SELECT r.time FROM reading r WHERE r.channel_id = c.id AND r.time < %(now)s
                    ORDER BY r.time DESC LIMIT 1)) FROM channel c WHERE c.station_id = s.id) AS before_now,
       (SELECT min((SELECT r.time FROM reading r WHERE r.channel_id = c.id ORDER BY r.time LIMIT 1))
          FROM channel c WHERE c.station_id = s.id) AS first_time,
       (SELECT max((SELECT r.time FROM reading r WHERE r.channel_id = c.id ORDER BY r.time DESC LIMIT 1))
          FROM channel c WHERE c.station_id = s.id) AS last_time
FROM station s ORDER BY s.id
"""


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def probed_overview_query() -> sql.SQL:
    text = db.q("overview").as_string()
    head, rest = text.split("WITH chan AS (", 1)
    _, tail = rest.split("), base AS (", 1)
    return sql.SQL(head + PROBED_CHAN + tail)  # noqa: S608 - the project's own query text


def past_times(conn) -> list[datetime]:
    """Times to look from: before any reading, at and just after a channel's last reading
    (between two of its readings), mid-range, and each channel extent's own ends."""
    row = conn.execute("SELECT min(first_time) AS a, max(last_time) AS b FROM channel_extent").fetchone()
    if row["a"] is None:
        return [utc(2025, 3, 1)]
    ends = {r["t"] for r in conn.execute(
        "SELECT first_time AS t FROM channel_extent UNION SELECT last_time FROM channel_extent "
        "ORDER BY 1 LIMIT 6")}
    mid = row["a"] + (row["b"] - row["a"]) / 2
    return sorted({row["a"] - timedelta(hours=1), row["a"], mid, mid + timedelta(minutes=5), row["b"],
                   row["b"] + timedelta(minutes=1), *ends})


def assert_as_probed(conn) -> None:
    """The table equals ``reading``; the Overview, sync health and the Station page's time
    range equal their per-channel probes, as of now and as of each of :func:`past_times`."""
    assert extents.mismatches(conn) == []
    probed = probed_overview_query()
    for now in [datetime.now(UTC), *past_times(conn)]:
        win_start, win_end = stations.recovery_window(now)
        params = {"now": now, "win_start": win_start, "win_end": win_end,
                  "files_since": now - stations.FILE_DAYS * timedelta(days=1)}
        assert db.fetch_all(conn, "overview", **params) == conn.execute(probed, params).fetchall(), now
        ref = {r["id"]: r for r in conn.execute(PROBED_STATION, {"now": now})}
        arrivals = sync_health._sql.fetch_all(conn, "station_arrivals", now=now, station_ids=None)
        assert {r["id"]: r["last_reading"] for r in arrivals} == {i: r["before_now"] for i, r in ref.items()}, now
    for sid, r in ref.items():
        assert stations.time_range(conn, sid) == (r["first_time"], r["last_time"])


@pytest.fixture(scope="module")
def day_files(tmp_path_factory) -> dict[str, list[Path]]:
    """The demo stations' day files, 2025-03-01 .. 03-06, by station."""
    out: dict[str, list[Path]] = {}
    for p in demo.generate(tmp_path_factory.mktemp("days"), start=date(2025, 3, 1), days=6):
        out.setdefault(p.parent.name, []).append(p)
    return out


def receive(conn, settings: Settings, path: Path, station: str) -> int:
    with conn.transaction():
        return ingest.receive(conn, path, station=station, settings=settings).id


def test_imports_one_by_one_in_a_batch_and_older_files_keep_the_extents(conn, settings, day_files):
    assert_as_probed(conn)  # nothing yet
    for slug, files in day_files.items():
        assert ingest.import_file(receive(conn, settings, files[3], slug), settings=settings)["status"] == "imported"
    assert_as_probed(conn)
    with ingest.Batch(settings=settings) as batch:  # later days of one station, in one batch
        for p in day_files["ballymore-hill"][4:]:
            assert batch.import_file(receive(conn, settings, p, "ballymore-hill"))["status"] == "imported"
    assert_as_probed(conn)
    with ingest.Batch(settings=settings) as batch:  # older days: the extents start earlier
        for slug, files in day_files.items():
            for p in files[:3]:
                assert batch.import_file(receive(conn, settings, p, slug))["status"] == "imported"
    assert conn.execute("SELECT min(first_time) AS t FROM channel_extent").fetchone()["t"] == utc(2025, 3, 1)
    assert_as_probed(conn)


def test_an_overlapping_file_and_a_file_imported_again_after_its_clock_changed(conn, settings, day_files,
                                                                            tmp_path):
    files = day_files["ballymore-hill"]
    ids = [receive(conn, settings, p, "Mast A") for p in files[:2]]
    for i in ids:
        ingest.import_file(i, settings=settings)
    # the second day again with one more record, the first channel without a value in it: it
    # overlaps (the upsert path) and ends later, but for that channel
    grown = tmp_path / files[1].name
    lines = files[1].read_text().splitlines(keepends=True)
    last = lines[-1].split(",")
    last[:3] = ['"2025-03-03 00:10:00"', str(int(last[1]) + 1), '"NAN"']
    grown.write_text("".join(lines) + ",".join(last))
    ids.append(receive(conn, settings, grown, "Mast A"))
    assert ingest.import_file(ids[-1], settings=settings)["status"] == "imported"
    ends = {r["last_time"] for r in conn.execute("SELECT last_time FROM channel_extent")}
    assert ends == {utc(2025, 3, 2, 23, 50), utc(2025, 3, 3)}
    assert_as_probed(conn)
    # the logger was an hour ahead of UTC: both days imported again read an hour earlier, so
    # the last readings (10 minutes, then an hour) are deleted and the extents end earlier
    before = conn.execute("SELECT max(last_time) AS t FROM channel_extent").fetchone()["t"]
    conn.execute("UPDATE logger SET utc_offset_minutes = 60")
    for i in ids:
        with conn.transaction():
            ingest.requeue(conn, i, actor="admin")
        assert ingest.import_file(i, settings=settings)["status"] == "imported"
    assert conn.execute("SELECT max(last_time) AS t FROM channel_extent").fetchone()["t"] == before - timedelta(hours=1)
    assert_as_probed(conn)


def test_a_deleted_channel_and_a_deleted_station_leave_the_others_right(conn, settings, day_files):
    for slug, files in day_files.items():
        ingest.import_file(receive(conn, settings, files[0], slug), settings=settings)
    gone = conn.execute("SELECT id FROM channel ORDER BY id LIMIT 1").fetchone()["id"]
    conn.execute("DELETE FROM channel WHERE id = %s", (gone,))
    assert_as_probed(conn)
    conn.execute("DELETE FROM station WHERE name = 'kestrel-ridge'")
    assert [r["name"] for r in stations.overview(conn)] == ["ballymore-hill"]
    assert_as_probed(conn)
    extents.recompute(conn)  # a rebuild drops the rows of channels that are gone
    assert conn.execute("SELECT count(*) AS n FROM channel_extent e WHERE NOT EXISTS "
                        "(SELECT 1 FROM channel c WHERE c.id = e.channel_id)").fetchone()["n"] == 0


def test_two_imports_of_one_station_at_once_wait_for_each_other(conn, settings, day_files):
    """Two workers, each a batch of every other day of the same station, started together:
    both finish (no deadlock: PostgreSQL would abort one), and the extents are right."""
    files = day_files["ballymore-hill"]
    ids = [receive(conn, settings, p, "Mast A") for p in files]
    start, errors = threading.Barrier(2), []

    def worker(mine: list[int]) -> None:
        try:
            with ingest.Batch(settings=settings) as batch:
                start.wait(timeout=60)
                for i in mine:
                    assert batch.import_file(i)["status"] == "imported"
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(ids[k::2],)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == [] and not any(t.is_alive() for t in threads)
    assert_as_probed(conn)


def test_a_worker_that_starts_counts_what_an_older_version_imported(conn, db_url, settings, day_files):
    """A file an older worker imported after the upgrade (while it still ran) left its
    channels' extents behind: the next worker to start sets them from the readings."""
    files = day_files["kestrel-ridge"]
    for p in files[:2]:
        ingest.import_file(receive(conn, settings, p, "Mast K"), settings=settings)
    conn.execute("UPDATE channel_extent SET last_time = first_time")  # as if the second day came unseen
    assert extents.mismatches(conn) != []
    worker = start_worker(db_url, settings.home)
    try:
        wait_until(lambda: extents.mismatches(conn) == [], 120, "the extents rebuilt")
    finally:
        stop(worker)
    assert_as_probed(conn)
