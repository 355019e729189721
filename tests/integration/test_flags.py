"""Flags and suggested flags on a real PostgreSQL: CRUD, soft delete, audit, masks, and the
suggestion life cycle; the ``stationmanager flag`` commands as a separate process."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from core import db, flags, ingest, metadata, qc
from core.errors import NotFound
from tests.integration.test_cli import env_for, run

pytestmark = pytest.mark.integration

COLUMNS = ("WS_80m_NE_Avg", "WS_80m_NE_Std", "WS_80m_SW_Avg", "WS_60m_NE_Avg", "AirT_2m_Avg")


def d(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2025, 3, day, hour, minute, tzinfo=UTC)


def add_channel(conn, station_id: int, name: str) -> int:
    return db.fetch_one(conn, "upsert_channel", station_id=station_id, column_name=name, statistic="unknown",
                        unit="")["id"]


@pytest.fixture
def mast(conn) -> dict:
    """A station with five channels mapped by the name conventions: ``{"id", "name", "ch": {column: id}}``."""
    with conn.transaction():
        st = ingest.ensure_station(conn, "Mast F", "test")
        ch = {name: add_channel(conn, st["id"], name) for name in COLUMNS}
        metadata.apply_conventions(conn, st["id"], "test")
    return {"id": st["id"], "name": st["name"], "ch": ch}


def audit_of(conn, entity: str, entity_id: int) -> list[dict]:
    return conn.execute("SELECT * FROM audit WHERE entity = %s AND entity_id = %s ORDER BY id",
                        (entity, entity_id)).fetchall()


# --- flags ------------------------------------------------------------------------------------


def test_add_update_delete_undelete_are_audited_and_nothing_is_lost(conn, mast):
    ch = mast["ch"]
    fid = flags.add_flag(conn, "Mast F", [ch["WS_80m_NE_Avg"], ch["WS_80m_NE_Std"]], d(1, 10), d(1, 12),
                         "icing", "rime on the cups", "ana")
    [row] = flags.list_flags(conn, "Mast F")
    assert row["id"] == fid and row["category"] == "icing" and row["source"] == "manual" and row["author"] == "ana"
    assert row["columns"] == ["WS_80m_NE_Avg", "WS_80m_NE_Std"] and not row["whole_station"]
    assert (row["start_time"], row["end_time"]) == (d(1, 10), d(1, 12))

    new = flags.update_flag(conn, fid, "ben", category="faulty sensor", end=d(1, 14),
                            channel_ids=[ch["WS_80m_NE_Avg"]])
    assert new["category"] == "faulty sensor" and new["end_time"] == d(1, 14) and new["columns"] == ["WS_80m_NE_Avg"]
    assert new["note"] == "rime on the cups"  # unchanged fields kept
    flags.update_flag(conn, fid, "ben", note="rime on the cups")  # no change: not audited

    flags.delete_flag(conn, fid, "cai")
    assert flags.list_flags(conn, "Mast F") == []
    [gone] = flags.list_flags(conn, mast["id"], include_deleted=True)
    assert gone["deleted_by"] == "cai" and gone["deleted_at"] is not None
    assert conn.execute("SELECT count(*) AS n FROM flag").fetchone()["n"] == 1  # kept
    with pytest.raises(flags.FlagError, match="deleted already, by cai"):
        flags.delete_flag(conn, fid, "cai")
    with pytest.raises(flags.FlagError, match="undelete it"):
        flags.update_flag(conn, fid, "cai", note="x")

    flags.undelete_flag(conn, fid, "dan")
    assert [r["id"] for r in flags.list_flags(conn, "Mast F")] == [fid]
    assert flags.get_flag(conn, fid)["deleted_at"] is None

    trail = audit_of(conn, "flag", fid)
    assert [(a["action"], a["actor"]) for a in trail] == [
        ("create", "ana"), ("update", "ben"), ("delete", "cai"), ("undelete", "dan")]
    update = trail[1]["details"]
    assert update["old"]["category"] == "icing" and update["new"]["category"] == "faulty sensor"
    assert update["old"]["channel_ids"] == sorted([ch["WS_80m_NE_Avg"], ch["WS_80m_NE_Std"]])
    assert update["new"]["channel_ids"] == [ch["WS_80m_NE_Avg"]]
    assert set(update["old"]) == {"category", "end_time", "channel_ids"}
    assert trail[3]["details"]["deleted_by"] == "cai"


@pytest.mark.parametrize("change, message", [
    ({"start": d(2), "end": d(2)}, "must end after it starts"),
    ({"start": d(3), "end": d(2)}, "must end after it starts"),
    ({"category": "birds"}, "category 'birds' is not one of"),
    ({"channel_ids": []}, "at least one channel"),
    ({"channel_ids": [999999]}, "has no channel with id 999999"),
    ({"author": " "}, "needs an author"),
    ({"source": "rule"}, "needs the rule's name"),
    ({"source": "robot"}, "source 'robot'"),
    ({"start": "2025-03-01"}, "is not a date and time"),
])
def test_invalid_flags_are_refused_with_the_reason(conn, mast, change, message):
    args = {"station": "Mast F", "channel_ids": [mast["ch"]["AirT_2m_Avg"]], "start": d(1), "end": d(2),
            "category": "suspect", "note": "", "author": "ana"} | change
    with pytest.raises(flags.FlagError, match=message):
        flags.add_flag(conn, **args)
    assert conn.execute("SELECT count(*) AS n FROM flag").fetchone()["n"] == 0


def test_unknown_station_and_flag_are_not_found(conn, mast):
    with pytest.raises(NotFound, match="no station 'Nowhere'"):
        flags.add_flag(conn, "Nowhere", "station", d(1), d(2), "other", "", "ana")
    for call in (flags.delete_flag, flags.undelete_flag):
        with pytest.raises(NotFound, match="no flag 4242"):
            call(conn, 4242, "ana")
    other = ingest.ensure_station(conn, "Mast G", "test")
    stranger = add_channel(conn, other["id"], "WS_10m_Avg")
    with pytest.raises(flags.FlagError, match=f"'Mast F' has no channel with id {stranger}"):
        flags.add_flag(conn, "Mast F", [stranger], d(1), d(2), "other", "", "ana")


def test_overlapping_flags_are_allowed_and_the_mask_joins_them(conn, mast):
    a = mast["ch"]["WS_80m_NE_Avg"]
    flags.add_flag(conn, "Mast F", [a], d(1, 0), d(1, 6), "icing", "", "ana")
    flags.add_flag(conn, "Mast F", [a], d(1, 4), d(1, 8), "maintenance", "", "ben")
    flags.add_flag(conn, "Mast F", [a], d(1, 8), d(1, 9), "suspect", "", "ben")  # touches: joined too
    flags.add_flag(conn, "Mast F", [a], d(2, 0), d(2, 1), "tower shadow", "", "ben")
    assert len(flags.list_flags(conn, "Mast F", start=d(1, 5), end=d(1, 6))) == 2
    assert len(flags.list_flags(conn, "Mast F", categories=["icing", "tower shadow"])) == 2
    mask = flags.flag_mask(conn, [a], d(1), d(3))
    assert mask == [flags.MaskInterval(a, d(1, 0), d(1, 9)), flags.MaskInterval(a, d(2, 0), d(2, 1))]
    assert flags.flag_mask(conn, [a], d(1), d(3), exclude_categories=["tower shadow"])[-1].end == d(1, 9)
    # clipped to the range asked for
    assert flags.flag_mask(conn, [a], d(1, 2), d(1, 3)) == [flags.MaskInterval(a, d(1, 2), d(1, 3))]
    assert flags.flag_mask(conn, [mast["ch"]["AirT_2m_Avg"]], d(1), d(3)) == []


def test_whole_station_flag_covers_a_channel_added_later(conn, mast):
    fid = flags.add_flag(conn, mast["id"], "station", d(1, 9), d(1, 17), "maintenance", "climber on the mast", "ana")
    row = flags.get_flag(conn, fid)
    assert row["whole_station"] and sorted(row["channel_ids"]) == sorted(mast["ch"].values())
    late = add_channel(conn, mast["id"], "WS_100m_NE_Avg")
    assert [r["id"] for r in flags.list_flags(conn, "Mast F", channel_ids=[late])] == [fid]
    assert flags.flag_mask(conn, [late], None, None) == [flags.MaskInterval(late, d(1, 9), d(1, 17))]
    # a flag on listed channels does not cover the new one
    flags.add_flag(conn, "Mast F", [mast["ch"]["AirT_2m_Avg"]], d(2), d(3), "suspect", "", "ana")
    assert [r["id"] for r in flags.list_flags(conn, "Mast F", channel_ids=[late])] == [fid]
    # changing it to listed channels ends the cover
    flags.update_flag(conn, fid, "ben", channel_ids=[mast["ch"]["AirT_2m_Avg"]])
    assert flags.flag_mask(conn, [late], None, None) == []


def test_mask_edges_are_start_inclusive_end_exclusive(conn, mast):
    a, b = mast["ch"]["WS_80m_NE_Avg"], mast["ch"]["WS_80m_SW_Avg"]
    flags.add_flag(conn, "Mast F", [a], d(1, 10), d(1, 11), "icing", "", "ana")
    deleted = flags.add_flag(conn, "Mast F", [a, b], d(1, 0), d(2, 0), "suspect", "", "ana")
    flags.delete_flag(conn, deleted, "ana")
    t = np.datetime64("2025-03-01T09:40", "us") + np.arange(12) * np.timedelta64(10, "m")  # 09:40 .. 11:30
    mask = flags.flag_mask(conn, [a, b], d(1), d(2))
    dropped = t[flags.apply_mask(t, a, mask)]
    assert [str(x)[11:16] for x in dropped] == ["10:00", "10:10", "10:20", "10:30", "10:40", "10:50"]
    assert not flags.apply_mask(t, b, mask).any()  # the deleted flag masks nothing
    as_us = t.astype(np.int64)  # microseconds since 1970 work the same
    assert (flags.apply_mask(as_us, a, mask) == flags.apply_mask(t, a, mask)).all()
    # a range that ends at the flag's start, or starts at its end, gets no interval
    assert flags.flag_mask(conn, [a], d(1, 9), d(1, 10)) == []
    assert flags.flag_mask(conn, [a], d(1, 11), d(1, 12)) == []


def test_channel_shortcuts_by_height_and_point(conn, mast):
    ch = mast["ch"]
    assert flags.channels_at_height(conn, mast["id"], 80) == sorted(
        [ch["WS_80m_NE_Avg"], ch["WS_80m_NE_Std"], ch["WS_80m_SW_Avg"]])
    point = conn.execute("SELECT measurement_point_id AS p FROM channel WHERE id = %s",
                         (ch["WS_80m_NE_Avg"],)).fetchone()["p"]
    assert flags.channels_of_point(conn, point) == sorted([ch["WS_80m_NE_Avg"], ch["WS_80m_NE_Std"]])
    assert flags.channel_ids_by_name(conn, "Mast F", ["AirT_2m_Avg", str(ch["WS_60m_NE_Avg"])]) == [
        ch["AirT_2m_Avg"], ch["WS_60m_NE_Avg"]]
    with pytest.raises(flags.FlagError, match="no channel 'Nope'"):
        flags.channel_ids_by_name(conn, "Mast F", ["Nope"])


# --- suggestions --------------------------------------------------------------------------------


def finding(rule: str, columns: tuple[str, ...], start: datetime, end: datetime, severity: str = "fail") -> qc.Finding:
    return qc.Finding(rule, columns, start.replace(tzinfo=None), end.replace(tzinfo=None), severity, "")


def open_ones(conn, station: str = "Mast F") -> list[tuple]:
    return [(r["id"], r["rule"], r["start_time"], r["end_time"]) for r in flags.list_suggestions(conn, station)]


def test_storing_the_same_findings_again_changes_nothing(conn, mast):
    found = [finding("flat_line", ("WS_80m_NE_Avg", "WS_80m_NE_Std"), d(1, 10), d(1, 14)),
             finding("gap", (), d(2), d(3)),
             finding("pair_ratio", ("WS_80m_NE_Avg", "WS_80m_SW_Avg"), d(1, 11), d(1, 12), "suspect")]
    assert flags.store_findings(conn, mast["id"], found, d(1), d(4)) == {
        "new": 3, "updated": 0, "unchanged": 0, "removed": 0}
    before = open_ones(conn)
    assert flags.store_findings(conn, mast["id"], found, d(1), d(4)) == {
        "new": 0, "updated": 0, "unchanged": 3, "removed": 0}
    assert open_ones(conn) == before
    [stuck] = [r for r in flags.list_suggestions(conn, "Mast F") if r["rule"] == "flat_line"]
    assert stuck["columns"] == ["WS_80m_NE_Avg", "WS_80m_NE_Std"] and stuck["severity"] == "fail"
    assert stuck["message"] == "values unchanged (stuck sensor) in WS_80m_NE_Avg, WS_80m_NE_Std for 4.0 h (fail)"


def test_a_rerun_replaces_open_suggestions_only_inside_the_checked_range(conn, mast):
    cols = ("RH_2m_Avg",)
    add_channel(conn, mast["id"], "RH_2m_Avg")
    flags.store_findings(conn, mast["id"], [finding("dead", cols, d(1, 9), d(5))], d(1), d(5))
    [(sid, *_)] = open_ones(conn)
    # the next file: the sensor is still dead -> the same suggestion grows, keeping its id
    counts = flags.store_findings(conn, mast["id"], [finding("dead", cols, d(4), d(6))], d(5), d(6))
    assert counts["updated"] == 1 and open_ones(conn) == [(sid, "dead", d(1, 9), d(6))]
    # a re-check of day 2..3 finds nothing there (data re-imported): the suggestion is split
    flags.store_findings(conn, mast["id"], [], d(2), d(3))
    assert [(r[2], r[3]) for r in open_ones(conn)] == [(d(1, 9), d(2)), (d(3), d(6))]
    assert open_ones(conn)[0][0] == sid
    # checking everything again joins it back into one
    flags.store_findings(conn, mast["id"], [finding("dead", cols, d(1, 9), d(6))], d(1), d(6))
    assert [(r[2], r[3]) for r in open_ones(conn)] == [(d(1, 9), d(6))]


def test_gaps_next_to_each_other_stay_apart(conn, mast):
    gaps = [finding("gap", (), d(1, 0), d(1, 2)), finding("gap", (), d(1, 2, 10), d(1, 4))]
    flags.store_findings(conn, mast["id"], gaps, d(1), d(2))
    assert len(open_ones(conn)) == 2


def test_accepting_makes_flags_by_rule_and_dismissed_ones_are_not_suggested_again(conn, mast):
    found = [finding("icing", ("WS_80m_NE_Avg", "WS_80m_SW_Avg"), d(1, 18), d(3)),
             finding("flat_line", ("WS_60m_NE_Avg",), d(5, 11), d(6, 10)),
             finding("gap", (), d(8), d(9)),
             finding("gross_range", ("AirT_2m_Avg",), d(10), d(10, 1), "suspect")]
    flags.store_findings(conn, mast["id"], found, d(1), d(11))
    ids = {r["rule"]: r["id"] for r in flags.list_suggestions(conn, "Mast F")}
    made = flags.accept_suggestions(conn, [ids["icing"], ids["flat_line"], ids["gap"]], "ana")
    assert made[ids["gap"]] is None  # a gap holds no readings: acknowledged, no flag
    icing, stuck = flags.get_flag(conn, made[ids["icing"]]), flags.get_flag(conn, made[ids["flat_line"]])
    assert (icing["category"], icing["source"], icing["rule"], icing["author"]) == ("icing", "rule", "icing", "ana")
    assert icing["columns"] == ["WS_80m_NE_Avg", "WS_80m_SW_Avg"] and icing["note"].startswith("sensor frozen")
    assert (icing["start_time"], icing["end_time"]) == (d(1, 18), d(3))
    assert stuck["category"] == "faulty sensor"
    accepted = flags.list_suggestions(conn, "Mast F", status="accepted")
    assert {r["id"]: r["flag_id"] for r in accepted} == made and all(r["decided_by"] == "ana" for r in accepted)

    with pytest.raises(flags.FlagError, match=f"suggestion {ids['icing']} was accepted already by ana"):
        flags.accept_suggestions(conn, [ids["icing"], ids["gross_range"]], "ben")
    assert flags.get_flag(conn, made[ids["icing"]]) and len(flags.list_flags(conn, "Mast F")) == 2  # all or none
    assert flags.dismiss_suggestions(conn, [ids["gross_range"]], "ben") == 1
    with pytest.raises(NotFound, match="no suggestion 777777"):
        flags.dismiss_suggestions(conn, [777777], "ben")
    assert [a["action"] for a in audit_of(conn, "suggested_flag", ids["gross_range"])] == ["dismiss"]
    assert audit_of(conn, "suggested_flag", ids["icing"])[0]["details"]["flag_id"] == made[ids["icing"]]

    # the same findings again: nothing new is suggested
    assert flags.store_findings(conn, mast["id"], found, d(1), d(11))["new"] == 0
    assert flags.list_suggestions(conn, "Mast F") == []
    # a longer icing than the accepted one: only the rest is suggested
    flags.store_findings(conn, mast["id"], [finding("icing", ("WS_80m_NE_Avg",), d(1, 18), d(3, 6))], d(1), d(4))
    assert [(r["start_time"], r["end_time"]) for r in flags.list_suggestions(conn, "Mast F")] == [(d(3), d(3, 6))]


def test_accept_with_a_category_and_findings_of_unknown_columns(conn, mast):
    flags.store_findings(conn, mast["id"], [finding("pair_ratio", ("WS_80m_NE_Avg", "WS_80m_SW_Avg"), d(1), d(2))],
                         d(1), d(2))
    [sid] = flags.open_suggestion_ids(conn, "Mast F")
    made = flags.accept_suggestions(conn, [sid], "ana", category="tower shadow")
    assert flags.get_flag(conn, made[sid])["category"] == "tower shadow"
    with pytest.raises(flags.FlagError, match="does not have: Ghost"):
        flags.store_findings(conn, mast["id"], [finding("dead", ("Ghost",), d(1), d(2))], d(1), d(2))


# --- the command line ---------------------------------------------------------------------------


def test_flag_commands(db_url, settings, conn, mast):
    env = env_for(db_url, settings.home)
    res = run(["flag", "add", "--station", "Mast F", "--channels", "WS_80m_NE_Avg,WS_80m_NE_Std",
               "--start", "2025-03-01T10:00", "--end", "2025-03-01T12:00", "--category", "icing",
               "--note", "rime", "--json", "--actor", "ana"], env)
    assert res.returncode == 0, res.stderr
    added = json.loads(res.stdout)
    assert added["channels"] == "WS_80m_NE_Avg,WS_80m_NE_Std" and added["start"].startswith("2025-03-01 10:00:00")
    res = run(["flag", "add", "--station", "Mast F", "--station-wide", "--start", "2025-03-02",
               "--end", "2025-03-03", "--category", "maintenance"], env)
    assert res.returncode == 0 and "whole station" in res.stdout, res.stderr
    res = run(["flag", "add", "--station", "Mast F", "--channels", "Nope", "--start", "2025-03-02",
               "--end", "2025-03-01", "--category", "icing"], env)
    assert res.returncode == 2 and "no channel 'Nope'" in res.stderr
    res = run(["flag", "add", "--station", "Mast F", "--channels", "WS_80m_NE_Avg", "--start", "2025-03-02",
               "--end", "2025-03-01", "--category", "icing"], env)
    assert res.returncode == 2 and "must end after it starts" in res.stderr

    assert run(["flag", "delete", str(added["id"])], env).returncode == 0
    res = run(["flag", "list", "--station", "Mast F", "--json"], env)
    assert [r["category"] for r in json.loads(res.stdout)] == ["maintenance"]
    res = run(["flag", "list", "--station", "Mast F", "--deleted"], env)
    assert "icing" in res.stdout and "deleted_by" in res.stdout
    assert run(["flag", "undelete", str(added["id"])], env).returncode == 0
    res = run(["flag", "list", "--station", "Mast F", "--start", "2025-03-01T11:00", "--end", "2025-03-01T11:10",
               "--json"], env)
    assert [r["id"] for r in json.loads(res.stdout)] == [added["id"]]

    flags.store_findings(conn, mast["id"], [finding("flat_line", ("WS_60m_NE_Avg",), d(5), d(6)),
                                            finding("gap", (), d(8), d(9)),
                                            finding("icing", ("WS_80m_SW_Avg",), d(10), d(11))], d(5), d(12))
    res = run(["flag", "suggestions", "--station", "Mast F", "--json"], env)
    rows = json.loads(res.stdout)
    assert [r["rule"] for r in rows] == ["flat_line", "gap", "icing"]
    res = run(["flag", "accept", str(rows[0]["id"])], env)
    assert res.returncode == 0 and f"suggestion {rows[0]['id']} accepted: flag" in res.stdout
    res = run(["flag", "dismiss", str(rows[2]["id"])], env)
    assert res.returncode == 0 and "1 suggestion dismissed" in res.stdout
    res = run(["flag", "accept", "--all"], env)
    assert res.returncode == 2 and "--all needs --station" in res.stderr
    res = run(["flag", "accept", "--all", "--station", "Mast F", "--json"], env)
    assert json.loads(res.stdout) == [{"suggestion": rows[1]["id"], "flag": None}]
    res = run(["flag", "suggestions", "--station", "Mast F", "--status", "all"], env)
    assert res.stdout.count("accepted") == 2 and res.stdout.count("dismissed") == 1
    res = run(["flag", "dismiss", str(rows[2]["id"])], env)
    assert res.returncode == 2 and "dismissed already" in res.stderr
    res = run(["flag", "list", "--station", "Mast F", "--json"], env)
    assert sorted(r["source"] for r in json.loads(res.stdout)) == ["manual", "manual", "rule"]
