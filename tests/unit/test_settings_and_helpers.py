"""Settings, named SQL, users, binary COPY encoding, logging."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np
import pytest

from core import auth, db, ingest, logs, schema, supervisor
from core.errors import ConfigError, StationManagerError
from core.settings import Settings, describe

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_documented():
    doc = (ROOT / "docs" / "settings.md").read_text()
    missing = [s["env"] for s in describe() if s["env"] not in doc]
    assert not missing, f"document these in docs/settings.md: {missing}"
    assert all(s["help"] for s in describe())


def test_bad_setting_value_is_a_clear_error():
    with pytest.raises(ConfigError, match="STATIONMANAGER_POOL_SIZE='many'"):
        Settings.from_env({"STATIONMANAGER_POOL_SIZE": "many"})


def test_every_named_query_parses_and_names_are_unique():
    text = (ROOT / "core" / "sql" / "queries.sql").read_text()
    names = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("-- name:")]
    assert len(names) == len(set(names))
    assert set(db.queries()) == set(names)


def test_migrations_are_numbered_without_gaps():
    versions = [m.version for m in schema.migrations()]
    assert versions == list(range(1, len(versions) + 1))
    assert schema.migrations()[1].file_for(0) is None  # hypertable: not at level 0
    assert schema.migrations()[2].file_for(2).endswith(".level2.sql")


def test_users_file_hashes_passwords_and_checks_roles(tmp_path):
    path = tmp_path / "users.yaml"
    auth.add_user(path, "ana", "correct horse", "analyst")
    text = path.read_text()
    assert "correct horse" not in text and "$2b$" in text
    assert auth.users(path) == [{"name": "ana", "role": "analyst", "email": "ana@localhost"}]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(StationManagerError, match="at least 8"):
        auth.add_user(path, "bob", "short", "viewer")
    with pytest.raises(StationManagerError, match="unknown role"):
        auth.add_user(path, "bob", "long enough", "boss")


def test_binary_copy_rows_follow_postgres_layout():
    data = ingest.encode_copy(np.array([7]), np.array([1_000_000]), np.array([2.5]), 3)
    assert data == struct.pack(">hiiiqidii", 4, 4, 7, 8, 1_000_000, 8, 2.5, 4, 3)


def test_logger_clock_shifts_end_of_period_stamps_to_utc_start():
    clock = ingest.LoggerClock(utc_offset_minutes=60, timestamp_is_end=True, interval_s=600)
    t = np.array(["2025-01-01T01:10"], dtype="datetime64[us]")
    start_us = clock.to_utc_start_us(t)[0] + ingest.PG_EPOCH_US
    assert np.datetime64(int(start_us), "us") == np.datetime64("2025-01-01T00:00")


@pytest.mark.parametrize(
    ("level", "action", "task", "kept"),
    [
        (logging.INFO, "start_job", "sm:scan_inbox", False),  # every 5 s: left out
        (logging.INFO, "job_success", "sm:retry_stalled", False),
        (logging.INFO, "start_job", "sm:import_file", True),
        (logging.ERROR, "job_error", "sm:scan_inbox", True),  # a failure always shows
        (logging.INFO, None, None, True),  # any other line
    ],
)
def test_routine_housekeeping_jobs_leave_no_log_lines(level, action, task, kept):
    record = logging.makeLogRecord({"name": "procrastinate.worker", "levelno": level, "msg": "Starting job"})
    if action:
        record.action, record.job = action, {"task_name": task}
    assert logs.RoutineJobFilter().filter(record) is kept


def test_up_runs_the_worker_quietly_unless_a_log_level_is_set(monkeypatch):
    monkeypatch.delenv("STATIONMANAGER_LOG_LEVEL", raising=False)
    assert supervisor.worker_env()["STATIONMANAGER_LOG_LEVEL"] == "WARNING"
    monkeypatch.setenv("STATIONMANAGER_LOG_LEVEL", "DEBUG")
    assert supervisor.worker_env()["STATIONMANAGER_LOG_LEVEL"] == "DEBUG"
