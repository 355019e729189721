"""Quality checks over imported demo data: each documented fault becomes one suggestion within
the right hours, re-runs never duplicate, and the worker checks what it imports."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from core import db, demo, flags, ingest, qc_runner
from core.settings import Settings
from tests.conftest import _create, _drop
from tests import qcmast
from tests.integration.test_cli import env_for, run

pytestmark = pytest.mark.integration

RULE_OF = {"stuck": "flat_line", "icing": "icing", "gap": "gap", "dead": "dead"}
EXTRA_DAYS = 4  # days of data around each fault


def window(fault: demo.Fault) -> tuple[date, int]:
    """First day and number of days of demo data around ``fault`` (at most 10 days)."""
    first = fault.start.date() - timedelta(days=EXTRA_DAYS)
    last = min(fault.end.date() + timedelta(days=EXTRA_DAYS), first + timedelta(days=10))
    return first, (last - first).days


def station_of(fault: demo.Fault) -> str:
    """Each fault's data goes to a station of its own (no gaps between the windows)."""
    return f"{fault.station} ({fault.kind})"


def import_files(conn, paths: list[Path], station: str, settings: Settings, url: str | None = None) -> list[dict]:
    rows = []
    for p in paths:
        with conn.transaction():
            rec = ingest.receive(conn, p, station=station, settings=settings)
        rows.append(ingest.import_file(rec.id, url, settings))
    assert all(r["status"] == "imported" for r in rows)
    return rows


def files_of(out: Path, fault: demo.Fault) -> list[Path]:
    first, days = window(fault)
    slug = next(s.slug for s in demo.STATIONS if s.name == fault.station)
    return [p for p in demo.generate(out / f"{first}", start=first, days=days) if p.parent.name == slug]


def utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@pytest.fixture(scope="module")
def checked(pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A database with the demo data around every fault, checked once per fault window.

    Yields ``{"conn", "seconds": {station: s}, "ends": {station: end of data}}``.
    """
    name = f"sm_qc_{uuid.uuid4().hex[:8]}"
    _create(pg_admin_url, name, template=template_db)
    url = db.with_dbname(pg_admin_url, name)
    settings = Settings(home=tmp_path_factory.mktemp("qc-home"), database_url=url)
    out = tmp_path_factory.mktemp("qc-demo")
    try:
        with db.connect(url, autocommit=True) as conn:
            seconds, ends = {}, {}
            for fault in demo.FAULTS:
                station = station_of(fault)
                rows = import_files(conn, files_of(out, fault), station, settings, url)
                start, end = rows[0]["first_time"], rows[-1]["last_time"] + timedelta(minutes=10)
                st = flags.station_row(conn, station)
                began = time.perf_counter()
                qc_runner.run_checks(conn, st["id"], start, end)
                seconds[station], ends[station] = time.perf_counter() - began, end
            yield {"conn": conn, "seconds": seconds, "ends": ends}
    finally:
        db.close_pools()
        _drop(pg_admin_url, name)


def explained(r: dict, fault: demo.Fault) -> bool:
    """Whether suggestion ``r`` overlaps ``fault`` in time and columns (or both are about time)."""
    if not (r["start_time"] < fault.end and r["end_time"] > fault.start):
        return False
    return bool(set(r["columns"]) & set(fault.columns)) or not (r["columns"] or fault.columns)


@pytest.mark.parametrize("fault", demo.FAULTS, ids=lambda f: f"{f.kind}-{f.station}")
def test_each_demo_fault_is_suggested_within_the_right_hours(checked, fault):
    station = station_of(fault)
    rows = flags.list_suggestions(checked["conn"], station)
    end = min(fault.end, checked["ends"][station])  # the dead hygrometer outlives the window
    hits = [r for r in rows if r["rule"] == RULE_OF[fault.kind] and set(fault.columns) <= set(r["columns"])
            and abs(r["start_time"] - fault.start) <= timedelta(hours=2) and abs(r["end_time"] - end) <= timedelta(hours=2)]
    assert len(hits) == 1, [(r["rule"], r["start_time"], r["end_time"], r["columns"]) for r in rows]
    assert hits[0]["severity"] == "fail"
    if fault.kind == "icing":  # the 40 m cups kept turning
        assert not [c for c in hits[0]["columns"] if "_40m_" in c]
    others = [r for r in rows if not explained(r, fault)]
    print(f"\n{station}: {len(rows)} suggestions in {checked['seconds'][station]:.2f} s")
    for r in rows:
        print(f"  {'  ' if explained(r, fault) else 'FP'} {r['rule']} {r['start_time']} .. {r['end_time']}: {r['message']}")
    assert len(others) <= 1 and len(rows) <= 6


def test_checking_again_changes_nothing(checked):
    conn = checked["conn"]
    for fault in demo.FAULTS:
        station = station_of(fault)
        st = flags.station_row(conn, station)
        before = flags.list_suggestions(conn, station)
        found = qc_runner.run_checks(conn, st["id"], fault.start - timedelta(days=2), fault.start + timedelta(days=2),
                                     store=False)
        counts = flags.store_findings(conn, st["id"], found, fault.start - timedelta(days=2),
                                      fault.start + timedelta(days=2))
        assert counts["new"] == counts["removed"] == counts["updated"] == 0, (station, counts)
        assert flags.list_suggestions(conn, station) == before


@pytest.fixture
def stuck_files(tmp_path: Path) -> list[Path]:
    """Five days of Ballymore Hill around the seized 60 m SW anemometer."""
    stuck = next(f for f in demo.FAULTS if f.kind == "stuck")
    paths = demo.generate(tmp_path, start=stuck.start.date() - timedelta(days=1), days=5)
    return [p for p in paths if p.parent.name == "ballymore-hill"]


STUCK = next(f for f in demo.FAULTS if f.kind == "stuck")


def test_file_by_file_checks_give_the_same_suggestions_as_one_run(conn, settings, stuck_files):
    rows = import_files(conn, stuck_files, "Mast S", settings)
    st = flags.station_row(conn, "Mast S")
    for r in rows:  # as the worker does after each import
        qc_runner.run_checks(conn, st["id"], r["first_time"], r["last_time"] + timedelta(microseconds=1))
    incremental = [(r["id"], r["rule"], r["start_time"], r["end_time"]) for r in flags.list_suggestions(conn, st["id"])]
    [stuck] = [s for s in incremental if s[1] == "flat_line"]
    assert (stuck[2], stuck[3]) == (STUCK.start, STUCK.end)
    # one run over everything keeps every suggestion as it is
    counts = flags.store_findings(
        conn, st["id"], qc_runner.run_checks(conn, st["id"], rows[0]["first_time"], rows[-1]["last_time"] + timedelta(minutes=10),
                                             store=False),
        rows[0]["first_time"], rows[-1]["last_time"] + timedelta(minutes=10))
    assert counts["new"] == counts["removed"] == 0
    assert {s[0] for s in incremental} == {r["id"] for r in flags.list_suggestions(conn, st["id"])}

    made = flags.accept_suggestions(conn, [stuck[0]], "ana")
    flag = flags.get_flag(conn, made[stuck[0]])
    assert flag["category"] == "faulty sensor" and flag["rule"] == "flat_line"
    assert set(flag["columns"]) == set(STUCK.columns)
    others = [s[0] for s in incremental if s[0] != stuck[0]]
    if others:
        assert flags.dismiss_suggestions(conn, others, "ana") == len(others)
    qc_runner.run_checks(conn, st["id"], rows[0]["first_time"], rows[-1]["last_time"] + timedelta(minutes=10))
    assert flags.list_suggestions(conn, st["id"]) == []  # decided: not suggested again
    # the stuck readings are masked, the other cups' are not
    ws = flags.channel_ids_by_name(conn, "Mast S", ["WS_60m_SW_Avg", "WS_60m_NE_Avg"])
    mask = flags.flag_mask(conn, ws, rows[0]["first_time"], rows[-1]["last_time"])
    assert [(m.channel_id, m.start, m.end) for m in mask] == [(ws[0], STUCK.start, STUCK.end)]


def test_long_ranges_are_read_in_blocks_and_joined(conn, settings, stuck_files, monkeypatch):
    rows = import_files(conn, stuck_files, "Mast S", settings)
    st = flags.station_row(conn, "Mast S")
    start, end = rows[0]["first_time"], rows[-1]["last_time"] + timedelta(minutes=10)
    whole = qc_runner.run_checks(conn, st["id"], start, end, store=False)
    monkeypatch.setattr(qc_runner, "BLOCK", timedelta(hours=7))  # many block edges inside the stuck run
    chunked = qc_runner.run_checks(conn, st["id"], start, end, store=False)
    assert [(f.rule, f.columns, f.start, f.end) for f in chunked if f.rule == "flat_line"] == [
        (f.rule, f.columns, f.start, f.end) for f in whole if f.rule == "flat_line"]
    t, matrix = qc_runner.load_wide(conn, np.array(sorted(flags.channel_ids_by_name(
        conn, "Mast S", ["WS_80m_NE_Avg", "BattV_Min"]))), start, start + timedelta(hours=1))
    assert t.size == 6 and matrix.shape == (6, 2) and not np.isnan(matrix).any()
    assert str(t[0]) == str(np.datetime64(start.replace(tzinfo=None), "us"))


def test_a_gap_before_the_checked_file_is_found(conn, settings, tmp_path):
    gap = next(f for f in demo.FAULTS if f.kind == "gap")
    slug = next(s.slug for s in demo.STATIONS if s.name == gap.station)
    paths = [p for p in demo.generate(tmp_path, start=gap.start.date() - timedelta(days=1), days=5) if p.parent.name == slug]
    rows = import_files(conn, paths, "Mast K", settings)
    st = flags.station_row(conn, "Mast K")
    last = rows[-1]  # the file after the gap: its own range has no gap, the station's has
    found = qc_runner.run_checks(conn, st["id"], last["first_time"], last["last_time"] + timedelta(microseconds=1))
    assert [(f.rule, utc(f.start), utc(f.end)) for f in found] == [("gap", gap.start, gap.end)]
    made = flags.accept_suggestions(conn, flags.open_suggestion_ids(conn, "Mast K"), "ana")
    assert list(made.values()) == [None]  # acknowledged, nothing to flag


def test_qc_command_runs_the_checks_now(db_url, settings, conn, stuck_files):
    import_files(conn, stuck_files, "Mast S", settings)
    env = env_for(db_url, settings.home)
    res = run(["qc", "--station", "Mast S", "--json"], env)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert "flat_line" in {f["rule"] for f in out["findings"]}
    assert out["suggestions"]["new"] == len(out["findings"])
    res = run(["qc", "--station", "Mast S", "--start", "2025-04-08", "--end", "2025-04-09"], env)
    assert res.returncode == 0 and "0 new" in res.stdout, res.stdout + res.stderr
    res = run(["qc", "--station", "Nowhere"], env)
    assert res.returncode == 2 and "no station 'Nowhere'" in res.stderr


def test_the_worker_checks_what_it_imports(db_url, settings, conn, stuck_files):
    env = env_for(db_url, settings.home)
    worker = subprocess.Popen([sys.executable, "-m", "ingest_worker"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        res = run(["ingest", *map(str, stuck_files), "--station", "Mast S", "--wait", "--json"], env, timeout=300)
        assert res.returncode == 0, res.stderr
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            busy = conn.execute(
                "SELECT (SELECT count(*) FROM qc_request) + (SELECT count(*) FROM procrastinate_jobs "
                "WHERE task_name = 'sm:run_qc' AND status IN ('todo', 'doing')) AS n").fetchone()["n"]
            if not busy:
                break
            time.sleep(0.3)
        else:
            raise AssertionError("quality checks did not finish")
    finally:
        worker.terminate()
        print(worker.communicate(timeout=60)[0])
    jobs = conn.execute("SELECT status, count(*) AS n FROM procrastinate_jobs WHERE task_name = 'sm:run_qc' "
                        "GROUP BY 1").fetchall()
    assert {r["status"] for r in jobs} == {"succeeded"}
    assert 1 <= sum(r["n"] for r in jobs) <= len(stuck_files)
    stuck = [r for r in flags.list_suggestions(conn, "Mast S") if r["rule"] == "flat_line"]
    assert [(r["start_time"], r["end_time"]) for r in stuck] == [(STUCK.start, STUCK.end)]


def test_run_requested_takes_every_waiting_range_at_once(db_url, settings, conn, stuck_files):
    rows = import_files(conn, stuck_files, "Mast S", settings)
    st = flags.station_row(conn, "Mast S")
    with conn.transaction():
        for r in rows:
            qc_runner.request_checks(conn, st["id"], r["first_time"], r["last_time"] + timedelta(microseconds=1))
    ranges = qc_runner.run_requested(st["id"], url=db_url)
    assert ranges == [(rows[0]["first_time"], rows[-1]["last_time"] + timedelta(microseconds=1))]
    assert conn.execute("SELECT count(*) AS n FROM qc_request").fetchone()["n"] == 0
    assert "flat_line" in {r["rule"] for r in flags.list_suggestions(conn, "Mast S")}
    assert qc_runner.run_requested(st["id"], url=db_url) == []


def test_a_failed_run_leaves_its_ranges_waiting(db_url, settings, conn, stuck_files, monkeypatch):
    rows = import_files(conn, stuck_files[:1], "Mast S", settings)
    st = flags.station_row(conn, "Mast S")
    qc_runner.request_checks(conn, st["id"], rows[0]["first_time"], rows[0]["last_time"])

    def broken(*args, **kwargs):
        raise RuntimeError("simulated")

    monkeypatch.setattr(qc_runner, "run_checks", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        qc_runner.run_requested(st["id"], url=db_url)
    assert conn.execute("SELECT count(*) AS n FROM qc_request").fetchone()["n"] == 1


# --- a mast the checks were not tuned on (tests/qcmast.py), through the database ------------


def _part(mast: qcmast.Mast, first_day: float, last_day: float) -> qcmast.Mast:
    """The records of ``mast`` from ``first_day`` to ``last_day`` (days since its start)."""
    t0 = mast.times[0]
    keep = (mast.times >= t0 + np.timedelta64(int(first_day * 1440), "m")) & (
        mast.times < t0 + np.timedelta64(int(last_day * 1440), "m"))
    return qcmast.Mast(mast.times[keep], {k: v[keep] for k, v in mast.columns.items()}, mast.units, mast.faults)


def _import_and_check(conn, settings, paths: list[Path], station: str) -> list[dict]:
    """Import each file and check its range, as the worker does after each import."""
    rows = import_files(conn, paths, station, settings)
    st = flags.station_row(conn, station)
    for r in rows:
        qc_runner.run_checks(conn, st["id"], r["first_time"], r["last_time"] + timedelta(microseconds=1))
    return rows


def _suggested(conn, station: str) -> list[tuple[str, tuple[str, ...], datetime, datetime]]:
    return [(r["rule"], tuple(r["columns"]), r["start_time"].replace(tzinfo=None), r["end_time"].replace(tzinfo=None))
            for r in flags.list_suggestions(conn, station)]


def test_a_generated_mast_imported_week_by_week_gets_every_fault_suggested(conn, settings, tmp_path):
    """Seven faults on a mast of its own (stuck cup, icing, spike, humidity out of range, dead
    barometer, two-day gap, 5 % pair drift), imported a week at a time and checked after each
    file: each fault suggested within its hours, at most 10 % of suggested channel-hours outside."""
    mast = qcmast.make_mast()
    paths = qcmast.write_toa5(mast, tmp_path / "mast", "QC Mast")
    began = time.perf_counter()
    _import_and_check(conn, settings, paths, "QC Mast")
    seconds = time.perf_counter() - began
    found = _suggested(conn, "QC Mast")
    result = qcmast.score(found, mast.faults, len(mast.columns))
    print(f"\n{len(paths)} files imported and checked in {seconds:.1f} s; faults found: {result['found']}; "
          f"{len(found)} suggestions, {result['channel_hours']:.0f} channel-hours, {result['false_share']:.1%} outside")
    for r in flags.list_suggestions(conn, "QC Mast"):
        print(f"  {r['rule']} {r['start_time']} .. {r['end_time']}: {r['message']}")
    assert all(result["found"].values()), result["found"]
    assert result["false_share"] <= 0.10
    assert len(found) <= len(mast.faults) + 2
    # one run over everything changes nothing
    st = flags.station_row(conn, "QC Mast")
    start, end = mast.times[0].item().replace(tzinfo=UTC), (mast.times[-1] + qcmast.STEP).item().replace(tzinfo=UTC)
    counts = flags.store_findings(conn, st["id"], qc_runner.run_checks(conn, st["id"], start, end, store=False),
                                  start, end)
    assert counts["new"] == counts["removed"] == 0, counts


def test_a_drift_is_suggested_within_three_days_when_each_import_is_one_day(conn, settings, tmp_path):
    """The pair check of a one-day import reads its reference from the days before it."""
    mast = qcmast.make_mast()
    drift = next(f for f in mast.faults if f.kind == "drift")
    day = (drift.start - mast.times[0].item()).days
    _import_and_check(conn, settings, qcmast.write_toa5(_part(mast, day - 20, day), tmp_path / "before", "QC Mast"),
                      "QC Mast")
    assert not [s for s in _suggested(conn, "QC Mast") if s[0] == "pair_ratio"]
    daily = qcmast.write_toa5(_part(mast, day, day + 3), tmp_path / "daily", "QC Mast", days_per_file=1)
    assert len(daily) == 3
    _import_and_check(conn, settings, daily, "QC Mast")
    pair = [s for s in _suggested(conn, "QC Mast") if s[0] == "pair_ratio"]
    assert [s[1] for s in pair] == [qcmast.cols("WS_100m_S")], pair
    assert drift.start <= pair[0][2] <= drift.start + timedelta(days=3), pair
