"""Several workers, and a worker killed in the middle of a file."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pytest

import core.settings
from core import demo, extents, ingest, jobs
from tests.integration.test_cli import env_for

pytestmark = pytest.mark.integration

TOA5 = Path(__file__).resolve().parent.parent / "data" / "toa5"


def start_worker(db_url: str, home: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ingest_worker"], env=env_for(db_url, home),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def statuses(conn) -> dict[str, int]:
    return {r["status"]: r["n"] for r in conn.execute("SELECT status, count(*) AS n FROM source_file GROUP BY 1")}


def test_two_workers_import_fifty_files_each_exactly_once(conn, db_url, settings, tmp_path, monkeypatch):
    monkeypatch.setenv("STATIONMANAGER_IMPORT_BATCH_FILES", "5")
    core.settings._current = None
    paths = demo.generate(tmp_path, start=date(2025, 8, 1), days=25)
    assert len(paths) == 50
    with conn.transaction():
        ids = [ingest.receive(conn, p, station=p.parent.name, settings=settings).id for p in paths]
    # every file queued twice (batches of 5 files of a station): jobs of the two workers hold
    # the same files at once, and each file is imported once
    jobs.queue_imports(db_url, ids)
    jobs.queue_imports(db_url, ids)
    workers = [start_worker(db_url, settings.home) for _ in range(2)]
    try:
        wait_until(lambda: statuses(conn).get("imported") == 50, 180, "50 imports")
        wait_until(lambda: conn.execute("SELECT count(*) AS n FROM procrastinate_jobs WHERE task_name = "
                                        "'sm:import_file' AND status IN ('todo', 'doing')").fetchone()["n"] == 0,
                   120, "the second jobs of each file")
    finally:
        for w in workers:
            stop(w)
    assert conn.execute("SELECT max(attempts) AS n FROM source_file").fetchone()["n"] == 1
    assert conn.execute("SELECT count(*) AS n FROM reading").fetchone()["n"] == 50 * 144 * 41
    assert conn.execute("SELECT sum(n_changed) AS n FROM source_file").fetchone()["n"] == 0
    assert extents.mismatches(conn) == []  # kept by both workers, a station's batches at once
    done = conn.execute(
        "SELECT count(*) AS n, count(DISTINCT worker_id) AS w FROM procrastinate_jobs "
        "WHERE task_name = 'sm:import_file' AND status = 'succeeded'"
    ).fetchone()
    assert done["n"] == 2 * 10  # 25 files of each station, 5 a job, twice


def big_toa5(path: Path, rows: int = 120_000, cols: int = 60) -> None:
    times = np.datetime64("2020-01-01T00:10") + np.arange(rows) * np.timedelta64(10, "m")
    names = ",".join(f'"C{i}_Avg"' for i in range(cols))
    units = '"TS","RN",' + ",".join('"m/s"' for _ in range(cols))
    proc = '"",""' + ',"Avg"' * cols
    head = f'"TOA5","Big","CR1000X","777","os","prog","sig","T"\n"TIMESTAMP","RECORD",{names}\n{units}\n{proc}\n'
    values = np.round(np.random.default_rng(1).random((rows, cols)) * 20, 3)
    with path.open("w") as fh:
        fh.write(head)
        stamps = np.datetime_as_string(times, unit="s")
        for start in range(0, rows, 20_000):
            block = values[start:start + 20_000]
            lines = [
                f'"{stamps[start + i].replace("T", " ")}",{start + i},' + ",".join(map(str, r))
                for i, r in enumerate(block.tolist())
            ]
            fh.write("\n".join(lines) + "\n")


def test_a_killed_worker_leaves_nothing_half_loaded_and_the_file_is_retried(conn, db_url, settings, tmp_path):
    path = tmp_path / "big.dat"
    big_toa5(path)
    with conn.transaction():
        rec = ingest.receive(conn, path, station="Big Mast", settings=settings)
    jobs.queue_imports(db_url, [rec.id])
    first = start_worker(db_url, settings.home)
    try:
        wait_until(lambda: statuses(conn).get("importing") == 1, 60, "the import to start")
        time.sleep(1.0)  # well inside the COPY
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        stop(first)
    assert conn.execute("SELECT count(*) AS n FROM reading").fetchone()["n"] == 0
    second = start_worker(db_url, settings.home)
    try:
        # the dead worker's heartbeat goes stale after 30 s; retry_stalled runs every minute
        wait_until(lambda: statuses(conn).get("imported") == 1, 240, "the retried import")
    finally:
        stop(second)
    row = conn.execute("SELECT * FROM source_file WHERE id = %s", (rec.id,)).fetchone()
    assert row["attempts"] == 2 and row["n_readings"] == 120_000 * 60
    assert conn.execute("SELECT count(*) AS n FROM reading").fetchone()["n"] == 120_000 * 60


# --- whatever ends an import job, its file does not stay `importing` -----------------------


def fail_inserts_into_reading(conn, sqlstate: str, message: str) -> None:
    """A real failure inside the import's transaction: the database refuses every reading."""
    conn.execute(f"""
        CREATE FUNCTION test_refuse_reading() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION '{message}' USING ERRCODE = '{sqlstate}'; END $$;
        CREATE TRIGGER test_refuse_reading BEFORE INSERT ON reading
        FOR EACH ROW EXECUTE FUNCTION test_refuse_reading();
    """)


def test_an_unexpected_error_fails_the_file_and_ingest_wait_returns(conn, db_url, settings):
    fail_inserts_into_reading(conn, "XX000", "disk full (test)")
    worker = start_worker(db_url, settings.home)
    try:
        began = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "core.cli", "ingest", str(TOA5 / "TestLogger_Hourly_1.dat"),
             "--station", "Error Mast", "--wait", "--timeout", "120", "--json"],
            env=env_for(db_url, settings.home), capture_output=True, text=True, timeout=150,
        )
        took = time.monotonic() - began
    finally:
        stop(worker)
    assert done.returncode == 1, done.stdout + done.stderr
    assert took < 60, took
    row = conn.execute("SELECT * FROM source_file").fetchone()
    assert row["status"] == "failed" and row["attempts"] == 1  # not a transient error: no retry
    assert "disk full (test)" in row["error"] and row["n_readings"] == 0, row["error"]
    assert "disk full (test)" in done.stdout


def test_a_transient_error_is_retried_then_the_file_fails(conn, db_url, settings, monkeypatch):
    fail_inserts_into_reading(conn, "40001", "could not serialize (test)")
    with conn.transaction():
        rec = ingest.receive(conn, TOA5 / "TestLogger_Hourly_1.dat", station="Retry Mast", settings=settings)
    jobs.queue_imports(db_url, [rec.id])
    env = env_for(db_url, settings.home) | {"STATIONMANAGER_JOB_RETRIES": "2"}
    worker = subprocess.Popen([sys.executable, "-m", "ingest_worker"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = set()
    try:
        def settled() -> bool:
            row = conn.execute("SELECT status, error FROM source_file").fetchone()
            seen.add((row["status"], row["error"] or ""))
            return row["status"] == "failed"
        wait_until(settled, 90, "the file to fail after its retries")
    finally:
        stop(worker)
    row = conn.execute("SELECT * FROM source_file").fetchone()
    assert row["attempts"] == 3 and "could not serialize (test)" in row["error"], row
    assert any(s == "queued" and "will be retried" in e for s, e in seen), seen  # between attempts


def test_a_cancelled_job_does_not_leave_its_file_waiting(conn, db_url, settings):
    with conn.transaction():
        rec = ingest.receive(conn, TOA5 / "TestLogger_Hourly_1.dat", station="Cancel Mast", settings=settings)
    jobs.queue_imports(db_url, [rec.id])
    job = conn.execute("SELECT id FROM procrastinate_jobs WHERE task_name = 'sm:import_file'").fetchone()
    app = jobs.make_app(db_url)
    with app.open():
        assert app.job_manager.cancel_job_by_id(job["id"])
    began = time.monotonic()
    counts = jobs.wait_for_files(db_url, [rec.id], timeout=30, grace_s=1)
    assert counts == {"failed": 1} and time.monotonic() - began < 10
    row = conn.execute("SELECT * FROM source_file").fetchone()
    assert f"job {job['id']} ended (cancelled)" in row["error"], row["error"]


def job_of(conn, task_name: str) -> int:
    return conn.execute("SELECT id FROM procrastinate_jobs WHERE task_name = %s", (task_name,)).fetchone()["id"]


def kill_while_then_give_up(db_url: str, home: Path, started, what: str) -> list[int]:
    """Start a worker, SIGKILL it once ``started()`` holds, then let ``handle_stalled`` (one
    second without a heartbeat) deal with its job; returns the ids of the jobs it ended."""
    worker = start_worker(db_url, home)
    try:
        wait_until(started, 60, what)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        stop(worker)
    time.sleep(2)  # its heartbeat is now older than the one second allowed below

    async def check() -> list[int]:
        app = jobs.make_app(db_url)
        async with app.open_async():
            return await jobs.handle_stalled(app, seconds_since_heartbeat=1)

    return asyncio.run(check())


@pytest.fixture
def big_file_one_attempt(conn, settings, tmp_path, monkeypatch):
    """A big TOA5 file received for "Big Mast", with one attempt allowed per job."""
    monkeypatch.setenv("STATIONMANAGER_JOB_RETRIES", "1")
    core.settings._current = None
    path = tmp_path / "big.dat"
    big_toa5(path)
    with conn.transaction():
        return ingest.receive(conn, path, station="Big Mast", settings=settings)


def test_a_file_whose_worker_keeps_dying_ends_failed(conn, db_url, settings, big_file_one_attempt):
    jobs.queue_imports(db_url, [big_file_one_attempt.id])

    def importing() -> bool:
        if statuses(conn).get("importing") != 1:
            return False
        time.sleep(1.0)  # well into the file
        return True

    ended = kill_while_then_give_up(db_url, settings.home, importing, "the import to start")
    assert job_of(conn, "sm:import_file") in ended  # (a periodic job it was running may end too)
    row = conn.execute("SELECT * FROM source_file").fetchone()
    assert row["status"] == "failed" and "stopped responding 1 times" in row["error"], row
    assert conn.execute("SELECT status FROM procrastinate_jobs WHERE task_name = 'sm:import_file'"
                        ).fetchone()["status"] == "failed"
    assert conn.execute("SELECT count(*) AS n FROM reading").fetchone()["n"] == 0


def test_an_export_whose_worker_keeps_dying_ends_failed(conn, db_url, settings, big_file_one_attempt):
    from core import exports
    from core.exports import ExportRequest

    assert ingest.import_file(big_file_one_attempt.id, db_url, settings)["status"] == "imported"
    row = exports.request_export(conn, ExportRequest("Big Mast", "csv", calibrated=False), "ana")

    def running() -> bool:
        return exports.get_export(conn, row["id"])["status"] == "running"

    ended = kill_while_then_give_up(db_url, settings.home, running, "the export to start")
    assert job_of(conn, "sm:build_export") in ended
    after = exports.get_export(conn, row["id"])
    assert after["status"] == "failed" and "stopped responding 1 times" in after["error"], after
