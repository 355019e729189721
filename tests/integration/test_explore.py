"""Explore on a real database: the snapshot built through the export machinery (tidy Parquet,
one per station, reused while unchanged) and queried in the sandbox; saved queries.

Two days of two demo masts are imported; the snapshot is built in the test process with
:func:`core.exports.build_export`, as the worker would.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from core import demo, exports, ingest
from core.errors import NotFound
from core.explore import examples, sandbox, saved, snapshot

pytestmark = pytest.mark.integration

STATIONS = ("Ballymore Hill", "Kestrel Ridge")
FIRST_DAY = date(2025, 3, 1)


@pytest.fixture
def masts(conn, settings, tmp_path):
    paths = demo.generate(tmp_path / "demo", start=FIRST_DAY, days=2)
    slugs = {"ballymore-hill": STATIONS[0], "kestrel-ridge": STATIONS[1]}
    with conn.transaction():
        ids = [ingest.receive(conn, p, station=slugs[p.parent.name], settings=settings).id
               for p in paths if p.parent.name in slugs]
    for i in ids:
        assert ingest.import_file(i)["status"] == "imported"
    return conn


def build(conn, snap: snapshot.Snapshot) -> list:
    for part in snapshot.rows(conn, snap):
        if part["status"] == "queued":
            exports.build_export(part["id"])
    return snapshot.rows(conn, snap)


def test_a_snapshot_of_two_stations_is_built_queried_and_reused(masts, settings, monkeypatch):
    monkeypatch.setattr(exports, "_defer_build", lambda export_id: None)  # built below, as the worker would
    conn = masts
    req = snapshot.SnapshotRequest(STATIONS, measurement_types=("wind_speed", "wind_direction"), flagged="mark")
    snap = snapshot.request(conn, req, actor="vera")
    assert len(snap.export_ids) == 2 and snap.problems == ()
    parts = build(conn, snap)
    assert not snapshot.pending(parts)
    views = snapshot.views(snapshot.files(parts, settings))

    got = sandbox.run_query(
        "SELECT station, measurement_type, count(DISTINCT channel) AS channels, count(flag) AS flagged, "
        "min(time) AS first_time FROM readings GROUP BY ALL ORDER BY ALL", views, settings,
        derived=snapshot.DERIVED).table.to_pylist()
    assert [(r["station"], r["measurement_type"]) for r in got] == [
        (s, t) for s in STATIONS for t in ("wind_direction", "wind_speed")]
    assert all(r["first_time"] == datetime(2025, 3, 1, tzinfo=UTC) for r in got)
    shear = sandbox.run_query(examples.BY_NAME["Wind-shear exponent"].sql, views, settings).table.to_pylist()
    assert {r["station"] for r in shear} == set(STATIONS)
    assert all(0.0 < r["shear_exponent"] < 0.5 for r in shear), shear  # the demo's profile

    again = snapshot.request(conn, req, actor="anna")  # nothing changed: both parts reused at once
    assert all(r["status"] == "done" and r["reused"] for r in snapshot.rows(conn, again))

    # a station with nothing to explore is left out and named; with no other, nothing is asked
    conn.execute("INSERT INTO station (name) VALUES ('Empty Mast')")
    snap = snapshot.request(conn, snapshot.SnapshotRequest((STATIONS[0], "Empty Mast")), actor="vera")
    assert len(snap.export_ids) == 1
    assert len(snap.problems) == 1 and snap.problems[0].startswith("Empty Mast: ")
    with pytest.raises(snapshot.SnapshotError, match="nothing to explore: Empty Mast: "):
        snapshot.request(conn, snapshot.SnapshotRequest(("Empty Mast",)), actor="vera")


def test_saved_queries_are_per_user_and_shared_ones_are_found_by_name(conn):
    mine = saved.save(conn, "anna", "Shear  by month", "SELECT 1", chart={"x": "month", "kind": "line"})
    assert mine["name"] == "Shear by month" and not mine["shared"]
    assert [q["name"] for q in saved.visible(conn, "vera")] == []

    saved.save(conn, "anna", "Shear by month", "SELECT 2", shared=True)  # the same name replaces it
    seen = saved.visible(conn, "vera")
    assert [(q["name"], q["owner"], q["sql"], q["mine"]) for q in seen] == [
        ("Shear by month", "anna", "SELECT 2", False)]
    assert saved.get(conn, "vera", seen[0]["id"])["sql"] == "SELECT 2"

    saved.save(conn, "vera", "shear by month", "SELECT 3")  # a private query may share the name
    with pytest.raises(saved.SavedQueryError, match="anna already shares a query named"):
        saved.save(conn, "vera", "shear by month", "SELECT 3", shared=True)
    with pytest.raises(NotFound, match="only its owner deletes"):
        saved.delete(conn, "vera", seen[0]["id"])
    saved.delete(conn, "anna", seen[0]["id"])
    assert [q["owner"] for q in saved.visible(conn, "vera")] == ["vera"]
    actions = conn.execute("SELECT action FROM audit WHERE entity = 'explore_query' ORDER BY id").fetchall()
    assert [a["action"] for a in actions] == ["save", "save", "save", "delete"]


def test_a_bad_saved_query_is_refused_with_the_reason(conn):
    for name, sql, chart, problem in (
        ("", "SELECT 1", None, "give the query a name"),
        ("x" * 201, "SELECT 1", None, "at most 200"),
        ("q", "  ", None, "there is no SQL to save"),
        ("q", "SELECT 1", {"kind": "pie"}, "chart kind 'pie'"),
    ):
        with pytest.raises(saved.SavedQueryError, match=problem):
            saved.save(conn, "anna", name, sql, chart=chart)
    assert saved.visible(conn, "anna") == []
