"""Hostile received files: archive bombs, nested and crowded archives, hostile member names,
links in the inbox, the home folder inside the inbox, permissions and temporary files."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

import core.settings
from core import home, inbox, ingest
from core.cli import main as cli
from tests.bombs import MiB, PeakSize, gzip_of_zeros, many_members, nested, symlink_member, zip_bytes

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DAY_FILE = ROOT / "tests" / "data" / "toa5" / "TestLogger_Hourly_1.dat"
DAY = DAY_FILE.read_bytes()


@pytest.fixture
def small_budget(conn, monkeypatch: pytest.MonkeyPatch) -> core.settings.Settings:
    """Settings (as the worker reads them) letting one received file unpack to 4 MiB."""
    monkeypatch.setenv("STATIONMANAGER_MAX_UNPACKED_MB", "4")
    core.settings._current = None
    return core.settings.get_settings()


def run_queue(ids: list[int]) -> None:
    """Do what the worker does for these files and for what they produce (archive members)."""
    pending = list(ids)
    while pending:
        pending.extend(ingest.import_file(pending.pop(0))["queue"])


def receive(conn, settings, name: str, data: bytes, tmp_path: Path, station: str = "Mast") -> int:
    path = tmp_path / name
    path.write_bytes(data)
    with conn.transaction():
        return ingest.receive(conn, path, station=station, settings=settings).id


def records(conn) -> dict[str, dict]:
    return {r["original_name"]: r for r in conn.execute("SELECT * FROM source_file ORDER BY id")}


def stored(settings) -> list[Path]:
    return sorted(p for p in settings.files_dir.rglob("*") if p.is_file())


def temp_files(settings) -> list[Path]:
    """Files left under HOME/tmp (the processes' lock files aside)."""
    return [p for p in home.tmp_root(settings).rglob("*") if p.is_file() and p.name != ".lock"]


# --- archives ---------------------------------------------------------------------------


def test_gzip_bomb_is_refused_within_the_budget_under_home_and_nothing_of_it_is_stored(conn, small_budget, tmp_path):
    file_id = receive(conn, small_budget, "bomb.dat.gz", gzip_of_zeros(16, copies=4), tmp_path)  # 64 MiB
    with PeakSize(home.tmp_root(small_budget)) as peak:
        run_queue([file_id])
    row = records(conn)["bomb.dat.gz"]
    assert row["status"] == "failed" and row["format"] == "archive"
    assert row["error"] == ("unpacks to more than 4 MiB (limit: STATIONMANAGER_MAX_UNPACKED_MB, "
                            "by default 10 × STATIONMANAGER_MAX_UPLOAD_MB)")
    assert 0 < peak.peak <= 4 * MiB  # unpacked under HOME/tmp, never beyond the budget
    assert list(records(conn)) == ["bomb.dat.gz"]
    assert stored(small_budget) == [ingest.stored_path(small_budget, row["sha256"])]  # the upload alone
    assert temp_files(small_budget) == []


def test_nested_bomb_zip_in_zip_in_gz_is_refused_as_a_whole(conn, small_budget, tmp_path):
    inner = zip_bytes({"a.dat": b"\0" * 2 * MiB, "day.dat": DAY})
    middle = zip_bytes({"inner.zip": inner, "b.dat.gz": gzip_of_zeros(2)})
    bomb = gzip.compress(middle)  # 4 MiB of zeros and a day file, 3 levels deep
    file_id = receive(conn, small_budget, "bomb.zip.gz", bomb, tmp_path)
    run_queue([file_id])
    row = records(conn)["bomb.zip.gz"]
    assert row["status"] == "failed" and row["error"].startswith("unpacks to more than 4 MiB")
    assert list(records(conn)) == ["bomb.zip.gz"]  # not even the day file within it
    assert len(stored(small_budget)) == 1
    assert temp_files(small_budget) == []


def test_archives_nested_too_deep_are_refused(conn, settings, tmp_path):
    file_id = receive(conn, settings, "deep.zip", nested("day.dat", DAY, 4), tmp_path)
    run_queue([file_id])
    row = records(conn)["deep.zip"]
    assert row["status"] == "failed"
    assert row["error"] == "archives nested deeper than 3 levels (limit: STATIONMANAGER_MAX_ARCHIVE_DEPTH)"
    assert list(records(conn)) == ["deep.zip"] and len(stored(settings)) == 1


def test_archives_within_the_limits_are_unpacked_in_one_pass(conn, settings, tmp_path):
    outer = zip_bytes({"2025/day.dat.gz": gzip.compress(DAY)})
    file_id = receive(conn, settings, "outer.zip", outer, tmp_path)
    run_queue([file_id])
    got = records(conn)
    assert list(got) == ["outer.zip", "outer.zip/2025/day.dat"]  # no record of the inner .gz
    assert got["outer.zip"]["status"] == "unpacked" and got["outer.zip"]["n_rows"] == 1
    leaf = got["outer.zip/2025/day.dat"]
    assert leaf["status"] == "imported" and leaf["n_readings"] == 15 and leaf["parent_id"] == file_id


def test_a_zip_of_50000_members_is_refused_and_none_is_stored(conn, settings, tmp_path):
    path = many_members(tmp_path / "many.zip", 50_000)
    with conn.transaction():
        file_id = ingest.receive(conn, path, station="Mast", settings=settings).id
    run_queue([file_id])
    row = records(conn)["many.zip"]
    assert row["status"] == "failed"
    assert row["error"] == "holds more than 20000 members (limit: STATIONMANAGER_MAX_ARCHIVE_MEMBERS)"
    assert list(records(conn)) == ["many.zip"] and len(stored(settings)) == 1


def test_skipped_members_are_listed_on_the_archive_and_nothing_is_written_outside(conn, settings, tmp_path, capsys):
    z = tmp_path / "upload.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("data/day.dat", DAY)
        zf.writestr(".hidden.dat", b"x")
        zf.writestr("__MACOSX/data/._day.dat", b"x")
        zf.writestr("../../../../escaped.dat", DAY)
        zf.writestr("/tmp/sm-absolute.dat", DAY)
        symlink_member(zf, "data/users.dat", "../../users.yaml")
    with conn.transaction():
        file_id = ingest.receive(conn, z, station="Mast", settings=settings).id
    before = set(tmp_path.parent.rglob("*"))
    run_queue([file_id])
    got = records(conn)
    assert list(got) == ["upload.zip", "upload.zip/data/day.dat"]
    assert got["upload.zip"]["status"] == "unpacked" and got["upload.zip/data/day.dat"]["status"] == "imported"
    warnings = [
        "skipped upload.zip/.hidden.dat: hidden file",
        "skipped upload.zip/__MACOSX/data/._day.dat: macOS metadata",
        "skipped upload.zip/../../../../escaped.dat: the name leads out of the archive",
        "skipped upload.zip//tmp/sm-absolute.dat: absolute path",
        "skipped upload.zip/data/users.dat: symbolic link",
    ]
    assert got["upload.zip"]["warnings"] == warnings
    new = {p for p in set(tmp_path.parent.rglob("*")) - before if not p.is_relative_to(settings.home.resolve())}
    assert new == set() and not Path("/tmp/sm-absolute.dat").exists()
    assert cli(["files", "--json"]) == 0
    listed = {f["file"]: f for f in json.loads(capsys.readouterr().out)}
    assert listed["upload.zip"]["warnings"] == warnings


# --- the inbox ------------------------------------------------------------------------


@pytest.fixture
def box(conn, settings, tmp_path) -> core.settings.Settings:
    """An inbox holding a good file, and links, a hard link and a pipe to what lies outside."""
    box = tmp_path / "inbox"
    (box / "Mast A").mkdir(parents=True)
    settings.users_file.parent.mkdir(parents=True, exist_ok=True)
    settings.users_file.write_text("cookie_key: the-secret-key\n")
    outside = tmp_path / "outside"
    (outside / "logs").mkdir(parents=True)
    (outside / "logs" / "day.dat").write_bytes(DAY.replace(b"12342", b"55555"))
    (outside / "linked.dat").write_bytes(DAY.replace(b"12342", b"66666"))
    (box / "Mast A" / "day.dat").write_bytes(DAY)
    (box / "users.dat").symlink_to(settings.users_file)  # a link to a file
    (box / "Mast B").symlink_to(outside / "logs", target_is_directory=True)  # a link to a folder
    (box / "Mast A" / "hard.dat").hardlink_to(outside / "linked.dat")
    os.mkfifo(box / "pipe.dat")
    past = time.time() - 60
    for p in (box / "Mast A" / "day.dat", outside / "linked.dat", outside / "logs" / "day.dat"):
        os.utime(p, (past, past))
    return dataclasses.replace(settings, inbox=box, inbox_settle_s=1.0)


def test_inbox_never_follows_links_and_lists_what_it_refuses(conn, box, caplog):
    caplog.set_level("WARNING", logger="core.inbox")
    ids = inbox.scan(conn, box)
    assert [r["original_name"] for r in records(conn).values()] == ["Mast A/day.dat"] and len(ids) == 1
    assert len(stored(box)) == 1 and b"the-secret-key" not in stored(box)[0].read_bytes()
    inb = box.inbox_dir
    expected = {
        str(inb / "Mast A" / "hard.dat"): "hard link refused (the file has 2 names; copy it into the inbox instead)",
        str(inb / "Mast B"): inbox.LINK,
        str(inb / "pipe.dat"): inbox.NOT_A_FILE,
        str(inb / "users.dat"): inbox.LINK,
    }
    assert {r["path"]: r["reason"] for r in inbox.refused(conn)} == expected
    assert sorted(r.getMessage() for r in caplog.records) == sorted(f"inbox: {p}: {why}" for p, why in expected.items())
    caplog.clear()
    assert inbox.scan(conn, box) == [] and caplog.records == []  # logged once, still listed
    assert len(inbox.refused(conn)) == 4
    (inb / "users.dat").unlink()
    (inb / "users.dat").write_bytes(DAY.replace(b"12342", b"77777"))  # a regular file now
    os.utime(inb / "users.dat", (time.time() - 60,) * 2)
    assert len(inbox.scan(conn, box)) == 1
    assert str(inb / "users.dat") not in {r["path"] for r in inbox.refused(conn)}


def test_a_file_swapped_for_a_link_after_the_scan_found_it_is_not_read(conn, box):
    found, _ = inbox.candidates(box.inbox_dir)
    entry = next(e for e in found if e.path.name == "day.dat")
    entry.path.unlink()
    entry.path.symlink_to(box.users_file)
    assert inbox.copy_out(box.inbox_dir, entry, home.process_tmp(box)) is None
    folder = box.inbox_dir / "Mast A"  # a folder on the way swapped for a link
    folder.rename(box.inbox_dir / "Mast A2")
    folder.symlink_to(box.inbox_dir / "Mast A2", target_is_directory=True)
    assert inbox.copy_out(box.inbox_dir, entry, home.process_tmp(box)) is None


@pytest.mark.parametrize("where", ["home", "parent of home"])
def test_the_home_folder_is_never_read_from_the_inbox(conn, settings, where):
    settings.users_file.parent.mkdir(parents=True, exist_ok=True)
    settings.users_file.write_text("cookie_key: the-secret-key\n")
    (settings.home / "pgdata").mkdir()
    (settings.home / "pgdata" / "postgresql.conf").write_text("password = 'x'\n")
    box_dir = settings.home.resolve() if where == "home" else settings.home.resolve().parent
    (box_dir / "Mast A").mkdir(exist_ok=True)
    (box_dir / "Mast A" / "day.dat").write_bytes(DAY)
    past = time.time() - 60
    for p in box_dir.rglob("*"):
        os.utime(p, (past, past), follow_symlinks=False)
    s = dataclasses.replace(settings, inbox=box_dir, inbox_settle_s=1.0)
    inbox.scan(conn, s)
    names = [r["original_name"] for r in records(conn).values()]
    assert names == ([] if where == "home" else ["Mast A/day.dat"])
    for p in stored(s):
        assert b"the-secret-key" not in p.read_bytes() and b"password" not in p.read_bytes()
    assert {r["path"]: r["reason"] for r in inbox.refused(conn)} == {str(settings.home.resolve()): inbox.HOME_FOLDER}


# --- permissions and temporary files ---------------------------------------------------


def test_stored_originals_are_private_whatever_the_umask(conn, settings, tmp_path):
    old = os.umask(0)
    try:
        receive(conn, settings, "day.dat", DAY, tmp_path)
    finally:
        os.umask(old)
    (path,) = stored(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o440
    for folder in (path.parent, settings.files_dir):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o750


def test_worker_start_tightens_a_store_written_by_an_earlier_version(settings):
    old_file = settings.files_dir / "ab" / ("ab" + "0" * 62)
    export = settings.exports_dir / "7" / "mast.csv"
    for f, mode in ((old_file, 0o444), (export, 0o664)):
        f.parent.mkdir(parents=True)
        f.parent.chmod(0o777)
        f.write_text("x")
        f.chmod(mode)
    assert home.tighten(settings) == 6  # two files, two folders each, the store and the exports
    assert [stat.S_IMODE(p.stat().st_mode) for p in (old_file, old_file.parent, export, export.parent)] == [
        0o440, 0o750, 0o640, 0o750]
    assert home.tighten(settings) == 0


def _start_holder(settings) -> subprocess.Popen:
    """A process that makes its temporary folder under HOME/tmp, writes into it and waits."""
    script = (
        "import sys, time; from pathlib import Path; from core import home; from core.settings import Settings\n"
        f"folder = home.process_tmp(Settings(home=Path({str(settings.home)!r})))\n"
        "(folder / 'sm-unpack-x').mkdir(); (folder / 'sm-unpack-x' / 'member').write_bytes(b'0' * 4096)\n"
        "print(folder, flush=True); time.sleep(600)\n"
    )
    return subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)


def test_sweep_removes_the_temporary_folders_of_dead_processes_only(settings):
    killed, alive = _start_holder(settings), _start_holder(settings)
    try:
        dead_dir, live_dir = Path(killed.stdout.readline().strip()), Path(alive.stdout.readline().strip())
        assert dead_dir.name and live_dir.name
        killed.send_signal(signal.SIGKILL)  # as a worker killed mid-unpack
        killed.wait(timeout=30)
        mine = home.process_tmp(settings)
        assert {dead_dir, live_dir, mine} <= set(home.tmp_root(settings).iterdir())
        assert home.sweep(settings, min_age_s=0) == [dead_dir]
        assert not dead_dir.exists() and (live_dir / "sm-unpack-x" / "member").exists() and mine.exists()
    finally:
        for proc in (killed, alive):
            proc.kill()
            proc.wait(timeout=30)
            proc.stdout.close()
    assert home.sweep(settings, min_age_s=0) == [live_dir]
    home.release(settings)  # as at exit
    assert list(home.tmp_root(settings).iterdir()) == []


def test_the_worker_sweeps_at_start_writes_private_files_and_its_temporary_folder_goes_at_exit(settings):
    holder = _start_holder(settings)
    dead_dir = Path(holder.stdout.readline().strip())
    assert dead_dir.name
    holder.kill()
    holder.wait(timeout=30)
    holder.stdout.close()
    script = ("import os; from core import home; from ingest_worker.worker import prepare_home; "
              "from core.settings import get_settings\n"
              "os.umask(0); s = get_settings(); prepare_home(s); print(home.process_tmp(s))\n"
              "(s.exports_dir / '7').mkdir(parents=True); (s.exports_dir / '7' / 'mast.csv').write_text('x')\n")
    env = {**os.environ, "STATIONMANAGER_HOME": str(settings.home)}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert not dead_dir.exists()
    used = Path(done.stdout.strip())
    assert used.parent == home.tmp_root(settings) and not used.exists()  # removed at a clean exit
    export = settings.exports_dir / "7" / "mast.csv"  # what the worker writes is private (umask 027)
    assert [stat.S_IMODE(p.stat().st_mode) for p in (export, export.parent)] == [0o640, 0o750]
