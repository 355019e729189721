"""Sources: each kind against a real server on 127.0.0.1 (tests/integration/servers.py)."""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from psycopg import sql

from core import cli, demo, home, ingest, jobs, remote, sources
from core.credentials import Credentials
from tests.integration import servers
from tests.integration.servers import PASSWORD, USER
from tests.integration.test_cli import env_for
from tests.integration.test_workers import start_worker, stop

pytestmark = pytest.mark.integration

TOA5 = Path(__file__).resolve().parent.parent / "data" / "toa5"
KINDS = ["folder", "sftp", "ftp", "ftps", "http", "s3", "ftp without MLSD"]


@pytest.fixture(scope="module")
def days(tmp_path_factory) -> list[bytes]:
    """Five real TOA5 day files (the demo's), each with content of its own."""
    out = tmp_path_factory.mktemp("days")
    return [p.read_bytes() for p in demo.generate(out, start=date(2025, 3, 1), days=5)
            if p.parent.name == sorted(q.name for q in out.iterdir())[0]]


@pytest.fixture(params=KINDS)
def server(request, tmp_path):
    with servers.start(request.param, tmp_path / "remote") as s:
        yield s


def tuned(settings, **kw):
    """Settings of a test: quick retries, and the default settle time."""
    return dataclasses.replace(settings, **{"source_retry_wait_s": 0.05, "source_retries": 2, **kw})


def write_secrets(settings, username: str, password: str, mode: int = 0o600) -> Path:
    path = settings.secrets_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'[logins]\nusername = "{username}"\npassword = "{password}"\n', encoding="utf-8")
    path.chmod(mode)
    return path


def add(conn, server, settings, *, password: str = PASSWORD, trust: bool = True, **fields) -> dict:
    if server.kind != "folder":
        user = server.access_key if server.kind == "s3" else USER
        secret = (server.secret_key if server.kind == "s3" else PASSWORD) if password == PASSWORD else password
        write_secrets(settings, user, secret)
        fields.setdefault("credentials", "logins")
    with conn.transaction():
        row = sources.add_source(conn, "admin", name="src", kind=server.kind, url=server.url,
                                 options=server.options, **fields)
        if trust and server.host_key:
            sources.trust_host_key(conn, "src", "admin", server.host_key)
    return row


def import_all(ids: list[int]) -> None:
    pending = list(ids)
    while pending:
        pending.extend(ingest.import_file(pending.pop(0))["queue"])


def by_name(conn) -> dict[str, dict]:
    return {r["original_name"]: r for r in conn.execute(
        "SELECT f.*, s.name AS station FROM source_file f LEFT JOIN station s ON s.id = f.station_id ORDER BY f.id")}


LATER = timedelta(hours=1)


def dump(conn, tables: list[str]) -> str:
    """Every row of ``tables``, every column, as JSON text (what a data dump would hold)."""
    return "\n".join(r["t"] for t in tables for r in conn.execute(
        sql.SQL("SELECT row_to_json(x)::text AS t FROM {} x").format(sql.Identifier(t))))


def wait_until(predicate, timeout: float, what: str, explain=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{explain()}")
        time.sleep(0.2)


def test_each_kind_fetches_new_settled_files_once(server, conn, settings, days, caplog):
    caplog.set_level(logging.DEBUG)
    s = tuned(settings)
    old = time.time() - 3600
    server.put("Mast S/day1.dat", days[0], old)
    server.put("Mast S/2025/day2.dat", days[1], old)
    server.put("Mast S/upload.dat.part", b"half", old)  # a temporary file: never fetched
    add(conn, server, s)

    first = sources.sync("src", settings=s, now=datetime.now(UTC) + LATER)
    assert (first["status"], first["n_fetched"], first["error"]) == ("ok", 2, None)
    import_all(first["queue"])
    got = by_name(conn)
    assert {n: (r["status"], r["station"], r["origin"]) for n, r in got.items()} == {
        "Mast S/day1.dat": ("imported", "Mast S", "source"), "Mast S/2025/day2.dat": ("imported", "Mast S", "source")}

    again = sources.sync("src", settings=s, now=datetime.now(UTC) + LATER)
    assert (again["status"], again["n_fetched"], again["queue"]) == ("ok", 0, [])

    server.put("Mast S/day3.dat", days[2], old)
    third = sources.sync("src", settings=s, now=datetime.now(UTC) + LATER)
    assert third["n_fetched"] == 1
    import_all(third["queue"])
    assert by_name(conn)["Mast S/day3.dat"]["status"] == "imported"

    # a file being written: too young first, then bigger than at the previous listing
    lines = days[3].splitlines(keepends=True)
    server.put("Mast S/day4.dat", b"".join(lines[:50]), time.time())
    young = sources.sync("src", settings=s, now=datetime.now(UTC))
    assert (young["n_fetched"], young["n_waiting"]) == (0, 1)
    server.put("Mast S/day4.dat", days[3], time.time())
    grown = sources.sync("src", settings=s, now=datetime.now(UTC) + LATER)
    assert (grown["n_fetched"], grown["n_waiting"]) == (0, 1)
    done = sources.sync("src", settings=s, now=datetime.now(UTC) + LATER)
    assert (done["n_fetched"], done["n_waiting"]) == (1, 0)
    import_all(done["queue"])
    row = by_name(conn)["Mast S/day4.dat"]
    assert row["status"] == "imported" and row["n_rows"] == 144  # the whole file, not its first 50 lines

    runs = conn.execute("SELECT * FROM source_run ORDER BY id").fetchall()
    assert [r["n_fetched"] for r in runs] == [2, 0, 1, 0, 0, 1]
    assert all(r["finished_at"] >= r["started_at"] and r["n_listed"] >= 3 for r in runs)
    assert runs[0]["bytes"] == len(days[0]) + len(days[1])
    secret = getattr(server, "secret_key", PASSWORD)
    assert secret not in caplog.text
    assert secret not in dump(conn, ["source", "source_run", "source_remote_file", "audit", "source_file"])


@pytest.mark.parametrize("server", [k for k in KINDS if k not in ("folder", "ftp without MLSD")], indirect=True)
def test_a_wrong_password_is_recorded_as_authentication_failed(server, conn, settings, caplog):
    caplog.set_level(logging.DEBUG)
    s = tuned(settings)
    server.put("Mast S/day1.dat", b"x", time.time() - 3600)
    add(conn, server, s, password="not-the-" + PASSWORD)
    run = sources.sync("src", settings=s, now=datetime.now(UTC) + LATER)
    assert (run["status"], run["error_class"], run["n_fetched"]) == ("failed", "authentication failed", 0)
    assert run["error"].startswith("authentication failed") and "credentials" in run["error"]
    stored = sources.get_run(conn, run["id"])
    assert stored["error_class"] == "authentication failed"
    text = dump(conn, ["source", "source_run", "source_remote_file", "audit"])
    assert "authentication failed" in text and PASSWORD not in text and "not-the-" not in text
    assert PASSWORD not in caplog.text and "not-the-" not in caplog.text


def test_sftp_host_keys_unknown_then_trusted_changed_then_stopped(conn, settings, tmp_path, capsys, monkeypatch):
    s = tuned(settings)
    with servers.sftp_server(tmp_path / "remote") as server:
        server.put("Mast S/a.dat", (TOA5 / "TestLogger_Hourly_1.dat").read_bytes(), time.time() - 3600)
        add(conn, server, s, trust=False)
        run = sources.sync("src", settings=s)
        assert (run["status"], run["error_class"]) == ("failed", "host key unknown")
        fp = remote.fingerprint(server.host_key)
        assert fp in run["error"] and "stationmanager source trust src" in run["error"]
        assert sources.get_source(conn, "src")["pending_host_key"] == server.host_key

        monkeypatch.setattr("sys.stdin.isatty", lambda: False)
        assert cli.main(["source", "trust", "src"]) == 2  # not without --yes when nobody can be asked
        assert cli.main(["source", "trust", "src", "--yes"]) == 0
        assert fp in capsys.readouterr().out
        assert sources.sync("src", settings=s)["n_fetched"] == 1

        other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
        conn.execute("UPDATE source SET host_key = %s", (other,))  # as if accepted from another server
        run = sources.sync("src", settings=s)
        assert (run["status"], run["error_class"]) == ("failed", "host key changed")
        src = sources.get_source(conn, "src")
        assert src["blocked"].startswith("host key changed") and src["pending_host_key"] == server.host_key
        assert sources.claim_due(conn, datetime.now(UTC) + timedelta(days=1)) == []  # stopped
        run = sources.sync("src", settings=s)
        assert run["error_class"] == "host key changed" and run["n_listed"] == 0  # without connecting
        assert cli.main(["source", "trust", "src", "--yes"]) == 0
        assert sources.get_source(conn, "src")["blocked"] is None
        assert sources.sync("src", settings=s)["status"] == "ok"
    audit = conn.execute("SELECT action FROM audit WHERE entity = 'source' ORDER BY id").fetchall()
    assert [a["action"] for a in audit] == ["create", "trust host key", "trust host key"]


def test_sftp_downloads_ask_without_waiting_and_copy_a_file_that_grew_whole(tmp_path):
    # request and answer: a request must not wait for the server's delayed acknowledgement
    # of the data before it (Nagle's algorithm): that held each file ~40 ms in a first sync
    with servers.sftp_server(tmp_path / "remote") as server:
        server.put("a.dat", b"x" * 100_000, time.time() - 3600)
        r = remote.connect("sftp", server.url, credentials=Credentials("t", USER, PASSWORD), timeout=10,
                           host_key=server.host_key)
        try:
            sock = r.transport.sock
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            (listed,) = r.list()
            server.put("a.dat", b"x" * 150_000, time.time() - 3600)  # grew after the listing
            r.download(listed.path, tmp_path / "a", size=listed.size)
            r.download(listed.path, tmp_path / "b")
        finally:
            r.close()
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes() == b"x" * 150_000


@pytest.mark.parametrize("kind", ["http", "sftp", "ftp", "s3", "folder"])
def test_a_run_killed_mid_download_is_completed_by_the_next_without_fetching_twice(kind, conn, db_url, settings,
                                                                                    tmp_path, days):
    # a folder is copied by the OS: its slow file is read through FUSE
    if kind == "folder" and (why := servers.fuse_unavailable()):
        pytest.skip(f"a slow folder needs FUSE: {why}")
    s = tuned(settings, source_settle_s=0)  # S3 objects are modified when put: settled at once
    remote_dir = tmp_path / "remote"
    with servers.slow_folder_server(remote_dir) if kind == "folder" else servers.start(kind, remote_dir) as server:
        old = time.time() - 7200
        server.put("Mast K/day1.dat", days[0], old)
        server.put("Mast K/day2.dat", days[1], old + 60)
        # the newest, fetched last and slowly: three days in one file (larger than a read)
        big = days[2] + b"".join(d.split(b"\r\n", 4)[4] for d in days[3:])
        server.put("Mast K/day3.dat", big, old + 120)
        server.slow("Mast K/day3.dat", 6000)  # bytes/s: about 20 s for the whole file
        add(conn, server, s)
        with (tmp_path / "sync.log").open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "core.cli", "source", "sync", "src"],
                                    env={**env_for(db_url, settings.home), "STATIONMANAGER_SOURCE_SETTLE_S": "0"},
                                    stdout=subprocess.DEVNULL, stderr=out)
        partial = home.tmp_root(s)
        try:
            wait_until(lambda: any(p.name.endswith("day3.dat") and p.stat().st_size > 0
                                   for p in partial.rglob("*") if p.is_file()), 60, "the slow download to start",
                       lambda: (tmp_path / "sync.log").read_text())
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        got = by_name(conn)
        # day1 received; day2 received, or downloaded whole while day1 was received (the next
        # file is downloaded meanwhile) and left for the next run; nothing of day3
        assert sorted(got) in (["Mast K/day1.dat"], ["Mast K/day1.dat", "Mast K/day2.dat"])
        assert all(r["status"] == "queued" for r in got.values())  # received; their import was never queued
        assert conn.execute("SELECT status FROM source_run").fetchone()["status"] == "running"

        server.slow("Mast K/day3.dat", None)
        # the killed process's database session (and the source's lock with it) ends once its
        # server process notices; until then a run would find the source busy
        wait_until(lambda: conn.execute(
            "SELECT count(*) AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND d.datname = current_database()").fetchone()["n"] == 0,
            30, "the killed run's lock to go")
        run = sources.sync("src", settings=s)
        assert (run["status"], run["n_fetched"]) == ("ok", 3 - len(got))
        assert sorted(run["queue"]) == sorted(r["id"] for r in by_name(conn).values())  # the orphans too
        assert not any(sources.kept_dir(sources.get_source(conn, "src"), s).iterdir())
        home.sweep(s, min_age_s=0)  # what a worker start does: the killed run's folder goes
        assert not any(p.is_file() and p.name != ".lock" for p in partial.rglob("*"))
        assert server.fetched("Mast K/day1.dat") == 1 and server.fetched("Mast K/day2.dat") == 1
        assert server.fetched("Mast K/day3.dat") == 2  # the killed download, then the whole one
        fetched = conn.execute("SELECT path, fetched_size FROM source_remote_file ORDER BY path").fetchall()
        assert [(r["path"], r["fetched_size"]) for r in fetched] == [
            ("Mast K/day1.dat", len(days[0])), ("Mast K/day2.dat", len(days[1])), ("Mast K/day3.dat", len(big))]
    import_all(run["queue"])
    assert {r["status"] for r in by_name(conn).values()} == {"imported"}
    statuses = [r["status"] for r in conn.execute("SELECT status FROM source_run ORDER BY id")]
    assert statuses == ["interrupted", "ok"]


def test_limits_patterns_since_and_move_after_fetch(conn, settings, tmp_path, days):
    s = tuned(settings)
    with servers.folder_server(tmp_path / "remote") as server:
        old = time.time() - 3 * 86400
        for i, data in enumerate(days[:4]):
            server.put(f"Mast L/day{i}.dat", data, old + i * 3600)
        server.put("Mast L/notes.txt", b"not a logger file", old)
        server.put("Mast L/ancient.dat", days[4], old - 30 * 86400)
        add(conn, server, s, include=["*.dat"], since=datetime.fromtimestamp(old - 86400, UTC), max_files=3,
            after_fetch="move", move_to="done")
        first = sources.sync("src", settings=s)
        assert (first["n_fetched"], first["n_waiting"]) == (3, 1)  # the fourth waits: at most 3 per run
        assert [n for n in by_name(conn)] == ["Mast L/day0.dat", "Mast L/day1.dat", "Mast L/day2.dat"]
        assert server.exists("done/Mast L/day0.dat") and not server.exists("Mast L/day0.dat")
        second = sources.sync("src", settings=s)
        assert second["n_fetched"] == 1 and not server.exists("Mast L/day3.dat")
        assert server.exists("Mast L/notes.txt") and server.exists("Mast L/ancient.dat")  # left alone


def test_a_run_starts_no_new_file_past_its_byte_limit(conn, settings, tmp_path, days):
    s = tuned(settings)
    with servers.folder_server(tmp_path / "remote") as server:
        for i, data in enumerate(days[:3]):
            server.put(f"Mast B/day{i}.dat", data, time.time() - 3600 + i)
        add(conn, server, s, max_bytes=1)  # smaller than any file: one file per run, never none
        counts = [(r["n_fetched"], r["n_waiting"]) for r in (sources.sync("src", settings=s) for _ in range(4))]
    assert counts == [(1, 2), (1, 1), (1, 0), (0, 0)]


def test_a_run_hands_its_files_over_for_import_while_it_goes_on(conn, settings, tmp_path, days, monkeypatch):
    monkeypatch.setattr(sources, "HAND_OVER_S", 3600.0)  # by count alone, however loaded the machine
    s = tuned(settings, import_batch_files=2)
    handed: list[list[int]] = []
    seen_at_hand_over: list[int] = []

    def on_received(ids: list[int]) -> None:
        handed.append(ids)
        seen_at_hand_over.append(conn.execute("SELECT count(*) AS n FROM source_file").fetchone()["n"])

    with servers.folder_server(tmp_path / "remote") as server:
        for i, data in enumerate(days):
            server.put(f"Mast H/day{i}.dat", data, time.time() - 3600 + i)
        add(conn, server, s)
        run = sources.sync("src", settings=s, on_received=on_received)
    # two at a time, committed before they are handed over, while later files were still to come
    assert handed == [run["file_ids"][0:2], run["file_ids"][2:4]] and seen_at_hand_over == [2, 4]
    assert run["queue"] == run["file_ids"][4:] and run["n_fetched"] == 5


def test_a_run_downloads_the_next_files_while_it_receives_one(conn, settings, tmp_path, days, monkeypatch):
    # the network and the database work at once: while the first file is being received (here:
    # handed over, one at a time), the next ones are downloaded; each is still fetched once
    monkeypatch.setattr(sources, "HAND_OVER_S", 3600.0)
    s = tuned(settings, import_batch_files=1, source_settle_s=0)
    ahead: list[bool] = []

    def on_received(ids: list[int]) -> None:
        if not ahead:  # the first file's hand-over: wait (bounded) for the second's download
            deadline = time.monotonic() + 15
            while server.fetched("Mast P/day1.dat") == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            ahead.append(server.fetched("Mast P/day1.dat") == 1)

    with servers.start("sftp", tmp_path / "remote") as server:
        for i, data in enumerate(days[:3]):
            server.put(f"Mast P/day{i}.dat", data, time.time() - 3600 + i)
        add(conn, server, s)
        run = sources.sync("src", settings=s, on_received=on_received)
        assert (run["status"], run["n_fetched"]) == ("ok", 3)
        assert ahead == [True]
        assert [server.fetched(f"Mast P/day{i}.dat") for i in range(3)] == [1, 1, 1]
    assert sorted(by_name(conn)) == ["Mast P/day0.dat", "Mast P/day1.dat", "Mast P/day2.dat"]


def test_a_run_past_its_time_limit_stops_cleanly_and_is_recorded_as_a_timeout(conn, settings, tmp_path, days):
    with servers.folder_server(tmp_path / "remote") as server:
        for i, data in enumerate(days[:3]):
            server.put(f"Mast T/day{i}.dat", data, time.time() - 3600 + i)
        add(conn, server, settings)
        # a limit the run is past before its first file: it fetches nothing, leaves nothing
        run = sources.sync("src", settings=tuned(settings, source_run_timeout_s=1e-9))
        assert (run["status"], run["error_class"], run["n_fetched"], run["n_waiting"]) == ("failed", "timeout", 0, 3)
        assert "STATIONMANAGER_SOURCE_RUN_TIMEOUT_S" in run["error"] and run["finished_at"] is not None
        assert by_name(conn) == {} and not any(p.is_file() for p in home.tmp_root(settings).rglob("*.dat"))
        again = sources.sync("src", settings=tuned(settings))
        assert (again["status"], again["n_fetched"]) == ("ok", 3)
        assert sorted(by_name(conn)) == ["Mast T/day0.dat", "Mast T/day1.dat", "Mast T/day2.dat"]


def test_same_content_under_a_new_name_is_not_received_again(conn, settings, tmp_path, days):
    s = tuned(settings)
    with servers.folder_server(tmp_path / "remote") as server:
        server.put("Mast D/day0.dat", days[0], time.time() - 3600)
        add(conn, server, s)
        import_all(sources.sync("src", settings=s)["queue"])
        server.put("Mast D/copy-of-day0.dat", days[0], time.time() - 3600)
        run = sources.sync("src", settings=s)
        assert (run["n_fetched"], run["queue"]) == (1, [])
        assert list(by_name(conn)) == ["Mast D/day0.dat"]


def test_a_truncated_archive_is_a_bad_archive_and_fetched_again(conn, settings, tmp_path):
    import zipfile

    s = tuned(settings)
    z = tmp_path / "whole.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.dat", (TOA5 / "TestLogger_Hourly_1.dat").read_bytes() * 20)
    with servers.folder_server(tmp_path / "remote") as server:
        server.put("Mast Z/logs.zip", z.read_bytes()[:-40], time.time() - 3600)
        add(conn, server, s)
        run = sources.sync("src", settings=s)
        assert (run["status"], run["error_class"], run["n_failed"]) == ("partial", "bad archive", 1)
        server.put("Mast Z/logs.zip", z.read_bytes(), time.time() - 3000)  # the upload ended
        assert sources.sync("src", settings=s)["n_waiting"] == 1  # its size changed since the last listing
        run = sources.sync("src", settings=s)
        assert (run["status"], run["n_fetched"]) == ("ok", 1)


def test_a_transient_error_is_tried_again_after_a_pause(conn, settings, tmp_path, days):
    s = tuned(settings, source_retries=3)
    with servers.http_server(tmp_path / "remote") as server:
        server.put("Mast T/day0.dat", days[0], time.time() - 3600)
        add(conn, server, s)
        server.httpd.fail_next = 2  # the login and its first retry meet a busy server
        run = sources.sync("src", settings=s)
        assert (run["status"], run["n_fetched"]) == ("ok", 1)
        assert server.httpd.gets["/"] == 2  # one listing after the login
        server.httpd.fail_next = 3  # more than the attempts allowed
        run = sources.sync("src", settings=s)
    assert (run["status"], run["error_class"]) == ("failed", "server error")
    assert "503" in run["error"]


def test_a_silent_server_is_a_timeout_and_a_closed_port_is_unreachable(conn, settings):
    import socket

    s = tuned(settings)
    with socket.create_server(("127.0.0.1", 0)) as silent, socket.create_server(("127.0.0.1", 0)) as closed:
        silent_port, closed_port = silent.getsockname()[1], closed.getsockname()[1]
        closed.close()  # nothing listens there any more
        with conn.transaction():
            sources.add_source(conn, "admin", name="silent", kind="http", url=f"http://127.0.0.1:{silent_port}/",
                               timeout_s=0.5)
            sources.add_source(conn, "admin", name="closed", kind="ftp", url=f"ftp://127.0.0.1:{closed_port}/")
        started = time.monotonic()
        run = sources.sync("silent", settings=s)  # connects (the kernel accepts), never answered
        assert (run["status"], run["error_class"]) == ("failed", "timeout")
        assert time.monotonic() - started < 30
        run = sources.sync("closed", settings=s)
    assert (run["status"], run["error_class"]) == ("failed", "host unreachable")
    assert "check the host name, port and network" in run["error"]


def test_a_secrets_file_others_can_read_is_refused(conn, settings, tmp_path):
    s = tuned(settings)
    with servers.http_server(tmp_path / "remote") as server:
        add(conn, server, s)
        settings.secrets_file.chmod(0o644)
        run = sources.sync("src", settings=s)
    assert run["error_class"] == "configuration"
    assert "chmod 600" in run["error"] and "0644" in run["error"]


def test_the_schedule_queues_due_sources_and_a_worker_fetches_them(conn, db_url, settings, tmp_path, days,
                                                                     capsys):
    with servers.folder_server(tmp_path / "remote") as server:
        server.put("Mast W/day0.dat", days[0], time.time() - 3600)
        add(conn, server, settings, every_minutes=5)
        t0 = datetime.now(UTC)
        assert [r["name"] for r in sources.claim_due(conn, t0)] == ["src"]
        assert sources.claim_due(conn, t0 + timedelta(minutes=4)) == []  # queued 4 minutes ago
        assert [r["name"] for r in sources.claim_due(conn, t0 + timedelta(minutes=5))] == ["src"]
        app = jobs.make_app(db_url)
        with app.open():
            assert jobs.defer_sync(app, sources.get_source(conn, "src")["id"]) is True
            assert jobs.defer_sync(app, sources.get_source(conn, "src")["id"]) is False  # one queued at a time
        worker = start_worker(db_url, settings.home)
        try:
            wait_until(lambda: by_name(conn).get("Mast W/day0.dat", {}).get("status") == "imported", 120,
                       "the worker to fetch and import the file")
            server.put("Mast W/day1.dat", days[1], time.time() - 3600)
            assert cli.main(["source", "sync", "src", "--wait", "--timeout", "120", "--json"]) == 0  # by the worker
            out = json.loads(capsys.readouterr().out)
            assert (out["status"], out["trigger"], out["n_fetched"]) == ("ok", "cli", 1)
            wait_until(lambda: by_name(conn).get("Mast W/day1.dat", {}).get("status") == "imported", 120,
                       "the worker to import the second file")
        finally:
            stop(worker)
    assert [r["trigger"] for r in conn.execute("SELECT trigger FROM source_run ORDER BY id")] == ["schedule", "cli"]


def test_a_source_runs_once_at_a_time(conn, settings, tmp_path, days):
    with servers.folder_server(tmp_path / "remote") as server:
        server.put("Mast O/day0.dat", days[0], time.time() - 3600)
        src = add(conn, server, settings)
        conn.execute("SELECT pg_advisory_lock(%s, %s)", (sources._SOURCE_LOCK, src["id"]))  # a run elsewhere
        assert sources.sync("src", settings=settings) == {"status": "busy", "queue": []}
        assert cli.main(["source", "sync", "src"]) == 2
        conn.execute("SELECT pg_advisory_unlock(%s, %s)", (sources._SOURCE_LOCK, src["id"]))
        assert sources.sync("src", settings=settings)["n_fetched"] == 1
    assert conn.execute("SELECT count(*) AS n FROM source_run").fetchone()["n"] == 1


def test_a_slow_source_does_not_hold_up_another(conn, db_url, settings, tmp_path, days):
    s = tuned(settings)
    with servers.http_server(tmp_path / "slow") as slow, servers.folder_server(tmp_path / "quick") as quick:
        slow.put("Mast Slow/day0.dat", days[0], time.time() - 3600)
        slow.httpd.throttle["/Mast%20Slow/day0.dat"] = 1000  # bytes/s: about 40 s
        quick.put("Mast Quick/day1.dat", days[1], time.time() - 3600)
        add(conn, slow, s)
        with conn.transaction():
            sources.add_source(conn, "admin", name="quick", kind="folder", url=quick.url)
        app = jobs.make_app(db_url)
        with app.open():
            for name in ("src", "quick"):  # the slow one first
                jobs.defer_sync(app, sources.get_source(conn, name)["id"])
        worker = start_worker(db_url, settings.home)
        try:
            wait_until(lambda: by_name(conn).get("Mast Quick/day1.dat", {}).get("status") == "imported", 60,
                       "the quick source's file")
            assert "Mast Slow/day0.dat" not in by_name(conn)
            slow_run = conn.execute("SELECT r.status FROM source_run r JOIN source s ON s.id = r.source_id "
                                    "WHERE s.name = 'src'").fetchone()
            assert slow_run["status"] == "running"
        finally:
            worker.kill()
            worker.wait(timeout=30)


def test_cli_add_list_test_sync_runs_edit_remove(conn, settings, tmp_path, days, capsys):
    def run(*argv) -> tuple[int, object]:
        code = cli.main(list(argv))
        out = capsys.readouterr().out
        return code, json.loads(out) if "--json" in argv else out

    with servers.http_server(tmp_path / "remote") as server:
        server.put("Mast C/day0.dat", days[0], time.time() - 3600)
        write_secrets(settings, USER, PASSWORD)
        code, row = run("source", "add", "web", "--kind", "http", "--url", server.url, "--credentials", "logins",
                        "--every", "10", "--json")
        assert code == 0 and row["url"] == server.url and row["every_minutes"] == 10
        assert run("source", "add", "bad", "--kind", "ftp", "--url", f"ftp://u:{PASSWORD}@h/") [0] == 2
        code, result = run("source", "test", "web", "--json")
        assert code == 0 and result["files"] == 1
        code, result = run("source", "sync", "web", "--json")
        assert code == 0 and result["status"] == "ok" and result["n_fetched"] == 1
        code, rows = run("source", "runs", "web", "--json")
        assert [r["n_fetched"] for r in rows] == [1]
        assert run("source", "edit", "web", "--credentials", "nobody", "--json")[0] == 0
        code, result = run("source", "test", "web", "--json")
        assert code == 1 and result["error_class"] == "configuration" and "nobody" in result["error"]
        code, rows = run("source", "list", "--json")
        assert [(r["name"], r["last_status"]) for r in rows] == [("web", "ok")]
        assert PASSWORD not in json.dumps(rows)
        assert run("source", "remove", "web")[0] == 0
        assert run("source", "list", "--json")[1] == []
    assert list(by_name(conn)) == ["Mast C/day0.dat"]  # the files it brought stay
